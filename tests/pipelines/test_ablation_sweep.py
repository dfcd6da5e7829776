"""python -m perl_pipeline.sweep on the demo: each setting a real Kedro run, tabulated."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from perl_pipeline.sweep import run_sweep, to_markdown
from tests.pipelines.conftest import ROOT, demo_session

pytestmark = pytest.mark.slow


def test_a_sweep_runs_each_setting_and_tabulates_it(demo_run, tmp_path):
    shutil.copytree(demo_run.data, tmp_path / "data")  # reuse the demo's data and text features
    with demo_session(tmp_path):
        pass  # writes tmp_path/conf with the demo environment pointing at tmp_path/data
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
