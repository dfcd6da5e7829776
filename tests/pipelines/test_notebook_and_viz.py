"""The walkthrough notebook runs on the demo outputs; kedro viz builds the lineage site."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.pipelines.conftest import ROOT, copy_project

pytestmark = pytest.mark.slow


def test_walkthrough_notebook_executes_on_the_demo_outputs(demo_run, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PERL_KEDRO_ENV", "demo")
    monkeypatch.setenv("PERL_CONF_SOURCE", str(demo_run.conf))
    notebook = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "trainable parameters: 802 = 802" in outputs
    assert "mean accuracy gain" in outputs


def test_kedro_viz_build_writes_the_lineage_site(tmp_path):
    """Built in a copy of the project (the repository itself gets no build/ folder), with a block of
    your own in conf/local/: the hooks (--include-hooks) add its benchmark to the lineage."""
    project = copy_project(tmp_path / "project")
    (project / "conf" / "local" / "parameters_mine.yml").write_text(
        "mine:\n  benchmark: {name: mine, title: Mine, folder: mine, layout: image_folder,"
        " template: 'a photo of a {}.'}\n"
    )
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    kedro = [sys.executable, "-m", "kedro"]
    result = subprocess.run(
        [*kedro, "viz", "build", "--include-hooks"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    build = project / "build"
    assert (build / "index.html").is_file()
    main = json.loads((build / "api" / "main").read_text())
    names = {node["name"] for node in main["nodes"]}
    assert {"dtd.runs_base_to_novel", "mine.runs_base_to_novel", "mine.runs_all_classes"} <= names
    assert "mine.adapter_all_seed_1" in names  # the adapter files are artefacts of the lineage
    assert "imagenet.train_all" in (build / "api" / "main").read_text()
    assert {pipeline["id"] for pipeline in main["pipelines"]} >= {"base_to_novel", "cross_dataset", "paper"}
    paper = (build / "api" / "pipelines" / "paper").read_text()  # the paper's artefacts in the lineage
    assert "paper.table4.markdown" in paper and "base_to_novel.per_step" in paper
    assert not (ROOT / "build").exists()
