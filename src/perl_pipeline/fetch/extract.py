"""Safe, restartable extraction of zip and tar archives (no Kedro).

Unsafe members (absolute, drive-letter or ``..`` paths, members under a symlink, links leading
outside the target, devices/FIFOs) are refused before anything is written. Members go to a hidden
staging folder, then into place; the marker ``.extracted-<archive name>`` is written last, so an
interrupted extraction is redone and a finished one is not reopened. Decompression bombs are
refused from the headers by :class:`ExtractLimits`.
"""

from __future__ import annotations

import glob
import json
import logging
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from perl_pipeline.provenance import write_text_atomic

logger = logging.getLogger(__name__)

MARKER_PREFIX = ".extracted-"
STAGING_PREFIX = ".extracting-"
_SUPPORTED_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_DATA_FILTER: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the target, or is a device/FIFO."""


class CorruptArchiveError(RuntimeError):
    """An archive cannot be read to the end (truncated or damaged download)."""


class ArchiveTooLargeError(ValueError):
    """An archive would extract to more than :class:`ExtractLimits` allow; nothing was written."""


GB = 10**9
RATIO_FLOOR_BYTES = 100 * 2**20  # the compression ratio is only limited above 100 MiB extracted


@dataclass(frozen=True)
class ExtractLimits:
    """How much one archive may extract to (``max_bytes``; above the floor, ``max_ratio`` x its size)."""

    max_bytes: int = 1000 * GB  # ImageNet's train archive, the largest of the protocol, is 147 GB
    max_ratio: float = 100.0  # image archives extract to about their size; text to ~5-10x

    @classmethod
    def from_settings(cls, max_extracted_gb: float, max_compression_ratio: float) -> ExtractLimits:
        """From ``data_source.max_extracted_gb`` and ``data_source.max_compression_ratio``."""
        return cls(max_bytes=int(max_extracted_gb * GB), max_ratio=float(max_compression_ratio))


_LIMITS: ContextVar[ExtractLimits | None] = ContextVar("extract_limits", default=None)


@contextmanager
def extraction_limits(limits: ExtractLimits) -> Iterator[None]:
    """Use `limits` for every :func:`extract_archive` call inside the block (nested archives too)."""
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)


@dataclass(frozen=True)
class _Member:
    """One archive member in a form shared by zip and tar."""

    raw: str
    kind: str  # "file", "dir", "symlink", "hardlink" or "special"
    link: str
    size: int  # as declared by the header; zipfile and tarfile never write more
    source: Any = field(compare=False, repr=False)

    @cached_property  # read for every member several times: computed once
    def name(self) -> str:
        return "/".join(part for part in self.raw.split("/") if part not in ("", "."))


def extract_archive(archive: Path, target: Path, *, members_prefix: str | None = None) -> list[Path]:
    """Extract a zip/tar archive into target (unsafe members refused first); return the files.

    ``members_prefix`` keeps only members at or under that archive path (paths unchanged); the
    limits are those of :func:`extraction_limits`, else ``ExtractLimits()``. Existing content of
    ``target`` is kept and same-named entries are replaced.
    """
    archive, target = Path(archive), Path(target)
    marker = target / f"{MARKER_PREFIX}{archive.name}"
    done = _read_marker(marker, archive, members_prefix)
    if done is not None:
        logger.info("%s already extracted into %s; skipping", archive.name, target)
        return [target / rel for rel in done]
    if not archive.is_file():
        raise FileNotFoundError(f"Archive {archive} does not exist; download it first.")
    with _open_archive(archive) as handle:
        is_zip = isinstance(handle, zipfile.ZipFile)
        members = _zip_members(handle) if is_zip else [_tar_member(info) for info in handle.getmembers()]
        _check_members(members, archive)
        selected = _select(members, members_prefix, archive)
        _check_sizes(selected, archive, _LIMITS.get() or ExtractLimits())
        with _staging(target, archive) as staging:
            (_write_zip if is_zip else _write_tar)(handle, selected, staging, archive)
    files = [m.name for m in selected if m.kind != "dir"]
    _write_marker(marker, archive, members_prefix, files)
    logger.info("Extracted %d files from %s into %s", len(files), archive.name, target)
    return [target / rel for rel in files]


def _zip_members(handle: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in handle.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            link = handle.read(info).decode("utf-8", errors="surrogateescape")
            members.append(_Member(info.filename, "symlink", link, 0, info))
            continue
        special = stat.S_IFMT(mode) not in (0, stat.S_IFREG)
        kind = "dir" if info.is_dir() else "special" if special else "file"
        members.append(_Member(info.filename, kind, "", info.file_size, info))
    return members


def _tar_member(info: tarfile.TarInfo) -> _Member:
    tests = ((info.isreg, "file"), (info.isdir, "dir"), (info.issym, "symlink"), (info.islnk, "hardlink"))
    kind = next((kind for test, kind in tests if test()), "special")
    return _Member(info.name, kind, info.linkname, info.size, info)


def _write_zip(handle: zipfile.ZipFile, selected: list[_Member], dest: Path, archive: Path) -> None:
    for member in selected:
        out = dest.joinpath(*member.name.split("/"))
        if member.kind == "dir":
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        _ensure_inside(out.parent, dest, member, archive)
        if out.is_symlink() or out.is_file():
            out.unlink()
        if member.kind == "symlink":
            os.symlink(member.link, out)
            _ensure_inside(out, dest, member, archive)
        else:
            with handle.open(member.source) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _write_tar(handle: tarfile.TarFile, selected: list[_Member], dest: Path, archive: Path) -> None:
    try:
        handle.extractall(dest, members=[m.source for m in selected], **_DATA_FILTER)
    except tarfile.FilterError as exc:  # our own checks should make this unreachable
        raise UnsafeArchiveError(
            f"Refusing to extract {archive}: {exc}. Delete the archive and download it again."
        ) from exc


@contextmanager
def _open_archive(archive: Path) -> Iterator[zipfile.ZipFile | tarfile.TarFile]:
    """Open a zip or tar archive; read/decompression errors become CorruptArchiveError naming it."""
    handle = None
    try:
        handle = zipfile.ZipFile(archive) if zipfile.is_zipfile(archive) else tarfile.open(archive, "r:*")
        with handle:
            yield handle
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        # bz2/gzip report bad data as an OSError without errno; disk errors carry one
        if isinstance(exc, tarfile.FilterError) or getattr(exc, "errno", None) is not None:
            raise
        if handle is None and not archive.name.lower().endswith(_SUPPORTED_SUFFIXES):
            raise ValueError(
                f"{archive} is not a zip or tar archive (supported: {', '.join(_SUPPORTED_SUFFIXES)})."
            ) from exc
        problem = f"{type(exc).__name__}: {exc}"
        raise CorruptArchiveError(
            f"Archive {archive} is corrupt or truncated ({problem}). Delete it and download it again."
        ) from exc


def _check_members(members: list[_Member], archive: Path) -> None:
    """Raise UnsafeArchiveError for the first unsafe member; write nothing."""
    symlinks = {m.name for m in members if m.kind == "symlink"}
    for member in members:
        reason = _unsafe_reason(member, symlinks)
        if reason is not None:
            raise UnsafeArchiveError(
                f"Refusing to extract {archive}: member {member.raw!r} {reason}. Nothing was "
                "extracted. The archive may be malicious or damaged; delete it and download "
                "it again from the official source."
            )


def _unsafe_reason(member: _Member, symlinks: set[str]) -> str | None:
    if "\x00" in member.raw:
        return "contains a NUL byte"
    if member.raw.startswith(("/", "\\")):
        return "is an absolute path"
    if _DRIVE_LETTER.match(member.raw):
        return "starts with a drive letter"
    if ".." in re.split(r"[\\/]", member.raw):
        return "contains a '..' component"
    if member.kind == "special":
        return "is a device, FIFO or other special file"
    parts = member.name.split("/")
    for ancestor in ("/".join(parts[:end]) for end in range(1, len(parts))):
        if ancestor in symlinks:
            return f"is stored under the symlink member {ancestor!r}"
    if member.kind == "symlink":
        return _link_problem(member.link, posixpath.dirname(member.name), symlinks, "symlink")
    if member.kind == "hardlink":
        return _link_problem(member.link, "", symlinks, "hard link")
    return None


def _link_problem(link: str, base: str, symlinks: set[str], kind: str) -> str | None:
    """Walk link from base; fail if it leaves the root or passes through a symlink."""
    if not link or link.startswith(("/", "\\")) or _DRIVE_LETTER.match(link):
        return f"is a {kind} to an absolute or empty path ({link!r})"
    stack = [part for part in base.split("/") if part]
    parts = [part for part in re.split(r"[\\/]", link) if part not in ("", ".")]
    for index, part in enumerate(parts):
        if part == "..":
            if not stack:
                return f"is a {kind} pointing outside the target ({link!r})"
            stack.pop()
            continue
        stack.append(part)
        if index < len(parts) - 1 and "/".join(stack) in symlinks:
            return f"is a {kind} whose target ({link!r}) goes through another symlink"
    return None


def _ensure_inside(path: Path, root: Path, member: _Member, archive: Path) -> None:
    """Second line of defence for zip: the real path must stay under root."""
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise UnsafeArchiveError(
            f"Refusing to extract {archive}: member {member.raw!r} resolves outside the target. "
            "Delete the archive and download it again."
        )


def _select(members: list[_Member], prefix: str | None, archive: Path) -> list[_Member]:
    """Drop the archive root entry and, with a prefix, members outside it."""
    members = [m for m in members if m.name]
    if not prefix:
        return members
    wanted = "/".join(part for part in prefix.split("/") if part not in ("", "."))
    selected = [m for m in members if m.name == wanted or m.name.startswith(wanted + "/")]
    if not selected:
        tops = sorted({m.name.split("/")[0] for m in members})[:5]
        raise ValueError(
            f"No member of {archive} is under {prefix!r}; top-level entries are {tops}. Fix members_prefix."
        )
    return selected


def _check_sizes(selected: list[_Member], archive: Path, limits: ExtractLimits) -> None:
    """Refuse, from the headers, an extraction beyond `limits` (the bytes written never exceed them)."""
    total = sum(m.size for m in selected if m.kind == "file")
    packed = max(archive.stat().st_size, 1)
    fix = (
        "If you trust this archive, raise the limit (--params data_source.max_extracted_gb=N or "
        "data_source.max_compression_ratio=N); otherwise delete it and get the archive from its source."
    )
    if total > limits.max_bytes:
        raise ArchiveTooLargeError(
            f"Refusing to extract {archive}: its members total {_size(total)}, over the limit of "
            f"{_size(limits.max_bytes)} (data_source.max_extracted_gb). Nothing was written. {fix}"
        )
    if total > max(RATIO_FLOOR_BYTES, int(packed * limits.max_ratio)):
        raise ArchiveTooLargeError(
            f"Refusing to extract {archive}: {_size(packed)} would extract to {_size(total)}, "
            f"{total / packed:.0f} times its size, over the limit of {limits.max_ratio:g} times "
            f"(data_source.max_compression_ratio; a decompression bomb looks like this). Nothing was "
            f"written. {fix}"
        )


def _size(size: int) -> str:
    for unit, scale in (("GB", GB), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


@contextmanager
def _staging(target: Path, archive: Path) -> Iterator[Path]:
    """A hidden folder in target to extract into; its entries move into place if the block succeeds."""
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob(f"{STAGING_PREFIX}{glob.escape(archive.name)}-*"):
        logger.warning("Removing %s left by an interrupted extraction", stale)
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{archive.name}-", dir=target))
    try:
        yield staging
        _merge_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(target.iterdir()):
            target.rmdir()


def _merge_into(src: Path, dst: Path) -> None:
    """Move every entry of src into dst, merging real folders and replacing the rest."""
    for entry in sorted(src.iterdir()):
        out = dst / entry.name
        entry_is_dir = entry.is_dir() and not entry.is_symlink()
        if entry_is_dir and out.is_dir() and not out.is_symlink():
            _merge_into(entry, out)
            continue
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        elif out.is_symlink() or out.exists():
            out.unlink()
        os.replace(entry, out)


def _read_marker(marker: Path, archive: Path, prefix: str | None) -> list[str] | None:
    """Return the recorded file list if the marker shows this extraction is complete."""
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        files, size = [str(name) for name in record["files"]], int(record["archive_size"])
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("Ignoring unreadable marker %s; extracting again", marker)
        return None
    if record.get("members_prefix") != prefix:
        return None
    if archive.is_file() and archive.stat().st_size != size:
        logger.info("%s changed since it was extracted; extracting again", archive)
        return None
    return files


def _write_marker(marker: Path, archive: Path, prefix: str | None, files: list[str]) -> None:
    size = archive.stat().st_size
    record = {"archive": archive.name, "archive_size": size, "members_prefix": prefix, "files": files}
    write_text_atomic(marker, json.dumps(record), "extraction marker")
