"""The one decider of staleness (no Kedro; the hook is `pipelines.freshness`): recipes, sidecars,
the rule and the one file hasher.

An artefact's *recipe* is the parameters its producer read and the sha256 of every artefact it
read; its sidecar ``<file>.provenance.json`` records the recipe and the artefact's own sha256. It is
current when its content still matches its record (:func:`verify`) and its recipe equals the one its
producer would use now (:func:`differences`).

"Matches its record" (docs/method.md §6.9): a file up to ``FULL_CHECK_BYTES`` and every folder are
hashed in full; a larger file with its recorded size and mtime only has its first and last
``SAMPLE_BYTES`` hashed (``sample_sha256``). ``PERL_VERIFY_ARTEFACTS=all`` hashes every file in full.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FINGERPRINT_CHARS = 16
SIDECAR = ".provenance.json"
RECORD_KEYS = ("recipe", "sha256", "size", "mtime_ns")
FULL_CHECK_BYTES = 64 * 2**20  # files up to this size are hashed in full before every use
SAMPLE_BYTES = 2**20  # a larger file's first and last MiB are hashed (sample_sha256)
VERIFY_VARIABLE = "PERL_VERIFY_ARTEFACTS"  # "all": hash every artefact in full before use
# parameters (top-level key -> sub-keys, or None for all of it) that change no result. data_root is a
# location (the index records paths relative to it); device is replaced by what it resolves to: the
# precision and the image decoding (see `recipe_params`); seeds_together gives the same weights up
# to float rounding
IGNORED: dict[str, set[str] | None] = {
    "device": None,
    "data_root": None,
    "training": {"log_every", "seeds_together"},
    "evaluation": {"batch_size", "num_workers"},
    "data_source": {"download", "max_extracted_gb", "max_compression_ratio"},
}

_DIGESTS: dict[tuple, dict[str, str]] = {}  # the one cache: file version -> its digests


class ArtefactProblem(RuntimeError):
    """An artefact a run reads is missing, modified since it was written, or unreadable."""


class DamagedRecord(ArtefactProblem):
    """An artefact's provenance record (sidecar) cannot be read as one (truncated, not JSON)."""


class StaleArtefactError(ValueError):
    """An artefact was made from other settings or inputs than the ones this run uses."""

    def __init__(self, artefact: str, changes: list[tuple[str, Any, Any]], fix: str) -> None:
        self.artefact, self.changes, self.fix = artefact, changes, fix
        lines = [f"  {key}: {_show(old)} when it was made, {_show(new)} now" for key, old, new in changes[:8]]
        if len(changes) > 8:
            lines.append(f"  ... and {len(changes) - 8} more")
        super().__init__(
            f"{artefact} is stale: it was made from other settings or inputs than this run's:\n"
            + "\n".join(lines)
            + f"\nRebuild it: {fix}"
        )


# -- recipes ---------------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace (tuples as lists), the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain)


def fingerprint(recipe: Any) -> str:
    """The first 16 hex digits of the sha256 of the recipe's canonical JSON."""
    return hashlib.sha256(canonical_json(recipe).encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


def differences(stored: Any, expected: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, expected value) for every leaf where two recipes differ (a key on
    one side only has ``None`` on the other); tuples equal lists, as in a recipe read back from JSON."""
    stored, expected = (json.loads(canonical_json(value)) for value in (stored, expected))
    if isinstance(stored, Mapping) and isinstance(expected, Mapping):
        found = []
        for key in sorted(set(stored) | set(expected), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            found += differences(stored.get(key), expected.get(key), where)
        return found
    return [] if stored == expected else [(prefix or "(value)", stored, expected)]


def recipe_params(params: Mapping[str, Any], device_type: str | None = None) -> dict[str, Any]:
    """The parameters a node read (``params:<key>`` -> value) as its recipe records them:
    :data:`IGNORED` left out, the backbone as its weights' identity, and precision and image decoding
    as resolved on `device_type` (default: the ``device`` parameter's), so an artefact made on a GPU
    is stale on a CPU and the other way round."""
    out = {}
    for key, value in params.items():
        if hasattr(value, "model_dump"):  # Kedro may hold the typed configuration already
            value = value.model_dump()
        root, _, sub = key.partition(".")
        ignored = IGNORED.get(root, set())
        if ignored is None or sub in ignored or value is None:
            continue
        if isinstance(value, dict) and not sub:
            value = {k: v for k, v in value.items() if k not in ignored}
        if root == "clip" and not sub:
            from perl_pipeline.models.loading import weights_identity

            name, seed = value["model_name"], value.get("init_seed", 0)
            value = {
                "model_name": name,
                "weights": weights_identity(name, value.get("pretrained"), init_seed=seed),
            }
        elif root in ("training", "evaluation") and not sub:
            value = _resolved(value, device_type, params.get("device", "auto"))
        out[key] = value
    return out


def _resolved(settings: dict, device_type: str | None, device: str) -> dict:
    """`settings` with ``precision`` resolved on `device_type` (default: the type `device` resolves
    to) and ``gpu_decode`` as ``decode``."""
    import torch  # only when needed

    from perl_pipeline.device import autocast_dtype, resolve_device

    device_type = device_type or resolve_device(device).type

    out = dict(settings)
    if "precision" in out:
        bf16 = autocast_dtype(torch.device(device_type), out["precision"]) is torch.bfloat16
        out["precision"] = "bf16" if bf16 else "fp32"
    if "gpu_decode" in out:
        out["decode"] = "gpu" if out.pop("gpu_decode") and device_type == "cuda" else "pil"
    return out


# -- the one file hasher ---------------------------------------------------------------------------


def file_digests(
    path: Path | str, algorithms: Sequence[str] = ("sha256",), *, ends: int = 0
) -> dict[str, str]:
    """Hex digests of a file (or of a folder's relative file names and contents), read once; with
    `ends`, of its first and last `ends` bytes. A file is hashed once per version (size, mtime,
    ctime, inode) in a process; a folder every time."""
    path = Path(path)
    stat = path.stat()
    version = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    key = (str(path.resolve()), version, tuple(algorithms), ends)
    if path.is_file() and key in _DIGESTS:
        return _DIGESTS[key]
    hashers = [hashlib.new(name) for name in algorithms]

    def update(block: bytes) -> None:
        for hasher in hashers:
            hasher.update(block)

    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        if file != path:
            update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            if not ends:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    update(block)
                continue
            update(handle.read(ends))
            if stat.st_size > ends:
                handle.seek(max(ends, stat.st_size - ends))
                update(handle.read(ends))
    digests = {name: hasher.hexdigest() for name, hasher in zip(algorithms, hashers, strict=True)}
    if path.is_file():
        _DIGESTS[key] = digests
    return digests


def clear_digests() -> None:
    """Empty the hasher's cache, so every file is read again (each run checks what is on disk)."""
    _DIGESTS.clear()


# -- sidecars and the rule -------------------------------------------------------------------------


def sidecar_path(path: Path | str) -> Path:
    """Where the provenance of the artefact at `path` is kept."""
    return Path(f"{path}{SIDECAR}")


def write_record(path: Path, recipe: dict, dataset: str) -> None:
    """Write the sidecar of the artefact at `path`, made by `recipe` (atomically)."""
    stat = path.stat()
    record = {
        "dataset": dataset,
        "recipe": recipe,
        "sha256": file_digests(path)["sha256"],
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    if path.is_file() and stat.st_size > FULL_CHECK_BYTES:
        record["sample_sha256"] = file_digests(path, ends=SAMPLE_BYTES)["sha256"]
    write_text_atomic(
        sidecar_path(path), json.dumps(record, indent=1, sort_keys=True), f"provenance record of {dataset}"
    )


def read_record(name: str, path: Path | None) -> dict | None:
    """The provenance record of `path` (None when it has none); DamagedRecord for a sidecar that
    is not a whole record (truncated, not JSON)."""
    if path is None:
        return None
    sidecar = sidecar_path(path)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        missing = [key for key in RECORD_KEYS if not isinstance(record, dict) or key not in record]
        problem = f"lacks {missing}" if missing else ""
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = f"is damaged ({error})"
    if problem:
        raise DamagedRecord(
            f"{name} ({path}): its provenance record {sidecar} {problem}, so what the artefact was "
            "made from is unknown and it cannot be used"
        )
    return record


def verify_everything() -> bool:
    """Whether ``PERL_VERIFY_ARTEFACTS=all`` asks for every artefact to be hashed in full (ValueError
    for another value than ``all`` or ``default``)."""
    value = os.environ.get(VERIFY_VARIABLE, "").strip().lower()
    if value not in ("", "all", "default"):
        raise ValueError(
            f"{VERIFY_VARIABLE}={value!r}: expected 'all' (hash every artefact in full before use) or "
            f"'default' (the cheap rule for files over {FULL_CHECK_BYTES >> 20} MiB); unset it or fix it"
        )
    return value == "all"


def verify(name: str, path: Path, record: dict, fix: str, verify_all: bool = False) -> None:
    """Raise :class:`ArtefactProblem` (ending with `fix`) unless `path` still holds what `record`
    names (the cheap rule of the module's docstring)."""
    try:
        stat = path.stat()
        large = path.is_file() and stat.st_size > FULL_CHECK_BYTES and not verify_all
        if large and (stat.st_size, stat.st_mtime_ns) == (record["size"], record["mtime_ns"]):
            sample = record.get("sample_sha256")
            if sample is None or file_digests(path, ends=SAMPLE_BYTES)["sha256"] == sample:
                return
        elif file_digests(path)["sha256"] == record["sha256"]:
            return
    except PermissionError as error:
        raise ArtefactProblem(
            f"{name} ({path}) cannot be read: permission denied ({error}); give this user read "
            f"access (e.g. chmod -R a+rX {path.parent}) and run again"
        ) from error
    raise ArtefactProblem(
        f"{name} ({path}) was modified or damaged after it was written (its content no longer "
        f"matches its provenance record); rebuild it: {fix}"
    )


def check(path: Path | str, recipe: Mapping | None = None) -> dict:
    """Check one artefact outside a Kedro run (notebooks): its content against its record and, if
    given, its recipe; returns the record, or raises ArtefactProblem / StaleArtefactError."""
    path = Path(path)
    fix = "kedro run --only-missing-outputs"
    if not path.exists():
        raise ArtefactProblem(f"{path} is missing; build it: {fix}")
    record = read_record(path.name, path)
    if record is None:
        raise ArtefactProblem(f"{path} has no provenance record {sidecar_path(path)}; rebuild it: {fix}")
    verify(path.name, path, record, fix, verify_everything())
    changes = differences(record["recipe"], recipe) if recipe is not None else []
    if changes:
        raise StaleArtefactError(str(path), changes, fix)
    return record


def write_text_atomic(path: Path, text: str, what: str = "file") -> None:
    """Write `text` to `path` all at once (a temporary sibling, then ``os.replace``), with the
    usual permissions; an OSError names `what`, `path` and the reason (e.g. no space left)."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        Path(tmp).write_text(text, encoding="utf-8")
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        reason = error.strerror or str(error)
        raise OSError(
            error.errno,
            f"cannot write the {what} {path}: {reason}; the previous {path.name} (if any) is unchanged. "
            "Free space or fix the folder's permissions, then run again",
        ) from error


def file_mode() -> int:
    """The permissions of a new file under this process's umask (mkstemp's temporary file has 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _show(value: Any) -> str:
    text = "absent" if value is None else canonical_json(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not part of a recipe")
