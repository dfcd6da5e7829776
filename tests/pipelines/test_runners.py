"""The Dask runner on tiny pipelines: node errors, GPU requests, in-memory data between workers.
(The demo on a Dask cluster: tests/pipelines/test_dask_runner.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.json import JSONDataset

from perl_pipeline.pipelines.runners import ADDRESS_VARIABLE, DaskRunner


def held_gpus(before: list | None = None) -> list:
    """`before` and the GPU resources this task holds on its worker (declared minus available)."""
    from distributed import get_worker

    state = get_worker().state
    return [*(before or []), state.total_resources.get("GPU", 0) - state.available_resources.get("GPU", 0)]


def first(_: object = None) -> dict:
    return {"made": "on a worker"}


def broken(_: object) -> dict:
    raise ValueError("broken on purpose: the node's own message")


def never(_: object) -> dict:
    raise AssertionError("a node after the failing one ran")


def test_kedro_run_finds_the_runner_by_its_path(monkeypatch) -> None:
    from kedro.utils import load_obj

    assert load_obj("perl_pipeline.runners.DaskRunner", "kedro.runner") is DaskRunner  # kedro run --runner
    monkeypatch.setenv(ADDRESS_VARIABLE, "tcp://scheduler:8786")
    assert DaskRunner()._address == "tcp://scheduler:8786"
    assert DaskRunner(address="tcp://other:8786")._address == "tcp://other:8786"
    with pytest.raises(ValueError, match="n_workers='two': expected an integer >= 1"):
        DaskRunner(n_workers="two")


def test_a_node_failing_on_a_worker_stops_the_run_with_its_own_error(tmp_path: Path) -> None:
    pipeline = Pipeline(
        [
            node(first, None, "a", name="first"),
            node(broken, "a", "b", name="broken"),
            node(never, "b", "c", name="after"),
        ]
    )
    catalog = DataCatalog(
        {name: JSONDataset(filepath=str(tmp_path / f"{name}.json")) for name in ("a", "b", "c")}
    )
    with pytest.raises(ValueError, match="broken on purpose: the node's own message"):
        DaskRunner(n_workers=2).run(pipeline, catalog)
    assert (tmp_path / "a.json").is_file()  # the first node ran on a worker and saved its output
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "c.json").exists()


def test_training_and_evaluation_nodes_hold_a_gpu_where_workers_declare_one() -> None:
    from distributed import LocalCluster

    pipeline = Pipeline(
        [
            node(held_gpus, None, "trained", name="train", tags=["training"]),
            node(held_gpus, "trained", "evaluated", name="evaluate", tags=["evaluation"]),
            node(held_gpus, "evaluated", "other", name="other", tags=["text_features"]),
        ]
    )
    catalog = DataCatalog({name: MemoryDataset() for name in ("trained", "evaluated", "other")})
    gpu_workers = LocalCluster(  # every worker declares one GPU
        n_workers=2, threads_per_worker=1, resources={"GPU": 1}, dashboard_address=None
    )
    with gpu_workers:
        DaskRunner(address=gpu_workers.scheduler_address).run(pipeline, catalog)
    # in-memory outputs travel from worker to worker, and the run's free output back to the driver
    assert catalog.load("other") == [1, 1, 0]


def test_an_unreachable_scheduler_is_named_with_the_fix(monkeypatch) -> None:
    import distributed

    def unreachable(address, **kwargs):
        raise OSError(f"Timed out trying to connect to {address} after 30 s")

    monkeypatch.setattr(distributed, "Client", unreachable)
    runner = DaskRunner(address="tcp://127.0.0.1:9")
    with pytest.raises(ConnectionError, match="no Dask scheduler answered at tcp://127.0.0.1:9") as error:
        runner._client()
    assert "dask scheduler --port 8786" in str(error.value) and "LocalCluster" in str(error.value)
