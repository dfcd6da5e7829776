"""python -m perl_pipeline.sweep on the demo: each setting a real Kedro run, tabulated."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.sweep import run_sweep, to_markdown
from tests.pipelines.conftest import ROOT, demo_session

pytestmark = pytest.mark.slow


def test_a_sweep_runs_each_setting_and_tabulates_it(demo_run, tmp_path):
    shutil.copytree(demo_run.data, tmp_path / "data")  # reuse the demo's data and text features
    with demo_session(tmp_path):
        pass  # writes tmp_path/conf with the demo environment pointing at tmp_path/data
    before = _protocol_outputs(tmp_path / "data")
    table = run_sweep(
        [("perl.steps", [0]), ("perl.modalities", [["text"]])],
        env="demo",
        project_path=ROOT,
        conf_source=str(tmp_path / "conf"),
    )
    assert table["parameter"].to_list() == ["perl.steps", "perl.modalities"]
    assert table["value"].to_list() == ["0", "[text]"]
    steps0 = table.row(0, named=True)
    assert steps0["trainable_parameters"] == 0  # K = 0 is zero-shot CLIP
    assert steps0["base"] == pytest.approx(steps0["zeroshot_base"]) and steps0["image_alignment"] == 1.0
    text_only = table.row(1, named=True)
    assert text_only["trainable_parameters"] == 5 * 64 + 1 and text_only["image_alignment"] == 1.0
    saved = pl.read_csv(
        tmp_path / "data" / "08_reporting" / "ablations" / "ablations.csv",
        schema_overrides={"value": pl.String},
    )
    assert saved.equals(table)
    markdown = (tmp_path / "data" / "08_reporting" / "ablations" / "ablations.md").read_text()
    assert markdown == to_markdown(table) and "| perl.modalities | [text] | 321 |" in markdown
    # the protocol's outputs are back to the environment's settings (K = 4)
    runs = pl.read_parquet(tmp_path / "data" / "07_model_output" / "base_to_novel" / "dtd" / "runs.parquet")
    assert runs["step"].max() == 4
    # ... because the sweep never wrote them: each setting ran into its own folder
    after = _protocol_outputs(tmp_path / "data")
    assert after.pop("08_reporting/ablations/ablations.csv") and after.pop(
        "08_reporting/ablations/ablations.md"
    )
    assert after == before
    sweeps = tmp_path / "data" / "09_sweeps"
    assert sorted(p.name for p in sweeps.iterdir()) == ["01_perl.steps=0", "02_perl.modalities=_text_"]
    own = sweeps / "01_perl.steps=0" / "07_model_output" / "base_to_novel" / "dtd" / "runs.parquet"
    assert pl.read_parquet(own)["step"].max() == 0


def test_a_failing_sweep_leaves_the_protocol_outputs_byte_identical(demo_run, tmp_path, monkeypatch):
    import perl_pipeline.models as models

    shutil.copytree(demo_run.data, tmp_path / "data")
    with demo_session(tmp_path):
        pass
    build_perl = models.build_perl

    def fail_at_one_step(clip, config, seed=0):
        if config.steps == 1:
            raise RuntimeError("the second setting breaks")
        return build_perl(clip, config, seed=seed)

    monkeypatch.setattr(models, "build_perl", fail_at_one_step)  # the training node imports it per call
    before = _protocol_outputs(tmp_path / "data")
    with pytest.raises(RuntimeError, match="the second setting breaks"):
        run_sweep([("perl.steps", [0, 1])], env="demo", project_path=ROOT, conf_source=str(tmp_path / "conf"))
    assert _protocol_outputs(tmp_path / "data") == before
    first = tmp_path / "data" / "09_sweeps" / "01_perl.steps=0" / "08_reporting" / "base_to_novel"
    assert (first / "results.csv").is_file()  # the first setting ran, into its own folder


def _protocol_outputs(data: Path) -> dict[str, str]:
    """Every file under the data folder but the sweeps' own, by relative path -> sha256."""
    return {
        path.relative_to(data).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data.rglob("*"))
        if path.is_file() and path.relative_to(data).parts[0] != "09_sweeps"
    }
