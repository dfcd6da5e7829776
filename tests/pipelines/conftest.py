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

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The demo's base_to_novel, run once through a real KedroSession for the whole test session."""
    tmp = tmp_path_factory.mktemp("demo")
    with demo_session(tmp) as session:
        session.run(pipeline_names=["base_to_novel"])
    return DemoRun(tmp)
