"""The provenance hook on a two-node pipeline of tiny files (no Kedro run, no model): content
checked against the record, damaged and half-written records, fix commands that repeat the run."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.text import TextDataset

from perl_pipeline import provenance
from perl_pipeline.pipelines.freshness import ArtefactProblem, Provenance, sidecar_path
from perl_pipeline.provenance import StaleArtefactError


def _make(perl: dict) -> str:
    return f"projector made with {perl}" * 10


def _use(made: str) -> str:
    return made.upper()


PRODUCER = Node(_make, ["params:perl"], "made", name="make", namespace=None, tags=["training"])
CONSUMER = Node(_use, ["made"], "used", name="use", tags=["evaluation"])
RUN = {"pipeline_names": ["base_to_novel"], "env": "demo"}
VERIFY = "PERL_VERIFY_ARTEFACTS"
BOTH = Pipeline([PRODUCER, CONSUMER])


@pytest.fixture
def built(tmp_path, monkeypatch) -> tuple[DataCatalog, Path, Provenance]:
    """`made` written by its producer with its provenance record, as a run leaves it."""
    monkeypatch.setattr(
        Provenance, "_registered", staticmethod(lambda run_params: Pipeline([PRODUCER, CONSUMER]))
    )
    monkeypatch.delenv(VERIFY, raising=False)
    catalog = DataCatalog(
        {
            "params:perl": MemoryDataset({"steps": 2}),
            "made": TextDataset(filepath=str(tmp_path / "made.txt")),
            "used": TextDataset(filepath=str(tmp_path / "used.txt")),
        }
    )
    hook = Provenance()
    hook.bind(catalog, RUN)
    catalog.save("made", _make({"steps": 2}))
    hook.after_dataset_saved("made", None, PRODUCER)
    return catalog, tmp_path / "made.txt", hook


def _before_evaluation(hook: Provenance, catalog: DataCatalog, **run_params) -> None:
    hook.before_pipeline_run({**RUN, **run_params}, Pipeline([CONSUMER]), catalog)


def _flip(path: Path, at: int) -> None:
    """Change one byte, keeping the size and the modification time (bit rot, a copy keeping times)."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_changed_byte_with_the_same_size_and_time_is_refused(built):
    catalog, made, hook = built
    _before_evaluation(hook, catalog)  # intact: used
    _flip(made, 5)
    with pytest.raises(ArtefactProblem, match="made .* was modified or damaged after it was written"):
        _before_evaluation(hook, catalog)


def test_large_files_follow_the_cheap_rule_unless_everything_is_verified(built, monkeypatch):
    catalog, made, hook = built
    monkeypatch.setattr(provenance, "FULL_CHECK_BYTES", 64)
    monkeypatch.setattr(provenance, "SAMPLE_BYTES", 16)
    hook.after_dataset_saved("made", None, PRODUCER)  # recorded as a large file: with its sample digest
    assert "sample_sha256" in json.loads(sidecar_path(made).read_text())
    size = made.stat().st_size
    _flip(made, size - 3)  # in the last sampled bytes: found without reading the middle
    with pytest.raises(ArtefactProblem, match="modified or damaged"):
        _before_evaluation(hook, catalog)
    _flip(made, size - 3)  # back as it was
    _flip(made, size // 2)  # the middle of a large file is not read by the cheap rule (documented)...
    _before_evaluation(hook, catalog)
    monkeypatch.setenv(VERIFY, "all")  # ...unless every artefact is verified
    with pytest.raises(ArtefactProblem, match="modified or damaged"):
        _before_evaluation(hook, catalog)
    monkeypatch.setenv(VERIFY, "everything")
    with pytest.raises(ValueError, match="PERL_VERIFY_ARTEFACTS='everything': expected 'all'"):
        _before_evaluation(hook, catalog)


@pytest.mark.parametrize("record", ["", '{"recipe": {', '{"dataset": "made"}', "[]"])
def test_a_damaged_record_refuses_its_artefact_or_rebuilds_it(built, record):
    catalog, made, hook = built
    sidecar_path(made).write_text(record)
    with pytest.raises(
        ArtefactProblem, match=f"its provenance record {sidecar_path(made)} (is damaged|lacks)"
    ):
        _before_evaluation(hook, catalog)
    hook.before_pipeline_run({**RUN, "only_missing_outputs": True}, Pipeline([PRODUCER, CONSUMER]), catalog)
    assert not catalog.exists("made")  # counts as missing: the run makes it again


def test_a_full_disk_leaves_the_record_whole_and_names_it(built, monkeypatch):
    catalog, made, hook = built
    sidecar = sidecar_path(made)
    before = sidecar.read_bytes()
    real_write_text = Path.write_text

    def disk_full(self, text, *args, **kwargs):  # writes part of it, then runs out of space
        real_write_text(self, text[: len(text) // 3], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match=f"cannot write the provenance record of made {sidecar}: No space left"):
        hook.after_dataset_saved("made", None, PRODUCER)
    monkeypatch.undo()
    assert sidecar.read_bytes() == before  # the previous record, whole
    assert sorted(p.name for p in made.parent.iterdir()) == ["made.txt", "made.txt.provenance.json"]


def test_fix_commands_repeat_the_environment_and_the_users_parameters(built):
    catalog, made, hook = built
    catalog["params:perl"] = MemoryDataset({"steps": 3})
    user = {
        "runtime_params": {
            "perl": {"steps": 3},
            "few_shot": {"draw": "sorted"},
            "clip": {"cache_dir": "/tmp/my clip"},
        }
    }
    with pytest.raises(StaleArtefactError) as stale:
        _before_evaluation(hook, catalog, **user)
    message = str(stale.value)
    params = "--params 'perl.steps=3,few_shot.draw=sorted,clip.cache_dir=/tmp/my clip'"
    assert f"kedro run --env demo --pipelines base_to_novel --only-missing-outputs {params}" in message
    assert f"just this one: kedro run --env demo --pipelines training {params}" in message


@pytest.mark.parametrize(
    ("perl", "setting"),
    [
        ({"steps": 2, "share_layers": False}, "share_layers"),
        ({"steps": 2, "split_layer": [1, 2]}, "split_layer"),
    ],
)
def test_a_new_reasoning_loop_makes_the_projectors_stale(built, perl, setting):
    """Table 4's variants (docs/method.md §2.7) are perl settings: the section is hashed whole."""
    catalog, made, hook = built
    catalog["params:perl"] = MemoryDataset(perl)
    with pytest.raises(StaleArtefactError, match=f"perl.{setting}"):
        _before_evaluation(hook, catalog)


def _index(rows: str) -> str:
    return rows


def _draw(index: str) -> str:
    return f"drawn from {index}"


def _train(few_shot: str) -> str:
    return few_shot.upper()


PREPARE = Node(_index, ["params:rows"], "index", name="prepare", tags=["data_preparation"])
DRAW = Node(_draw, ["index"], "few_shot", name="draw", tags=["few_shot_splits"])
TRAIN = Node(_train, ["few_shot"], "projector", name="train", tags=["training"])


@pytest.fixture
def chain(tmp_path, monkeypatch) -> tuple[DataCatalog, Provenance]:
    """index -> few-shot draw -> projector, each written with its record."""
    monkeypatch.setattr(
        Provenance, "_registered", staticmethod(lambda run_params: Pipeline([PREPARE, DRAW, TRAIN]))
    )
    names = ("index", "few_shot", "projector")
    catalog = DataCatalog(
        {"params:rows": MemoryDataset("a b c")}
        | {name: TextDataset(filepath=str(tmp_path / f"{name}.txt")) for name in names}
    )
    hook = Provenance()
    hook.bind(catalog, RUN)
    for node in (PREPARE, DRAW, TRAIN):
        value = node.func(*(catalog.load(name) for name in node.inputs))
        catalog.save(node.outputs[0], value)
        hook.after_dataset_saved(node.outputs[0], None, node)
    return catalog, hook


def test_a_draw_from_another_index_is_refused_or_redrawn(chain):
    """What `check_fresh` guaranteed inside training: the hook's recipe of the draw has the index's
    sha256, so a rebuilt index (other images, or the same listed in another order) makes it stale."""
    catalog, hook = chain
    hook.before_pipeline_run(RUN, Pipeline([TRAIN]), catalog)  # current: used
    catalog["params:rows"] = MemoryDataset("c b a")  # the split file reordered
    catalog.save("index", _index("c b a"))
    hook.after_dataset_saved("index", None, PREPARE)
    with pytest.raises(StaleArtefactError, match=r"few_shot .* is stale(.|\n)*inputs\.index") as stale:
        hook.before_pipeline_run(RUN, Pipeline([TRAIN]), catalog)
    assert "--pipelines few_shot_splits" in str(stale.value)
    hook.before_pipeline_run({**RUN, "only_missing_outputs": True}, Pipeline([DRAW, TRAIN]), catalog)
    assert not catalog.exists("few_shot") and not catalog.exists("projector")  # both made again


def test_what_is_made_from_a_stale_artefact_is_stale(chain):
    """make's rule across stages: the projector's own recipe still matches (its draw's file is the
    same), but the index under the draw was made with other settings, so the projector is not
    current either (a partial report leaves such runs out)."""
    catalog, hook = chain
    hook.bind(catalog, RUN)
    hook.check_artefact("projector", TRAIN)
    catalog["params:rows"] = MemoryDataset("a b c d")
    hook.bind(catalog, RUN)
    with pytest.raises(StaleArtefactError, match=r"index .* is stale(.|\n)*params\.rows"):
        hook.check_artefact("projector", TRAIN)
