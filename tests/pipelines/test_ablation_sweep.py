"""python -m perl_pipeline.sweep on the demo: DVC experiments on the queue, tabulated from DVC's records."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.tools.sweep import run_sweep, summarize, to_markdown
from tests.pipelines.conftest import DVC_BENCHMARKS, DVC_DEMO_PARAMS, demo_session, dvc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def steps_sweep(dvc_demo):
    """perl.steps=1,2 swept on the shared demo repository (its outputs hashed before and after)."""
    before = _outputs(dvc_demo.data)
    table = run_sweep([("perl.steps", [1, 2])], project_path=dvc_demo.repo, jobs=1)
    return before, table, _outputs(dvc_demo.data)


def test_a_sweep_queues_one_experiment_per_setting_and_tabulates_them(dvc_demo, steps_sweep, tmp_path):
    repo = dvc_demo.repo
    before, table, after = steps_sweep

    assert table["parameter"].to_list() == ["perl.steps", "perl.steps"]
    assert table["value"].to_list() == ["1", "2"]
    names = table["experiment"].to_list()
    assert [re.sub(r"-\d{8}-\d{6}$", "", n) for n in names] == ["01-perl.steps=1", "02-perl.steps=2"]
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
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

    # the same setting as a plain run gives the same row (resumed from the repository's data, so
    # only training, evaluation and the report are redone)
    plain = []
    for steps in (1,):
        shutil.copytree(dvc_demo.data, tmp_path / str(steps) / "data")
        shutil.rmtree(tmp_path / str(steps) / "data" / "08_reporting")  # the report must be this run's
        with demo_session(tmp_path / str(steps), **DVC_DEMO_PARAMS, perl={"steps": steps}) as session:
            session.run(
                pipeline_names=["base_to_novel"], namespaces=list(DVC_BENCHMARKS), only_missing_outputs=True
            )
        out = tmp_path / str(steps) / "data" / "08_reporting" / "base_to_novel"
        with open(out / "per_step.csv", newline="") as handle:
            per_step = list(csv.DictReader(handle))
        metrics = json.loads((out / "metrics.json").read_text())
        plain.append({"parameter": "perl.steps", "value": str(steps), **summarize(metrics, per_step)})
    assert table.drop("experiment").to_dicts()[:1] == plain
    assert table.row(0, named=True)["base_steps"].count(" / ") == 1  # steps 0 and 1
    assert table.row(1, named=True)["base_steps"].count(" / ") == 2  # steps 0, 1 and 2
    saved = dvc_demo.data / "08_reporting" / "ablations"
    assert (saved / "ablations.md").read_text() == to_markdown(table)
    assert pl.read_csv(saved / "ablations.csv", schema_overrides={"value": pl.String}).equals(table)

    # the workspace's outputs are untouched: each experiment's stay its own
    assert {k: v for k, v in after.items() if "ablations" not in k} == before


def _outputs(data: Path) -> dict[str, str]:
    """Every file under the data folder by relative path -> sha256."""
    return {
        path.relative_to(data).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data.rglob("*"))
        if path.is_file()
    }


SMALL_FIG3 = """
  fig3_steps:
    title: "Fig. 3b, small: reasoning steps K"
    axis: reasoning steps K
    rows:
      - {name: "1", set: ["perl.steps=1"]}
      - {name: "2", set: ["perl.steps=2"]}
      - {name: "4", set: []}
"""


def test_the_paper_command_reuses_what_dvc_recorded_and_writes_each_artefact(dvc_demo, steps_sweep, tmp_path):
    """A small Fig. 3b (K = 1, 2 and the default 4) and the dynamics on the small demo: K = 1 and
    2 are the sweep's experiments and the default is the commit's own results, so nothing runs."""
    from perl_pipeline.tools.paper import run_paper

    repo = tmp_path / "project"
    shutil.copytree(dvc_demo.repo, repo, symlinks=True)
    conf = repo / "conf" / "demo" / "parameters_paper.yml"
    conf.write_text(conf.read_text() + SMALL_FIG3)

    experiments = _experiment_names(repo)
    written = run_paper(["fig3_steps", "dynamics"], project_path=repo)
    assert _experiment_names(repo) == experiments  # every setting reused, nothing queued

    paper = repo / "data" / "demo" / "08_reporting" / "paper"
    assert set(written) == {"fig3_steps", "dynamics_base_to_novel"}
    runs = pl.read_csv(paper / "fig3_steps_runs.csv", schema_overrides={"row": pl.String})
    assert runs["experiment"].to_list()[:2] == steps_sweep[1]["experiment"].to_list()  # the sweep's
    assert runs["row"].to_list() == ["1", "2", "4"]
    committed = json.loads(
        (repo / "data" / "demo" / "08_reporting" / "base_to_novel" / "metrics.json").read_text()
    )
    default = runs.row(2, named=True)
    assert default["hm"] == committed["average (mean of HMs)"]["hm"]  # the commit's results, reused
    assert default["trainable_parameters"] == committed["trainable_parameters"]
    assert [len(r.split(" / ")) for r in runs["base_steps"]] == [2, 3, 5]  # steps 0..K of each run
    markdown = (paper / "fig3_steps.md").read_text()
    assert "≈72.70" in markdown and "| 4 | `defaults` |" in markdown  # the paper's Fig. 3b beside ours
    assert (paper / "fig3_steps.png").stat().st_size > 10_000 and (
        paper / "dynamics_base_to_novel.png"
    ).exists()
    assert (
        "Dynamics per step: base_to_novel (mean over 1 benchmark)"
        in (paper / "dynamics_base_to_novel.md").read_text()
    )


def _experiment_names(repo: Path) -> list[str]:
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    return sorted(
        rev.get("name") or "" for b in shown for e in b.get("experiments") or [] for rev in e["revs"]
    )
