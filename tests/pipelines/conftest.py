"""Run the real Kedro project (demo environment) into a temporary data folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def demo_session(tmp: Path, **runtime_params):
    """A KedroSession on the demo environment whose data layers live under `tmp`/data."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    conf = tmp / "conf"
    if not conf.exists():
        shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
        (conf / "local").mkdir()
        (conf / "demo" / "globals.yml").write_text(
            f"data: {tmp / 'data'}\ntoy_clip_weights: {tmp / 'weights'}\n"
        )
    bootstrap_project(ROOT)
    return KedroSession.create(
        project_path=ROOT, env="demo", conf_source=str(conf), runtime_params=runtime_params or None
    )


@dataclass(frozen=True)
class DemoRun:
    root: Path  # holds conf/ (the project's, demo data moved here) and data/
    torch_threads: int  # torch's thread count in the run (its float reductions depend on it)

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The demo's base_to_novel, run once through a real KedroSession (Kedro's SequentialRunner, in
    this process, torch on its default thread count) for the whole test session."""
    import torch

    tmp, threads = tmp_path_factory.mktemp("demo"), torch.get_num_threads()
    with demo_session(tmp) as session:
        session.run(pipeline_names=["base_to_novel"])
    return DemoRun(tmp, threads)


# ---- one reproduced DVC repository of the demo, shared by the DVC and sweep tests ---------------

DVC_PAPER = ("dtd",)  # one of the paper's benchmarks (params.yaml base_to_novel) ...
DVC_OWN = ("my_images",)  # ... and the demo's folder of images (params.yaml own)
DVC_BENCHMARKS = DVC_PAPER + DVC_OWN
# DVC's work is under test there, not learning: one epoch on 4 shots, 8 / 2 / 6 images per class
# (the folder benchmark: 16 per class, split 50/20/30). A Kedro run that resumes from the
# repository's data sets these as its runtime parameters.
DVC_DEMO_PARAMS = {
    "training": {"epochs": 1},
    "few_shot": {"shots": 4},
    "data_source": {"miniature": {"per_class": {"train": 8, "val": 2, "test": 6}}},
}
_DVC_DEMO_LINES = {  # DVC_DEMO_PARAMS as edits of conf/demo/parameters.yml (its comments kept)
    "  epochs: 3\n": "  epochs: 1\n",
    "few_shot:\n": "few_shot:\n  shots: 4\n",  # conf/base's 16, overridden here
    "    per_class: {train: 20, val: 2, test: 20}": "    per_class: {train: 8, val: 2, test: 6}",
}


def run_command(args: list[str], cwd: Path) -> str:
    """Run a command (DVC, kedro) in `cwd` with this interpreter's tools first on PATH; its output."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # kedro for DVC's cmd
        "KEDRO_DISABLE_TELEMETRY": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def dvc(repo: Path, *args: str) -> str:
    """`dvc <args>` in `repo`; its output."""
    import sys

    return run_command([sys.executable, "-m", "dvc", *args], repo)


def stages_run(output: str) -> set[str]:
    """The DVC stages a `dvc repro` / `dvc exp run` output says it ran."""
    import re

    return set(re.findall(r"Running stage '([^']+)'", output))


def copy_project(repo: Path, **params) -> Path:
    """A fresh clone-like copy of the project (tracked and new files) in `repo`, with `params`
    written over params.yaml's."""
    import subprocess

    import yaml

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
        run_command(["git", "init", "-q"], repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run_command([*git, "add", "-A"], repo)
    run_command([*git, "commit", "-qm", message], repo)


def small_demo_project(
    repo: Path, paper: tuple[str, ...] = DVC_PAPER, own: tuple[str, ...] = DVC_OWN
) -> Path:
    """The project switched to the demo, cut to `paper` benchmarks, the folder benchmarks `own` and
    DVC_DEMO_PARAMS (one epoch, few shots and images), committed.

    The report stage runs over those benchmarks (Kedro's filter needs a node of a namespace; their
    evaluations are current, so --only-missing-outputs skips them and the report is written)."""
    import yaml

    copy_project(
        repo,
        kedro_env="demo",
        params_file="conf/demo/parameters.yml",
        data="data/demo",
        base_to_novel=list(paper),
        own=list(own),
        own_params_file="conf/demo/parameters_my_images.yml",
    )
    stages = repo / "dvc.yaml"
    names = ",".join(paper + own)
    report = f"--namespaces {names} --tags evaluation,reporting --only-missing-outputs\n"
    stages.write_text(stages.read_text().replace("--tags reporting\n", report, 1))
    demo = repo / "conf" / "demo" / "parameters.yml"
    text = demo.read_text()
    for line, small in _DVC_DEMO_LINES.items():
        assert text.count(line) == 1, f"conf/demo/parameters.yml: {line!r} not found once"
        text = text.replace(line, small)
    demo.write_text(text)
    settings = yaml.safe_load(text)
    for section, values in DVC_DEMO_PARAMS.items():
        assert _within(values, settings[section]), (section, settings[section])
    commit(repo, "demo")
    return repo


def _within(small: dict, settings: dict) -> bool:
    """Whether every value of the nested dict `small` is set so in `settings`."""
    return all(
        _within(value, settings.get(key, {})) if isinstance(value, dict) else settings.get(key) == value
        for key, value in small.items()
    )


@dataclass(frozen=True)
class DvcDemo:
    """A git + DVC repository of the small demo after `dvc repro base_to_novel`, lock committed.
    Shared: tests that change it work on a copy (`shutil.copytree`)."""

    repo: Path
    first_repro: set[str]  # the stages the first `dvc repro` ran

    @property
    def data(self) -> Path:
        return self.repo / "data" / "demo"


@pytest.fixture(scope="session")
def dvc_demo(tmp_path_factory) -> DvcDemo:
    repo = small_demo_project(tmp_path_factory.mktemp("dvc") / "project")
    first = stages_run(dvc(repo, "repro", "base_to_novel"))
    commit(repo, "dvc repro")
    return DvcDemo(repo, first)
