"""The demo's base_to_novel on a Dask LocalCluster of two single-thread workers equals the sequential run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from perl_pipeline.pipelines.runners import DaskRunner
from tests.pipelines.conftest import demo_session

pytestmark = pytest.mark.slow

REDONE = "dtd"  # the benchmark the Dask run makes again from its raw data


def test_the_demo_on_two_dask_workers_writes_what_the_sequential_run_writes(demo_run, tmp_path):
    """A copy of the demo with one benchmark's artefacts and the report removed is resumed on a
    LocalCluster of two single-thread workers: it redoes the benchmark (data preparation, few-shot
    draws, text features, 3 training runs, evaluation) and the report over all 11, and writes the
    same bytes as the sequential run (the shared demo run: Kedro's SequentialRunner in this
    process). Every node runs torch on the thread count the sequential run had: the thread count
    splits torch's float reductions, so it changes the last bits of a projector."""
    redone = [Path("08_reporting") / "base_to_novel", Path("07_model_output") / "base_to_novel" / REDONE]
    redone += [Path(layer) / REDONE for layer in ("03_primary", "04_feature", "05_model_input", "06_models")]
    shutil.copytree(demo_run.data, tmp_path / "dask" / "data")
    for folder in redone:
        shutil.rmtree(tmp_path / "dask" / "data" / folder)
    with demo_session(tmp_path / "dask") as session:
        runner = DaskRunner(n_workers=2, threads_per_worker=1, torch_threads=demo_run.torch_threads)
        session.run(pipeline_names=["base_to_novel"], only_missing_outputs=True, runner=runner)

    compared = 0
    for folder in redone:
        ours, theirs = tmp_path / "dask" / "data" / folder, demo_run.data / folder
        names = sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
        assert names == sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file()), folder
        for name in names:
            assert _content(ours / name) == _content(theirs / name), folder / name
            compared += 1
    assert compared >= 25  # index, draws, features, 3 projectors and records, runs, every report; sidecars


def _content(path: Path) -> bytes | dict:
    """A file's bytes; for JSON, all but the wall-clock fields: a training record's time, a
    sidecar's mtime and, for a training record's sidecar, the record's hash and size."""
    if path.suffix != ".json":
        return path.read_bytes()
    record = json.loads(path.read_text())
    for clock in ("seconds", "mtime_ns"):
        record.pop(clock, None)
    if path.name.endswith(".json.provenance.json"):
        record.pop("sha256")
        record.pop("size")
    return record
