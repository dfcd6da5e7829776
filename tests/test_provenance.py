"""Recipes, fingerprints, the stale-artefact message, the one file hasher and `check(path)`."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from perl_pipeline import provenance
from perl_pipeline.provenance import (
    ArtefactProblem,
    StaleArtefactError,
    check,
    differences,
    file_digests,
    fingerprint,
    recipe_params,
    write_record,
)


def test_fingerprint_is_canonical_and_changes_with_any_setting() -> None:
    recipe = {"perl": {"split_layer": 7, "modalities": ("image", "text")}, "seed": 1}
    assert fingerprint(recipe) == fingerprint(
        {"seed": 1, "perl": {"modalities": ["image", "text"], "split_layer": 7}}
    )
    assert fingerprint(recipe) != fingerprint({**recipe, "seed": 2})
    assert len(fingerprint(recipe)) == 16


def test_differences_name_every_changed_leaf_with_both_values() -> None:
    stored = {"params": {"perl": {"split_layer": 2, "steps": 4}}, "inputs": {"dtd.index": "aa"}}
    expected = {"params": {"perl": {"split_layer": 3, "steps": 4}}, "inputs": {"dtd.index": "aa", "x": "b"}}
    assert differences(stored, expected) == [
        ("inputs.x", None, "b"),
        ("params.perl.split_layer", 2, 3),
    ]
    assert differences({"a": (1, 2)}, {"a": [1, 2]}) == []  # read back from JSON, tuples are lists


def test_the_stale_message_names_the_setting_both_values_and_the_fix() -> None:
    changes = differences({"split_layer": 2}, {"split_layer": 3})
    message = str(StaleArtefactError("dtd.text_features", changes, fix="kedro run --pipelines x"))
    assert "dtd.text_features is stale" in message
    assert "split_layer: 2 when it was made, 3 now" in message
    assert message.endswith("Rebuild it: kedro run --pipelines x")


def test_settings_that_change_no_result_are_left_out_of_recipes() -> None:
    params = {
        "training": {"lr": 1e-4, "log_every": 5, "seeds_together": True},
        "data_root": "/x",
        "device": "cpu",
    }
    assert recipe_params(params, "cpu") == {"training": {"lr": 1e-4}}
    assert recipe_params({"training.log_every": 3, "training.lr": 0.1}, "cpu") == {"training.lr": 0.1}


def test_one_hasher_reads_a_file_once_per_version(tmp_path, monkeypatch) -> None:
    data = os.urandom(3000)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    both = file_digests(path, ("sha256", "md5"))
    assert both == {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    ends = hashlib.sha256(data[:1000] + data[-1000:]).hexdigest()
    assert file_digests(path, ends=1000)["sha256"] == ends
    opened = []
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or pytest.fail("read again"))
    assert file_digests(path, ("sha256", "md5")) == both  # cached
    monkeypatch.undo()
    stat = path.stat()
    time.sleep(0.05)  # file times tick by the kernel's clock (a few ms)
    path.write_bytes(b"x" + data[1:])  # same size and mtime, new content: a new version (ctime)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digests(path)["sha256"] == hashlib.sha256(b"x" + data[1:]).hexdigest()
    folder = tmp_path / "folder"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "b.txt").write_text("b")
    assert file_digests(folder)["sha256"] == hashlib.sha256(b"a/b.txt\0b").hexdigest()


def test_check_verifies_one_artefact_outside_a_run(tmp_path, monkeypatch) -> None:
    path = tmp_path / "runs.parquet"
    with pytest.raises(ArtefactProblem, match="missing"):
        check(path)
    path.write_text("runs")
    with pytest.raises(ArtefactProblem, match="has no provenance record"):
        check(path)
    write_record(path, {"params": {"perl": {"steps": 2}}}, "dtd.runs")
    assert check(path)["dataset"] == "dtd.runs"
    with pytest.raises(StaleArtefactError, match="params.perl.steps: 2 when it was made, 3 now"):
        check(path, {"params": {"perl": {"steps": 3}}})
    path.write_text("RUNS")
    with pytest.raises(ArtefactProblem, match="modified or damaged"):
        check(path)
    record = json.loads(provenance.sidecar_path(path).read_text())
    assert set(provenance.RECORD_KEYS) <= set(record)
