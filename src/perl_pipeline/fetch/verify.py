"""Checksums of files on disk, hashed once per version of the file (no Kedro).

Computed digests are recorded in ``<file>.verified`` with the file's size and mtime, so an
unchanged file (a 150 GB ImageNet tar) is not hashed again; any change makes the record stale.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from perl_pipeline.provenance import file_digests, write_text_atomic

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".verified"
ALGORITHMS = ("md5", "sha256")


@dataclass(frozen=True)
class ChecksumCheck:
    """The outcome of :func:`verify_checksums` (digests by algorithm; cached: read from the record)."""

    path: Path
    expected: dict[str, str]
    actual: dict[str, str]
    cached: bool

    @property
    def ok(self) -> bool:
        """Whether every known checksum matches."""
        return not self.problem()

    def problem(self) -> str:
        """'expected md5 X, got Y' for each mismatching checksum ('' when all match)."""
        return "; ".join(
            f"expected {name} {digest}, got {self.actual[name]}"
            for name, digest in self.expected.items()
            if self.actual[name] != digest
        )


def record_path(path: Path | str) -> Path:
    """Where the digests of ``path`` are recorded: ``<path>.verified``."""
    return Path(f"{path}{RECORD_SUFFIX}")


def verify_checksums(path: Path | str, *, md5: str | None = None, sha256: str | None = None) -> ChecksumCheck:
    """Compare ``path`` with its known checksums, hashing it only if no fresh record has them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file; nothing to verify")
    expected = {
        name: digest.strip().lower()
        for name, digest in (("md5", md5), ("sha256", sha256))
        if digest is not None
    }
    if not expected:
        return ChecksumCheck(path, {}, {}, cached=True)
    known = _read_record(path)
    if all(name in known for name in expected):
        return ChecksumCheck(path, expected, {n: known[n] for n in expected}, cached=True)
    start = time.perf_counter()
    digests = file_digests(path, tuple(expected))
    seconds, mb = time.perf_counter() - start, path.stat().st_size / 1e6
    logger.info("hashed %s (%.1f MB) in %.1f s (%.0f MB/s)", path, mb, seconds, mb / max(seconds, 1e-9))
    remember_digests(path, {**known, **digests})
    return ChecksumCheck(path, expected, digests, cached=False)


def remember_digests(path: Path | str, digests: Mapping[str, str]) -> None:
    """Record ``digests`` of ``path``'s current bytes in ``<path>.verified`` (a failure only warns)."""
    path = Path(path)
    stat = path.stat()
    record = {
        "file": path.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        **{name: str(digests[name]).lower() for name in ALGORITHMS if name in digests},
    }
    target = record_path(path)
    try:
        write_text_atomic(target, json.dumps(record), "checksum record")
    except OSError as exc:
        logger.warning("could not record the checksums of %s in %s (%s)", path, target, exc)


def forget_digests(path: Path | str) -> None:
    """Remove the ``.verified`` record of ``path`` (when the file itself is removed)."""
    record_path(path).unlink(missing_ok=True)


def _read_record(path: Path) -> dict[str, str]:
    """The recorded digests, if the record describes the file as it is now; else {}."""
    target = record_path(path)
    if not target.is_file():
        return {}
    try:
        record = json.loads(target.read_text(encoding="utf-8"))
        stat = path.stat()
        fresh = int(record["size"]) == stat.st_size and int(record["mtime_ns"]) == stat.st_mtime_ns
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("ignoring unreadable checksum record %s; hashing %s again", target, path)
        return {}
    if not fresh:
        logger.info("%s changed since its checksums were recorded; hashing it again", path)
        return {}
    return {name: str(record[name]) for name in ALGORITHMS if isinstance(record.get(name), str)}
