"""dvc repro on the demo (two benchmarks, one epoch), in a temporary git repository holding the project."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
import yaml

from perl_pipeline.protocols import PROTOCOLS, SOURCE
from tests.pipelines.conftest import DVC_BENCHMARKS, DVC_OWN, DVC_PAPER, ROOT, dvc, stages_run

pytestmark = pytest.mark.slow


def test_dvc_params_agree_with_the_kedro_project():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert tuple(params["base_to_novel"]) == PROTOCOLS["base_to_novel"].benchmarks
    assert (SOURCE, *params["variants"]) == PROTOCOLS["domain_generalization"].benchmarks
    globals_ = yaml.safe_load((ROOT / "conf" / "base" / "globals.yml").read_text())
    assert params["data"] == globals_["data"]
    demo = yaml.safe_load((ROOT / "conf" / "demo" / "globals.yml").read_text())
    assert demo["data"] == "data/demo"


def test_the_shipped_toy_clip_weights_are_up_to_date_with_their_lineage(dvc_demo):
    """dvc.lock records the code, parameters and outputs of the toy_clip stage: an edit of the world,
    the pretraining or their parameters without rebuilding (or committing) the weights fails here."""
    assert "toy_clip" not in dvc_demo.first_repro  # the shipped weights match their committed lineage
    status = dvc(dvc_demo.repo, "status", "toy_clip")
    assert "up to date" in status, status
    lock = yaml.safe_load((dvc_demo.repo / "dvc.lock").read_text())
    outs = {o["path"] for o in lock["stages"]["toy_clip"]["outs"]}
    assert "src/perl_pipeline/weights/PERL-Toy-ViT_toy_world.safetensors" in outs


def test_repro_builds_then_is_a_no_op_then_reruns_only_what_a_parameter_reaches(dvc_demo, tmp_path):
    first = dvc_demo.first_repro
    per_benchmark = {"data", "features", "base_to_novel_model"}
    paper = {f"{stage}@{b}" for stage in per_benchmark for b in DVC_PAPER}
    own = {f"own_{stage}@{b}" for stage in per_benchmark for b in DVC_OWN}  # a folder of images
    assert first == paper | own | {"base_to_novel"}
    assert (dvc_demo.data / "08_reporting" / "base_to_novel" / "metrics.json").is_file()
    assert all(b in dvc(dvc_demo.repo, "metrics", "show") for b in DVC_BENCHMARKS)

    assert stages_run(dvc(dvc_demo.repo, "repro", "base_to_novel")) == set()

    repo = shutil.copytree(dvc_demo.repo, tmp_path / "project", symlinks=True)  # the shared one stays
    params_file = repo / "conf" / "demo" / "parameters.yml"
    # 3: a value the sweep test's experiments did not run (DVC's run cache would restore those)
    params_file.write_text(params_file.read_text().replace("perl:\n", "perl:\n  steps: 3\n", 1))
    rerun = stages_run(dvc(repo, "repro", "base_to_novel"))
    models = {f"base_to_novel_model@{b}" for b in DVC_PAPER} | {
        f"own_base_to_novel_model@{b}" for b in DVC_OWN
    }
    assert rerun == models | {"base_to_novel"}
    for b in DVC_BENCHMARKS:
        runs = repo / "data" / "demo" / "07_model_output" / "base_to_novel" / b / "runs.parquet"
        assert pl.read_parquet(runs)["step"].max() == 3
