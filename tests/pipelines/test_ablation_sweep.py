"""python -m perl_pipeline.sweep on the demo: DVC experiments on the queue, tabulated from DVC's records."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.sweep import run_sweep, summarize, to_markdown
from tests.pipelines.conftest import demo_session
from tests.pipelines.test_dvc import _run, commit, copy_project

pytestmark = pytest.mark.slow

BENCHMARK = "dtd"  # the demo cut to one benchmark and one epoch, to keep the test small


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git repository of the project on the demo, with `dvc repro` run and its lock committed."""
    repo = copy_project(
        tmp_path_factory.mktemp("sweep") / "project",
        kedro_env="demo",
        params_file="conf/demo/parameters.yml",
        data="data/demo",
        base_to_novel=[BENCHMARK],
    )
    # the report over the benchmark the test runs: its partial report (Kedro's filter needs a node of
    # the namespace; the evaluation is current, so --only-missing-outputs skips it)
    stages = repo / "dvc.yaml"
    report = f"--namespaces {BENCHMARK} --tags evaluation,reporting --only-missing-outputs\n"
    stages.write_text(stages.read_text().replace("--tags reporting\n", report, 1))
    demo = repo / "conf" / "demo" / "parameters.yml"
    demo.write_text(demo.read_text().replace("  epochs: 3\n", "  epochs: 1\n", 1))
    commit(repo, "demo")
    _run([sys.executable, "-m", "dvc", "repro", "base_to_novel"], repo)
    commit(repo, "dvc repro")
    return repo


def test_a_sweep_queues_one_experiment_per_setting_and_tabulates_them(repo, tmp_path):
    before = _outputs(repo / "data" / "demo")
    table = run_sweep([("perl.steps", [1, 2])], project_path=repo, jobs=2)

    assert table["parameter"].to_list() == ["perl.steps", "perl.steps"]
    assert table["value"].to_list() == ["1", "2"]
    names = table["experiment"].to_list()
    assert [re.sub(r"-\d{8}-\d{6}$", "", n) for n in names] == ["01-perl.steps=1", "02-perl.steps=2"]
    shown = json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo))
    recorded = {
        rev.get("name") or exp.get("name"): rev["data"]
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    }
    report = "data/demo/08_reporting/base_to_novel"
    for name, steps in zip(names, (1, 2), strict=True):  # DVC's records: the params set, the metrics
        assert recorded[name]["params"]["conf/demo/parameters.yml"]["data"]["perl"]["steps"] == steps
        assert "average (mean of HMs)" in recorded[name]["metrics"][f"{report}/metrics.json"]["data"]

    # the same settings as plain runs give the same table
    plain = []
    for steps in (1, 2):
        with demo_session(tmp_path / str(steps), training={"epochs": 1}, perl={"steps": steps}) as session:
            session.run(pipeline_names=["base_to_novel"], namespaces=[BENCHMARK])
        out = tmp_path / str(steps) / "data" / "08_reporting" / "base_to_novel"
        with open(out / "per_step.csv", newline="") as handle:
            per_step = list(csv.DictReader(handle))
        metrics = json.loads((out / "metrics.json").read_text())
        plain.append({"parameter": "perl.steps", "value": str(steps), **summarize(metrics, per_step)})
    assert table.drop("experiment").to_dicts() == plain
    assert table.row(0, named=True)["base_steps"].count(" / ") == 1  # steps 0 and 1
    saved = repo / "data" / "demo" / "08_reporting" / "ablations"
    assert (saved / "ablations.md").read_text() == to_markdown(table)
    assert pl.read_csv(saved / "ablations.csv", schema_overrides={"value": pl.String}).equals(table)

    # the workspace's outputs are untouched: each experiment's stay its own
    after = _outputs(repo / "data" / "demo")
    assert {k: v for k, v in after.items() if "ablations" not in k} == before


def _outputs(data: Path) -> dict[str, str]:
    """Every file under the data folder by relative path -> sha256."""
    return {
        path.relative_to(data).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data.rglob("*"))
        if path.is_file()
    }
