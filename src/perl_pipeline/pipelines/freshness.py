"""Provenance of every stage artefact, checked before it is used (make's rule, with recipes).

When a stage node saves an artefact, a sidecar ``<file>.provenance.json`` records the node's
*recipe* (the parameters it read, with the backbone as its weights' identity, and the sha256 of
every artefact it read) and the artefact's own sha256. Before a run:

- an artefact this run reads without rebuilding it must match the recipe its producer would use
  now; otherwise the run stops before any work, naming the setting, both values and the command
  that rebuilds it;
- with ``--only-missing-outputs``, a stale, modified or unreadable artefact counts as missing, and
  so does everything made from an artefact the run rebuilds, so a resumed run after a parameter
  change equals a fresh run with the new parameters.

What "matches its record" means (the cheap rule, docs/method.md §6.9): a file up to
``FULL_CHECK_BYTES`` (projectors, training records, few-shot draws, per-run tables, most indexes)
and every folder are hashed in full each run before use; a larger file (the text features of
large class sets, ImageNet's index) must have its recorded size and mtime and the recorded sha256
of its first and last MiB (``sample_sha256``), and is hashed in full when its size or mtime differ.
``PERL_VERIFY_ARTEFACTS=all`` hashes every file in full. A file is hashed at most once per check.
Sidecars are written atomically; a damaged sidecar refuses its artefact (or rebuilds it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset
from kedro.pipeline import Node, Pipeline

from perl_pipeline.provenance import StaleArtefactError, differences, write_text_atomic

logger = logging.getLogger(__name__)

SIDECAR = ".provenance.json"
STAGES = frozenset(
    {"data_preparation", "few_shot_splits", "text_features", "training", "evaluation", "reporting"}
)
# parameters (top-level key -> sub-keys, or None for all of it) that change no result; data_root is
# a location: the index records paths relative to it and its sha256 records what was found there
IGNORED = {
    "device": None,
    "data_root": None,
    "training": {"log_every", "seeds_together"},
    "evaluation": {"batch_size", "num_workers"},
    "data_source": {"download", "max_extracted_gb", "max_compression_ratio"},
}
FULL_CHECK_BYTES = 64 * 2**20  # files up to this size are hashed in full before every use
SAMPLE_BYTES = 2**20  # a larger file's first and last MiB are hashed (sample_sha256)
VERIFY_VARIABLE = "PERL_VERIFY_ARTEFACTS"  # "all": hash every artefact in full before use
RECORD_KEYS = ("recipe", "sha256", "size", "mtime_ns")


class ArtefactProblem(RuntimeError):
    """An artefact a run reads is missing, modified since it was written, or unreadable."""


class DamagedRecord(ArtefactProblem):
    """An artefact's provenance record (sidecar) cannot be read as one (truncated, not JSON)."""


def sidecar_path(path: Path) -> Path:
    """Where the provenance of the artefact at `path` is kept."""
    return path.with_name(path.name + SIDECAR)


def content_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's relative file names and contents."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sample_sha256(path: Path, size: int) -> str:
    """sha256 of a file's first and last ``SAMPLE_BYTES`` (the whole file when it is smaller)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def verify_everything() -> bool:
    """Whether ``PERL_VERIFY_ARTEFACTS=all`` asks for every artefact to be hashed in full.

    Raises:
        ValueError: another value than ``all`` or ``default``, naming the variable.
    """
    value = os.environ.get(VERIFY_VARIABLE, "").strip().lower()
    if value not in ("", "all", "default"):
        raise ValueError(
            f"{VERIFY_VARIABLE}={value!r}: expected 'all' (hash every artefact in full before use) or "
            f"'default' (the cheap rule for files over {FULL_CHECK_BYTES >> 20} MiB); unset it or fix it"
        )
    return value == "all"


def user_command(run_params: Mapping[str, Any]) -> str:
    """``kedro run`` with the user's environment, configuration folder and ``--params`` repeated."""
    parts = ["kedro run"]
    env = run_params.get("env")
    if env and env != "local":
        parts.append(f"--env {shlex.quote(str(env))}")
    conf_source = run_params.get("conf_source")
    if conf_source:
        parts.append(f"--conf-source {shlex.quote(str(conf_source))}")
    return " ".join(parts)


def user_params(run_params: Mapping[str, Any], drop: Iterable[str] = ()) -> str:
    """The user's runtime parameters as one ``--params`` option ("" when none), without `drop`."""
    flat = {k: v for k, v in _flatten(run_params.get("runtime_params") or {}).items() if k not in set(drop)}
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
        self._hashed: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256, for one check
        self._verify_all = False

    def bind(self, catalog, run_params: dict) -> dict[str, Node]:
        """Check against `catalog` for a run with `run_params`; returns {artefact: producing node}."""
        self._catalog, self._run_params, self._hashed = catalog, run_params, {}
        self._verify_all = verify_everything()
        return {out: node for node in self._registered(run_params).nodes for out in node.outputs}

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog) -> None:
        producers = self.bind(catalog, run_params)
        made_here = {out for node in pipeline.nodes for out in node.outputs}
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
        if path is None or not STAGES & node.tags or self._catalog is None:
            return
        stat = path.stat()
        record = {
            "dataset": dataset_name,
            "recipe": self.recipe(node),
            "sha256": content_sha256(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }
        if path.is_file() and stat.st_size > FULL_CHECK_BYTES:
            record["sample_sha256"] = sample_sha256(path, stat.st_size)
        text = json.dumps(record, indent=1, sort_keys=True)
        write_text_atomic(sidecar_path(path), text, f"provenance record of {dataset_name}")

    # -- recipes ------------------------------------------------------------------------------

    def recipe(self, node: Node) -> dict:
        """What determines `node`'s outputs: its parameters and the identities of its inputs."""
        params, inputs = {}, {}
        for name in node.inputs:
            if name.startswith("params:"):
                key = name.removeprefix("params:")
                value = self._param(key, self._catalog.load(name))
                if value is not None:
                    params[key] = value
            elif self._path(name) is not None:
                inputs[name] = self.identity(name)
        return {"node": node.name, "params": params, "inputs": inputs}

    def identity(self, name: str) -> str | None:
        """The sha256 recorded for an artefact, after checking the file still has it."""
        path = self._path(name)
        record = _read_sidecar(name, path)
        if record is None:
            return None
        self._verify(name, path, record)
        return record["sha256"]

    @staticmethod
    def _param(key: str, value: Any) -> Any:
        """A parameter as a recipe records it: the backbone by its weights' identity, result-free
        settings left out."""
        if hasattr(value, "model_dump"):  # Kedro may hold the typed configuration already
            value = value.model_dump()
        root = key.split(".")[0]
        if root in IGNORED:
            ignored = IGNORED[root]
            if ignored is None:
                return None
            value = {k: v for k, v in value.items() if k not in ignored}
        if root == "clip" and isinstance(value, dict):
            from perl_pipeline.models.loading import weights_identity

            weights = weights_identity(
                value["model_name"], value.get("pretrained"), init_seed=value.get("init_seed", 0)
            )
            return {"model_name": value["model_name"], "weights": weights}
        return value

    # -- checks -------------------------------------------------------------------------------

    def check_artefact(self, name: str, producer: Node | None) -> None:
        """Refuse a missing, modified or stale artefact (one this run reads but does not make).

        Raises:
            ArtefactProblem: missing, unreadable, or changed since it was written.
            StaleArtefactError: made from other settings or inputs than `producer` would use now.
        """
        path = self._path(name)
        if path is None:
            return
        if not path.exists():
            raise ArtefactProblem(f"{name} ({path}) is missing; build it first: {self._fix(producer)}")
        try:
            record = _read_sidecar(name, path)
        except DamagedRecord as problem:
            raise DamagedRecord(f"{problem}; rebuild it: {self._fix(producer)}") from problem
        if record is None:
            logger.warning(
                "%s (%s) has no provenance record (it predates them): it is used unchecked; "
                "rebuild it to check it: %s",
                name,
                path,
                self._fix(producer),
            )
            return
        self._verify(name, path, record, producer)
        if producer is not None and None not in self._inputs_known(producer):
            changes = differences(record["recipe"], self.recipe(producer))
            if changes:
                raise StaleArtefactError(f"{name} ({path})", changes, self._fix(producer))

    def _inputs_known(self, node: Node) -> Iterable[str | None]:
        return (self.identity(name) for name in self._artefacts(node.inputs))

    def _rebuild_reason(self, node: Node, rebuilt: set[str]) -> str | None:
        """Why `node` must run again in an --only-missing-outputs run, or None if it need not."""
        used = sorted(set(node.inputs) & rebuilt)
        if used:
            return f"it reads {', '.join(used)}, which this run rebuilds"
        for name in node.outputs:
            path = self._path(name)
            if path is None:
                continue
            if not path.exists():
                return "missing"
            try:
                record = _read_sidecar(name, path)
                if record is None:
                    return f"{name} has no provenance record"
                self._verify(name, path, record)
            except ArtefactProblem as problem:
                return str(problem)
            changes = differences(record["recipe"], self.recipe(node))
            if changes:
                key, old, new = changes[0]
                more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
                return f"{name} was made with {key}={old!r}, this run has {new!r}{more}"
        return None

    def _mark_missing(self, node: Node, reason: str) -> None:
        if reason == "missing":
            return  # Kedro reruns it anyway
        logger.info("rebuilding %s: %s", ", ".join(node.outputs), reason)
        for name in node.outputs:
            dataset = self._catalog.get(name)
            if dataset is not None and not isinstance(dataset, _Stale):
                self._catalog[name] = _Stale(dataset)

    def _verify(self, name: str, path: Path, record: dict, producer: Node | None = None) -> None:
        """Raise ArtefactProblem when the file no longer has the content its record names (the
        cheap rule of the module's docstring decides how much of it is read)."""
        try:
            if self._matches(path, record):
                return
        except PermissionError as error:
            raise ArtefactProblem(
                f"{name} ({path}) cannot be read: permission denied ({error}); give this user read "
                f"access (e.g. chmod -R a+rX {path.parent}) and run again"
            ) from error
        raise ArtefactProblem(
            f"{name} ({path}) was modified or damaged after it was written (its content no longer "
            f"matches its provenance record); rebuild it: {self._fix(producer)}"
        )

    def _matches(self, path: Path, record: dict) -> bool:
        """Whether `path` still holds what `record` names (see the module's cheap rule)."""
        stat = path.stat()
        large = path.is_file() and stat.st_size > FULL_CHECK_BYTES and not self._verify_all
        if large and (stat.st_size, stat.st_mtime_ns) == (record["size"], record["mtime_ns"]):
            sample = record.get("sample_sha256")
            return sample is None or sample_sha256(path, stat.st_size) == sample
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key not in self._hashed or not path.is_file():
            self._hashed[key] = content_sha256(path)
        return self._hashed[key] == record["sha256"]

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
        if name.startswith("params:") or self._catalog is None or name not in self._catalog:
            return None
        dataset = self._catalog.get(name)
        if isinstance(dataset, _Stale):
            dataset = dataset.wrapped
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


def _read_sidecar(name: str, path: Path | None) -> dict | None:
    """The provenance record of `path` (None when it has none).

    Raises:
        DamagedRecord: the sidecar exists but is not a whole record (truncated, not JSON).
    """
    if path is None:
        return None
    sidecar = sidecar_path(path)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedRecord(
            f"{name} ({path}): its provenance record {sidecar} is damaged ({error}), so what the "
            "artefact was made from is unknown and it cannot be used"
        ) from error
    missing = [key for key in RECORD_KEYS if not isinstance(record, dict) or key not in record]
    if missing:
        raise DamagedRecord(
            f"{name} ({path}): its provenance record {sidecar} lacks {missing}, so what the artefact "
            "was made from is unknown and it cannot be used"
        )
    return record
