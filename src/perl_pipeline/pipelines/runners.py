"""One protocol run spread over a Dask cluster: ``kedro run --runner perl_pipeline.runners.DaskRunner``.

Kedro's documented Dask pattern: every node is a task depending on the tasks making its inputs. The
driver runs the pipeline-level hooks; a worker runs a node with the node- and dataset-level hooks
and saves its outputs, so workers on other machines need the data folder on a shared file system.
``torch_threads`` fixes how torch splits its float reductions, so a run equals a sequential run with
the same ``torch.set_num_threads``, bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import uuid
from typing import Any

from kedro.io import MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

ADDRESS_VARIABLE = "PERL_DASK_SCHEDULER"
GPU_STAGES = frozenset({"training", "evaluation"})  # node tags whose nodes ask for a GPU
# hooks called around one node; they run on the worker that runs it
NODE_HOOKS = ("before_node_run", "after_node_run", "on_node_error") + tuple(
    f"{when}_dataset_{what}" for what in ("loaded", "saved") for when in ("before", "after")
)
FORWARDED_LOGGERS = ("perl_pipeline", "kedro")  # worker log records shown by the driver

CONNECT_TIMEOUT_S = 20  # seconds to wait for the scheduler named by address / PERL_DASK_SCHEDULER

logger = logging.getLogger(__name__)


class DaskRunner(AbstractRunner):
    """Runs a pipeline's nodes as tasks of a Dask cluster, each as soon as its inputs are ready."""

    def __init__(
        self,
        address: str | None = None,
        n_workers: int | str | None = None,
        threads_per_worker: int | str = 1,
        torch_threads: int | str | None = None,
        is_async: bool = False,
    ) -> None:
        """The scheduler at `address` (default: ``$PERL_DASK_SCHEDULER``), else a ``LocalCluster``
        of `n_workers` x `threads_per_worker`; `torch_threads` defaults to threads_per_worker on a
        local cluster and leaves torch alone on a given one. Training and evaluation nodes ask for a
        ``GPU`` resource when any worker declares one."""
        super().__init__(is_async=is_async)
        self._address = address or os.environ.get(ADDRESS_VARIABLE) or None
        self._n_workers = _positive(n_workers, "n_workers", optional=True)
        self._threads = _positive(threads_per_worker, "threads_per_worker")
        torch_threads = _positive(torch_threads, "torch_threads", optional=True)
        self._torch_threads = torch_threads or (None if self._address else self._threads)

    def _get_executor(self, max_workers: int) -> None:
        return None  # the cluster schedules; AbstractRunner's executor loop is not used

    def _run(
        self, pipeline: Pipeline, catalog: Any, hook_manager: Any = None, run_id: str | None = None
    ) -> None:
        from distributed import as_completed

        hooks = _node_hooks(hook_manager)
        with self._client() as client:
            client.wait_for_workers(1)
            gpus = any(w.get("resources", {}).get("GPU") for w in client.scheduler_info()["workers"].values())
            if self._address:  # a local cluster's workers write to this console already
                for name in FORWARDED_LOGGERS:
                    client.forward_logging(name, level=logging.INFO)
            dependencies = pipeline.node_dependencies
            futures: dict[Node, Any] = {}
            for node in pipeline.nodes:  # topological order: a node's producers are submitted first
                futures[node] = client.submit(
                    _run_node,
                    node,
                    catalog,
                    hooks,
                    self._is_async,
                    run_id,
                    self._torch_threads,
                    *[futures[producer] for producer in dependencies[node]],
                    key=f"{node.name}-{uuid.uuid4().hex[:8]}",
                    pure=False,
                    resources={"GPU": 1} if gpus and GPU_STAGES & node.tags else None,
                )
            nodes = {future.key: node for node, future in futures.items()}
            done: list[Node] = []
            outputs = pipeline.outputs()
            try:
                for future, produced in as_completed(futures.values(), with_results=True):
                    node = nodes[future.key]
                    done.append(node)
                    for name, data in produced.items():
                        if name in outputs:  # a free in-memory output: the run's result
                            catalog.save(name, data)
                    self._logger.info("Completed node: %s", node.name)
                    self._logger.info("Completed %d out of %d tasks", len(done), len(futures))
            except BaseException:
                client.cancel(list(futures.values()))
                self._suggest_resume_scenario(pipeline, done, catalog)
                raise  # the failing node's own exception, as the worker raised it

    def _client(self):
        """A client of the given scheduler, or of a local cluster that closes with it."""
        from distributed import Client

        if not self._address:
            return self._local_client()
        self._logger.info("Dask scheduler: %s", self._address)
        try:
            return Client(self._address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as error:
            raise ConnectionError(
                f"no Dask scheduler answered at {self._address} (from --runner-params address=... or "
                f"${ADDRESS_VARIABLE}) within {CONNECT_TIMEOUT_S} s: {type(error).__name__}: {error}. Start "
                f"it and its workers (`dask scheduler --port 8786`, then `dask worker {self._address}`), "
                "correct the address, or leave both unset to run on a LocalCluster started for the run; "
                "no node has run"
            ) from error

    @contextlib.contextmanager
    def _local_client(self):
        from distributed import Client, LocalCluster

        threads = self._threads
        with LocalCluster(
            n_workers=self._n_workers, threads_per_worker=threads, processes=True, dashboard_address=None
        ) as cluster:
            self._logger.info("Dask LocalCluster: %d workers x %d threads", len(cluster.workers), threads)
            with Client(cluster) as client:
                yield client


def _run_node(  # noqa: PLR0913
    node: Node,
    catalog: Any,
    hooks: list,
    is_async: bool,
    run_id: str | None,
    torch_threads: int | None,
    *upstream: dict,
) -> dict:
    """On a worker: run `node` through the catalog with the driver's node hooks."""
    import torch
    from kedro.framework.hooks.manager import _create_hook_manager

    if torch_threads:
        torch.set_num_threads(torch_threads)
    for produced in upstream:
        for name, data in produced.items():
            if name in node.inputs:
                catalog.save(name, data)
    manager = _create_hook_manager()
    for hook in hooks:
        manager.register(hook)
    Task(node=node, catalog=catalog, hook_manager=manager, is_async=is_async, run_id=run_id).execute()
    in_memory = [
        n for n in node.outputs if isinstance(catalog.get(n, fallback_to_runtime_pattern=True), MemoryDataset)
    ]
    return {name: catalog.load(name) for name in in_memory}


def _node_hooks(hook_manager: Any) -> list:
    """The driver's hooks that act around a node, as bound now, for the workers (one that cannot be
    pickled stays in the driver, with a warning)."""
    import cloudpickle
    from pluggy import PluginManager

    hooks = []
    for plugin in hook_manager.get_plugins() if isinstance(hook_manager, PluginManager) else ():
        if not any(callable(getattr(plugin, name, None)) for name in NODE_HOOKS):
            continue
        try:
            cloudpickle.dumps(plugin)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            logger.warning("hook %r stays in the driver (cannot be sent to workers: %s)", plugin, exc)
        else:
            hooks.append(plugin)
    return hooks


def _positive(value: int | str | None, name: str, optional: bool = False) -> int | None:
    if optional and value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(number) != str(value).strip():
        raise ValueError(f"DaskRunner {name}={value!r}: expected an integer >= 1")
    return number
