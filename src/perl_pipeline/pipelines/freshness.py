"""The Kedro hook that applies `perl_pipeline.provenance`'s rule before any node runs.

An artefact a run reads without rebuilding it must match the recipe its producer would use now, or
the run stops before any work. With ``--only-missing-outputs``, a stale, modified or unreadable
artefact counts as missing, and so does everything made from one the run rebuilds, so a resumed run
after a parameter change equals a fresh run with the new parameters.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset
from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines import registry
from perl_pipeline.provenance import (
    ArtefactProblem,
    DamagedRecord,
    StaleArtefactError,
    clear_digests,
    differences,
    read_record,
    recipe_params,
    sidecar_path,
    verify,
    verify_everything,
    write_record,
)

__all__ = ["ArtefactProblem", "Provenance", "sidecar_path", "unwrap", "user_command", "user_params"]

logger = logging.getLogger(__name__)

STAGES = frozenset(registry.STAGES)


def user_command(run_params: Mapping[str, Any]) -> str:
    """``kedro run`` with the user's environment, configuration folder and ``--params`` repeated."""
    env, conf_source = run_params.get("env"), run_params.get("conf_source")
    command = "kedro run" + (f" --env {shlex.quote(str(env))}" if env and env != "local" else "")
    return command + (f" --conf-source {shlex.quote(str(conf_source))}" if conf_source else "")


def user_params(run_params: Mapping[str, Any]) -> str:
    """The user's runtime parameters as one ``--params`` option ("" when none)."""
    flat = _flatten(run_params.get("runtime_params") or {})
    if not flat:
        return ""
    text = ",".join(f"{key}={_flow(value)}" for key, value in flat.items())
    return f" --params {shlex.quote(text)}"


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _flow(value: Any) -> str:
    """A value as typed on the command line (YAML flow style): 3, [image], false, 1e-4."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


class Provenance:
    """Kedro hook: writes each stage artefact's sidecar and checks artefacts before a run."""

    def __init__(self) -> None:
        self._catalog = None
        self._run_params: dict = {}
        self._verify_all = False
        self._producers: dict[str, Node] = {}
        self._judged: dict[tuple[str, bool], Exception | None] = {}

    def __getstate__(self) -> dict:
        # a Dask worker only writes sidecars: the run's judgements stay with the driver
        return {**self.__dict__, "_producers": {}, "_judged": {}}

    def bind(self, catalog, run_params: dict) -> dict[str, Node]:
        """Check against `catalog` for a run with `run_params`; returns {artefact: producing node}."""
        self._catalog, self._run_params, self._judged = catalog, run_params, {}
        self._verify_all = verify_everything()
        clear_digests()  # every run reads what is on disk now
        self._producers = {out: node for node in self._registered(run_params).nodes for out in node.outputs}
        return self._producers

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog) -> None:
        producers = self.bind(catalog, run_params)
        made_here = pipeline.all_outputs()
        rebuilt: set[str] = set()
        for node in pipeline.nodes:  # topological order
            if not STAGES & node.tags:
                continue
            for name in self._artefacts(node.inputs):
                if name not in made_here:
                    self.check_artefact(name, producers.get(name))
            if run_params.get("only_missing_outputs"):
                reason = self._rebuild_reason(node, rebuilt)
                if reason:
                    rebuilt.update(node.outputs)
                    self._mark_missing(node, reason)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        path = self._path(dataset_name)
        if path is not None and STAGES & node.tags:
            write_record(path, self.recipe(node), dataset_name)

    def recipe(self, node: Node) -> dict:
        """What determines `node`'s outputs: its parameters and the identities of its inputs."""
        params = {
            n.removeprefix("params:"): self._catalog.load(n) for n in node.inputs if n.startswith("params:")
        }
        inputs = {name: self.identity(name) for name in self._artefacts(node.inputs)}
        return {"node": node.name, "params": recipe_params(params), "inputs": inputs}

    def identity(self, name: str) -> str | None:
        """The sha256 recorded for an artefact, after checking the file still has it."""
        path = self._path(name)
        record = read_record(name, path)
        if record is None:
            return None
        verify(name, path, record, self._fix(None), self._verify_all)
        return record["sha256"]

    def check_artefact(self, name: str, producer: Node | None) -> None:
        """Refuse (ArtefactProblem, StaleArtefactError) a missing, modified or stale artefact that
        this run reads but does not make; one without a record only gets a warning."""
        problem = self._problem(name, producer, strict=False) if self._path(name) else None
        if isinstance(problem, _Unrecorded):
            logger.warning("%s; until then it is used unchecked", problem)
        elif problem is not None:
            raise problem

    def _problem(self, name: str, producer: Node | None, strict: bool) -> Exception | None:
        """Why artefact `name` is not what `producer` would make now, or made from an artefact that
        is not (None: it is current). Not `strict`: an artefact whose producer reads an unrecorded
        artefact is taken as current."""
        path, fix = self._path(name), self._fix(producer)
        if not path.exists():
            return ArtefactProblem(f"{name} ({path}) is missing; build it first: {fix}")
        try:
            record = read_record(name, path)
            if record is None:
                return _Unrecorded(
                    f"{name} ({path}) has no provenance record (it predates them); rebuild it: {fix}"
                )
            verify(name, path, record, fix, self._verify_all)
            recipe = self.recipe(producer) if producer is not None else None
        except ArtefactProblem as problem:
            return (
                DamagedRecord(f"{problem}; rebuild it: {fix}") if type(problem) is DamagedRecord else problem
            )
        if recipe is None or (not strict and None in recipe["inputs"].values()):
            return None
        changes = differences(record["recipe"], recipe)
        if changes:
            return StaleArtefactError(f"{name} ({path})", changes, fix)
        return self._upstream(producer, strict)

    def _upstream(self, node: Node, strict: bool) -> Exception | None:
        """The first problem of an artefact `node` reads (make's rule: what is made from a stale
        artefact is stale), each judged once per run."""
        for name in self._artefacts(node.inputs):
            if (name, strict) not in self._judged:
                self._judged[name, strict] = self._problem(name, self._producers.get(name), strict)
            problem = self._judged[name, strict]
            if problem is not None and not isinstance(problem, _Unrecorded):
                return problem
        return None

    def _rebuild_reason(self, node: Node, rebuilt: set[str]) -> str | None:
        """Why `node` must run again in an --only-missing-outputs run, or None if it need not."""
        used = sorted(set(node.inputs) & rebuilt)
        if used:
            return f"it reads {', '.join(used)}, which this run rebuilds"
        for name in self._artefacts(node.outputs):
            if not self._path(name).exists():
                return "missing"
            problem = self._problem(name, node, strict=True)
            if isinstance(problem, StaleArtefactError):
                key, old, new = problem.changes[0]
                more = f" (and {len(problem.changes) - 1} more)" if len(problem.changes) > 1 else ""
                return f"{name} was made with {key}={old!r}, this run has {new!r}{more}"
            if problem is not None:
                return str(problem)
        return None

    def _mark_missing(self, node: Node, reason: str) -> None:
        if reason == "missing":
            return  # Kedro reruns it anyway
        logger.info("rebuilding %s: %s", ", ".join(node.outputs), reason)
        for name in node.outputs:
            dataset = self._catalog.get(name)
            if dataset is not None and not isinstance(dataset, _Stale):
                self._catalog[name] = _Stale(dataset)

    # -- helpers ------------------------------------------------------------------------------

    def _fix(self, producer: Node | None) -> str:
        """The command that rebuilds what `producer` makes (or every stale artefact), with the
        user's environment and parameters."""
        pipelines = self._run_params.get("pipeline_names") or ["__default__"]
        prefix, params = user_command(self._run_params), user_params(self._run_params)
        rebuild_all = f"{prefix} --pipelines {','.join(pipelines)} --only-missing-outputs{params}"
        if producer is None:
            return rebuild_all
        stage = sorted(STAGES & producer.tags)
        where = f" --namespaces {producer.namespace}" if producer.namespace else ""
        one = f"{prefix} --pipelines {stage[0]}{where}{params}" if stage else ""
        return f"{rebuild_all} (rebuilds every stale artefact)" + (
            f", or just this one: {one}" if one else ""
        )

    def _path(self, name: str) -> Path | None:
        """The local file or folder of a persistent catalog entry (None for params / memory)."""
        dataset = unwrap(self._catalog.get(name)) if self._catalog is not None else None
        filepath = getattr(dataset, "_filepath", None)
        if filepath is None or getattr(dataset, "_protocol", "file") not in ("file", None):
            return None
        return Path(str(filepath))

    def _artefacts(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if self._path(name) is not None]

    @staticmethod
    def _registered(run_params: dict) -> Pipeline:
        """The whole of the pipelines this run was asked for (to find producers of its inputs)."""
        from kedro.framework.project import pipelines

        names = run_params.get("pipeline_names") or ["__default__"]
        return sum((pipelines[name] for name in names if name in pipelines), Pipeline([]))


class _Unrecorded(ArtefactProblem):
    """An artefact without a provenance record (it predates them)."""


class _Stale(AbstractDataset):
    """A catalog entry whose artefact is stale: it reads as missing so the run rebuilds it."""

    def __init__(self, wrapped: AbstractDataset) -> None:
        self.wrapped = wrapped
        self.rebuilt = False

    def load(self) -> Any:
        return self.wrapped.load()

    def save(self, data: Any) -> None:
        self.wrapped.save(data)
        self.rebuilt = True

    def _exists(self) -> bool:
        # stale until this run saves it again (an artefact rebuilt on a Dask worker is judged by
        # its file and record, see unwrap)
        return self.rebuilt and self.wrapped.exists()

    def _describe(self) -> dict[str, Any]:
        return {"stale": self.wrapped._describe()}


def unwrap(dataset: AbstractDataset | None) -> AbstractDataset | None:
    """The catalog entry itself, without the stale marker an ``--only-missing-outputs`` run puts on it."""
    return dataset.wrapped if isinstance(dataset, _Stale) else dataset
