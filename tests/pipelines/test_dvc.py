"""dvc repro on the demo configuration, in a temporary git repository holding the project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perl_pipeline.protocols import BASE_TO_NOVEL, DOMAIN_GENERALIZATION_TARGETS
from tests.pipelines.conftest import ROOT

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # kedro for DVC's cmd
        "KEDRO_DISABLE_TELEMETRY": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def copy_project(repo: Path, **params) -> Path:
    """A fresh clone-like copy of the project (tracked and new files) in `repo`, with `params`
    written over params.yaml's."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    settings = yaml.safe_load((repo / "params.yaml").read_text())
    settings.update(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return repo


def commit(repo: Path, message: str) -> None:
    """Commit everything in `repo` (a git repository from the first call on)."""
    if not (repo / ".git").exists():
        _run(["git", "init", "-q"], repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run([*git, "add", "-A"], repo)
    _run([*git, "commit", "-qm", message], repo)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh clone-like copy of the project switched to the demo, committed."""
    repo = copy_project(
        tmp_path_factory.mktemp("dvc") / "project",
        kedro_env="demo",
        params_file="conf/demo/parameters.yml",
        data="data/demo",
        own=["my_images"],
        own_params_file="conf/demo/parameters_my_images.yml",
    )
    commit(repo, "demo")
    return repo


def test_dvc_params_agree_with_the_kedro_project():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert tuple(params["base_to_novel"]) == BASE_TO_NOVEL
    assert tuple(params["variants"]) == DOMAIN_GENERALIZATION_TARGETS
    assert params["own"] == []  # benchmarks of your own are yours to list (the demo: my_images)
    globals_ = yaml.safe_load((ROOT / "conf" / "base" / "globals.yml").read_text())
    assert params["data"] == globals_["data"]
    demo = yaml.safe_load((ROOT / "conf" / "demo" / "globals.yml").read_text())
    assert demo["data"] == "data/demo"


def test_the_shipped_toy_clip_weights_are_up_to_date_with_their_lineage(repo):
    """dvc.lock records the code, parameters and outputs of the toy_clip stage: an edit of the world,
    the pretraining or their parameters without rebuilding (or committing) the weights fails here."""
    status = _run([sys.executable, "-m", "dvc", "status", "toy_clip"], repo)
    assert "up to date" in status, status
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = {o["path"] for o in lock["stages"]["toy_clip"]["outs"]}
    assert "src/perl_pipeline/weights/PERL-Toy-ViT_toy_world.safetensors" in outs


def test_repro_builds_then_is_a_no_op_then_reruns_only_what_a_parameter_reaches(repo):
    dvc = [sys.executable, "-m", "dvc"]
    first = _stages_run(_run([*dvc, "repro", "base_to_novel"], repo))
    assert "toy_clip" not in first  # the shipped weights match their committed lineage
    assert {f"data@{b}" for b in BASE_TO_NOVEL} <= first
    assert {f"base_to_novel_model@{b}" for b in BASE_TO_NOVEL} <= first and "base_to_novel" in first
    assert {"own_data@my_images", "own_base_to_novel_model@my_images"} <= first  # the demo's own folder
    metrics = repo / "data" / "demo" / "08_reporting" / "base_to_novel" / "metrics.json"
    assert metrics.is_file()
    assert "dtd" in _run([*dvc, "metrics", "show"], repo)

    assert _stages_run(_run([*dvc, "repro", "base_to_novel"], repo)) == set()

    params_file = repo / "conf" / "demo" / "parameters.yml"
    params_file.write_text(params_file.read_text().replace("  steps: 4\n", "  steps: 2\n", 1))
    rerun = _stages_run(_run([*dvc, "repro", "base_to_novel"], repo))
    own = {"own_base_to_novel_model@my_images"}
    assert rerun == {f"base_to_novel_model@{b}" for b in BASE_TO_NOVEL} | own | {"base_to_novel"}
    runs = repo / "data" / "demo" / "07_model_output" / "base_to_novel" / "dtd" / "runs.parquet"
    import polars as pl

    assert pl.read_parquet(runs)["step"].max() == 2
