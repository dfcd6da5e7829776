"""Fetch a benchmark into its CoOp layout and build its index table (no Kedro).

:func:`fetch_benchmark` plans first, touching nothing: a missing item or a supplied archive with the
wrong checksum raises before any download or extraction. Then it downloads, extracts and runs the
spec's idempotent ``arrange`` steps.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import posixpath
import tarfile
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm import tqdm

from perl_pipeline.benchmarks.index import image_files, label_classnames
from perl_pipeline.benchmarks.layouts import LAYOUTS
from perl_pipeline.benchmarks.spec import (
    WNID_PATTERN,
    ArrangeStep,
    BenchmarkError,
    BenchmarkSpec,
    ImageNetValStep,
    MoveStep,
    Source,
    UnpackStep,
)
from perl_pipeline.benchmarks.validate import (
    check_data_root,
    permission_message,
    preparation_command,
    split_sizes,
)
from perl_pipeline.fetch.download import DownloadError, download_file, download_gdrive
from perl_pipeline.fetch.extract import (
    MARKER_PREFIX,
    ArchiveTooLargeError,
    CorruptArchiveError,
    ExtractLimits,
    UnsafeArchiveError,
    extract_archive,
    extraction_limits,
)
from perl_pipeline.fetch.verify import forget_digests, remember_digests, verify_checksums
from perl_pipeline.provenance import file_digests

logger = logging.getLogger(__name__)

_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")


class DatasetUnavailableError(BenchmarkError):
    """A benchmark's files are missing (and cannot be downloaded) or could not be prepared;
    ``missing`` holds one line per missing item."""

    def __init__(self, benchmark: str, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.benchmark = benchmark
        self.missing = tuple(missing)


class ChecksumMismatchError(DatasetUnavailableError):
    """A user-supplied archive does not match its known checksum (nothing was extracted)."""


def fetch_benchmark(
    spec: BenchmarkSpec,
    data_root: Path | str,
    *,
    download: bool = True,
    remove_archives: bool = False,
    accept_checksum_mismatch: Collection[str] = (),
    limits: ExtractLimits | None = None,
) -> None:
    """Make ``data_root / spec.folder`` hold the benchmark: sources in place are skipped, supplied
    archives at ``<folder>/<filename>`` extracted, the rest downloaded when ``download`` and a public
    route allow. Archives in ``accept_checksum_mismatch`` are used despite a checksum mismatch."""
    folder = check_data_root(data_root) / spec.folder
    with _permission_guard(spec), extraction_limits(limits or ExtractLimits()):
        if not _unprepared(spec, folder):
            logger.info("[%s] already prepared in %s", spec.name, folder)
            return
        moves = [s for s in spec.arrange if isinstance(s, MoveStep)]
        jobs: list[tuple[Source, bool]] = []
        missing: list[str] = []
        for src in spec.sources:
            if any(_exists_after_moves(folder, p, moves) for p in src.provides):
                continue
            if (folder / src.filename).is_file():
                jobs.append((src, False))
            elif download and src.downloadable:
                jobs.append((src, True))
            elif src.optional:
                logger.info("[%s] optional %s not available; skipping", spec.name, src.filename)
            else:
                missing.append(_describe_missing_source(folder, src))
        for step in spec.arrange:
            missing += _STEPS[type(step)].missing(step, folder)
        if missing:
            items = "\n".join(f"  - {m}" for m in missing)
            raise DatasetUnavailableError(
                spec.name,
                f"[{spec.name}] cannot be prepared in {folder}: {len(missing)} required item(s) are not on "
                f"disk and cannot be downloaded{'' if download else ' (download=False)'}; nothing was "
                f"downloaded or extracted.\nMissing:\n{items}\nHow to get it: {spec.manual}",
                missing,
            )
        _verify_supplied(
            spec,
            folder,
            [src for src, needs_download in jobs if not needs_download],
            accept_checksum_mismatch,
        )
        for src, needs_download in jobs:
            if needs_download and not _download(spec, folder, src):
                continue
            if src.kind == "archive":
                _extract(spec, folder, src, remove_archives)
        for step in spec.arrange:
            if _STEPS[type(step)].pending(step, folder):
                _STEPS[type(step)].apply(step, folder, spec.name)
        fix = "The archives or folders supplied do not have the expected layout."
        _require_prepared(spec, folder, f"after fetching, {folder} still lacks", fix)
        logger.info("[%s] prepared in %s", spec.name, folder)


def with_index_sizes(spec: BenchmarkSpec, index: pl.DataFrame) -> BenchmarkSpec:
    """``spec`` with the class count and split sizes read into ``index``, where its layout takes them
    from the split file (``image_folder``); otherwise ``spec`` unchanged."""
    if not LAYOUTS[spec.layout].sizes_from_split_file:
        return spec
    sizes = split_sizes(index)
    return dataclasses.replace(spec, num_classes=int(index["label"].n_unique()), split_sizes=sizes)


def build_index(spec: BenchmarkSpec, data_root: Path | str) -> pl.DataFrame:
    """Index a prepared benchmark: one row per image (``split``, POSIX ``path`` under data_root,
    Int64 ``label``, ``classname``); raises DatasetUnavailableError when it is not prepared."""
    root = check_data_root(data_root)
    folder = root / spec.folder
    with _permission_guard(spec):
        fix = (
            f"Fix: run {preparation_command(spec.name)} (it downloads what is public and tells you "
            "what to supply by hand)."
        )
        _require_prepared(spec, folder, f"is not prepared under {folder}", fix)
        index = LAYOUTS[spec.layout].read(spec, root)
    if index.is_empty():
        raise DatasetUnavailableError(
            spec.name, f"[{spec.name}] no images found under {folder} (layout {spec.layout}). {spec.manual}"
        )
    label_classnames(index, where=f"[{spec.name}] index")
    logger.info("[%s] indexed %d images (%s)", spec.name, index.height, split_sizes(index))
    return index


@contextmanager
def _permission_guard(spec: BenchmarkSpec) -> Iterator[None]:
    """Report a folder or file that cannot be read as a permissions problem, never as missing."""
    try:
        yield
    except PermissionError as exc:
        path = exc.filename or "a file or folder"
        message = permission_message(f"[{spec.name}]", path, exc.strerror, preparation_command(spec.name))
        raise DatasetUnavailableError(spec.name, message, [str(path)]) from exc


def _verify_supplied(
    spec: BenchmarkSpec, folder: Path, sources: Sequence[Source], accepted: Collection[str]
) -> None:
    """Check every user-supplied archive with a known checksum, before anything is extracted."""
    bad = {}
    for src in sources:
        if src.kind != "archive" or not (src.md5 or src.sha256):
            continue
        check = verify_checksums(folder / src.filename, md5=src.md5, sha256=src.sha256)
        if check.ok:
            cached = " (recorded earlier)" if check.cached else ""
            logger.info("[%s] %s matches its known checksum%s", spec.name, src.filename, cached)
        elif src.filename in accepted:
            msg = "[%s] %s does not match its known checksum (%s); using it anyway because it is listed in %s"
            logger.warning(
                msg, spec.name, check.path, check.problem(), "data_source.accept_checksum_mismatch"
            )
        else:
            bad[src.filename] = check
    if bad:
        lines = "\n".join(
            f"  - {check.path} ({check.path.stat().st_size} bytes): {check.problem()}"
            for check in bad.values()
        )
        names = list(bad)
        accept = (
            f'kedro run --params "data_source.accept_checksum_mismatch=[{names[0]}]" (plus your '
            f"usual options)"
            if len(names) == 1
            else f"set accept_checksum_mismatch: [{', '.join(names)}] in the data_source block of "
            f"conf/base/parameters.yml"
        )
        raise ChecksumMismatchError(
            spec.name,
            f"[{spec.name}] {len(bad)} archive(s) you supplied do not match the known checksum; "
            f"nothing was extracted or downloaded:\n{lines}\nFix: the file is damaged (e.g. a cut "
            f"download) or a different release. Replace just that file with a good copy (check "
            f"it with md5sum or sha256sum), then run {preparation_command(spec.name)}. If you "
            f"mean to use this copy, accept it on purpose: {accept}. {spec.manual}",
            names,
        )


def _unprepared(spec: BenchmarkSpec, folder: Path) -> list[str]:
    """What stops the reader: missing root paths and arrange steps still to run."""
    problems = [f"{folder / p} is missing" for p in spec.root_paths if not (folder / p).exists()]
    problems += [
        f"arrange step still to run: {step}"
        for step in spec.arrange
        if _STEPS[type(step)].pending(step, folder)
    ]
    return problems


def _require_prepared(spec: BenchmarkSpec, folder: Path, problem: str, fix: str) -> None:
    """Raise DatasetUnavailableError naming what :func:`_unprepared` finds, if anything."""
    missing = _unprepared(spec, folder)
    if missing:
        message = f"[{spec.name}] {problem}: {'; '.join(missing)}. {fix} {spec.manual}"
        raise DatasetUnavailableError(spec.name, message, missing)


def _exists_after_moves(folder: Path, rel: str, moves: Sequence[MoveStep]) -> bool:
    """Whether ``rel`` exists now or will once the spec's move steps have run."""
    if (folder / rel).exists():
        return True
    for move in moves:
        inner = posixpath.relpath(rel, move.dst)  # where rel lies inside dst ("../..." if outside)
        if inner.split("/")[0] != ".." and (folder / move.src / inner).exists():
            return True
    return False


def _describe_missing_source(folder: Path, src: Source) -> str:
    why = "downloads are disabled (download=False)" if src.downloadable else "no public download route"
    line = f"{src.filename} ({src.kind}; {why}): put it at {folder / src.filename}"
    if src.kind == "archive":
        line += (
            ", or put its extracted contents there so that "
            + ", ".join(str(folder / p) for p in src.provides)
            + " exist(s)"
        )
    if src.downloadable:
        line += "; get it from " + " or ".join(src.routes())
    return line


def _download(spec: BenchmarkSpec, folder: Path, src: Source) -> bool:
    """Try every route of ``src``; False (with a warning) if an optional source fails."""
    dest = folder / src.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    what = f"{spec.name}: {src.filename}"
    errors = []
    for url in src.urls:
        try:
            download_file(url, dest, sha256=src.sha256, md5=src.md5, what=what, manual_hint=spec.manual)
            verified = {"md5": src.md5, "sha256": src.sha256}
            remember_digests(dest, {k: v for k, v in verified.items() if v})  # hash it only once
            return True
        except DownloadError as exc:  # ChecksumError included: try the next mirror
            errors.append(str(exc))
    if src.gdrive_id:
        try:
            download_gdrive(src.gdrive_id, dest, sha256=src.sha256, what=what, manual_hint=spec.manual)
            if src.md5 and file_digests(dest, ("md5",))["md5"] != src.md5:
                dest.unlink()
                raise DownloadError(f"{what}: md5 of the Google Drive copy is not {src.md5}")
            return True
        except DownloadError as exc:
            errors.append(str(exc))
    if src.optional:
        why = " | ".join(errors)
        logger.warning("[%s] optional %s could not be downloaded; skipping: %s", spec.name, src.filename, why)
        return False
    raise DatasetUnavailableError(
        spec.name,
        f"[{spec.name}] could not download {src.filename}:\n"
        + "\n".join(f"  - {e}" for e in errors)
        + f"\nManual route: put the file at {dest} and run again. {spec.manual}",
        [src.filename],
    )


def _extract(spec: BenchmarkSpec, folder: Path, src: Source, remove_archive: bool) -> None:
    archive, target = folder / src.filename, folder / src.extract_to
    marker = target / f"{MARKER_PREFIX}{archive.name}"
    if marker.is_file():  # we only extract when the result is gone: the marker is stale
        msg = "[%s] %s was extracted before but its files are gone; extracting again"
        logger.info(msg, spec.name, archive.name)
        marker.unlink()
    try:
        extract_archive(archive, target, members_prefix=src.members_prefix)
    except ArchiveTooLargeError as exc:
        raise DatasetUnavailableError(spec.name, f"[{spec.name}] {exc}", [src.filename]) from exc
    except (CorruptArchiveError, UnsafeArchiveError, ValueError) as exc:
        raise DatasetUnavailableError(
            spec.name,
            f"[{spec.name}] cannot extract {archive}: {exc}\nFix: delete just that file (rm "
            f"{archive}) and run {preparation_command(spec.name)} to download it again, or put a "
            f"good copy there. {spec.manual}",
            [src.filename],
        ) from exc
    if remove_archive:
        archive.unlink()
        forget_digests(archive)
        logger.info("[%s] removed %s after extraction", spec.name, archive)


@dataclass(frozen=True)
class _StepImpl:
    pending: Callable[[ArrangeStep, Path], bool]
    apply: Callable[[ArrangeStep, Path, str], None]
    missing: Callable[[ArrangeStep, Path], list[str]] = lambda step, folder: []  # what it needs up front


def _move_pending(step: MoveStep, folder: Path) -> bool:
    return posixpath.normpath(step.src) != posixpath.normpath(step.dst) and (folder / step.src).is_dir()


def _move_apply(step: MoveStep, folder: Path, name: str) -> None:
    """Move ``src`` into ``dst``, merging folders (staged, so ``dst`` may contain ``src``)."""
    src, dst = folder / step.src, folder / step.dst
    staging = folder / f".moving-{uuid.uuid4().hex}"
    src.rename(staging)
    _merge_into(staging, dst)
    parent = src.parent
    while parent != folder and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    logger.info("[%s] moved %s -> %s", name, src, dst)


def _merge_into(src: Path, dst: Path) -> None:
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
        return
    for child in list(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge_into(child, target)
        elif target.exists() and child.is_dir() != target.is_dir():
            raise BenchmarkError(
                f"cannot merge {child} into {target}: one is a folder, the "
                f"other a file; remove one of them and run again"
            )
        else:
            os.replace(child, target)
    src.rmdir()


def _archive_stem(name: str) -> str:
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _nested_archives(step: UnpackStep, folder: Path) -> list[Path]:
    """Files matching the glob, skipping hidden ones (e.g. extraction markers)."""
    return sorted(p for p in folder.glob(step.archives) if p.is_file() and not p.name.startswith("."))


def _unpack_apply(step: UnpackStep, folder: Path, name: str) -> None:
    """Extract each nested archive into ``to`` (``{stem}`` = its name), then delete it."""
    archives = _nested_archives(step, folder)
    desc = f"[{name}] unpack {step.archives}"
    for archive in tqdm(archives, desc=desc, unit="archive", disable=len(archives) < 2, leave=False):
        extract_archive(archive, folder / step.to.format(stem=_archive_stem(archive.name)))
        archive.unlink()
    logger.info("[%s] unpacked %d archive(s) matching %s", name, len(archives), step.archives)


def _flat_images(directory: Path) -> list[Path]:
    return [directory / name for name in image_files(directory)] if directory.is_dir() else []


def _val_missing(step: ImageNetValStep, folder: Path) -> list[str]:
    """The labels to sort a flat (or still to be extracted) val folder, unless they are there."""
    val, devkit, extracted = folder / step.dir, folder / step.devkit, folder / _archive_stem(step.devkit)
    sorted_already = val.is_dir() and not _flat_images(val)
    if sorted_already or devkit.is_file() or extracted.is_dir() or (folder / step.mapping).is_file():
        return []
    return [
        f"ImageNet validation labels ({step.dir} is or will be flat and must be sorted into wnid "
        f"folders): put the devkit at {devkit} (or extracted at {extracted}), or a mapping file at "
        f"{folder / step.mapping} with '<image name> <wnid>' lines (Kaggle's LOC_val_solution.csv also works)"
    ]


def _val_apply(step: ImageNetValStep, folder: Path, name: str) -> None:
    """Move each flat ``ILSVRC2012_val_*.JPEG`` into ``<dir>/<wnid>/``."""
    mapping = _val_wnids(step, folder, name)
    files = _flat_images(folder / step.dir)
    unknown = [f.name for f in files if f.stem not in mapping]
    if unknown:
        raise DatasetUnavailableError(
            name,
            f"[{name}] {len(unknown)} validation image(s) have no label in the "
            f"devkit/mapping: {unknown[:5]}; check {folder / step.mapping} or the devkit "
            f"{folder / step.devkit}",
            unknown[:5],
        )
    for path in tqdm(files, desc=f"[{name}] sort val into wnid folders", unit="img", leave=False):
        target = path.parent / mapping[path.stem]
        target.mkdir(exist_ok=True)
        os.replace(path, target / path.name)
    logger.info("[%s] sorted %d validation images into wnid folders", name, len(files))


def _val_wnids(step: ImageNetValStep, folder: Path, name: str) -> dict[str, str]:
    """Image stem -> wnid, from the mapping file if present, else from the devkit."""
    mapping_path = folder / step.mapping
    if mapping_path.is_file():
        return _read_val_mapping(mapping_path, name)
    meta, truth = _devkit_files(folder / step.devkit, folder / _archive_stem(step.devkit), name)
    import scipy.io  # heavy: only needed here

    synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    ids = [int(line) for line in truth.split()]
    unknown = sorted(set(ids) - set(id_to_wnid))
    if unknown:
        raise DatasetUnavailableError(
            name,
            f"[{name}] the devkit's ground truth uses class ids {unknown[:5]} that its "
            f"meta.mat does not define; download ILSVRC2012_devkit_t12.tar.gz again",
            [step.devkit],
        )
    return {f"ILSVRC2012_val_{i:08d}": id_to_wnid[label] for i, label in enumerate(ids, 1)}


def _devkit_files(archive: Path, extracted: Path, name: str) -> tuple[bytes, str]:
    """``meta.mat`` bytes and the validation ground truth text, from the devkit."""
    names = ("meta.mat", "ILSVRC2012_validation_ground_truth.txt")
    found: dict[str, bytes] = {}
    if extracted.is_dir():
        for wanted in names:
            hits = sorted(extracted.rglob(wanted))
            if hits:
                found[wanted] = hits[0].read_bytes()
    elif archive.is_file():
        with tarfile.open(archive) as tar:
            for member in tar:
                base = posixpath.basename(member.name)
                if member.isfile() and base in names and base not in found:
                    found[base] = tar.extractfile(member).read()  # type: ignore[union-attr]
    lacking = [n for n in names if n not in found]
    if lacking:
        raise DatasetUnavailableError(
            name,
            f"[{name}] the devkit ({archive} or {extracted}) lacks {lacking}; download "
            f"ILSVRC2012_devkit_t12.tar.gz again",
            lacking,
        )
    return found[names[0]], found[names[1]].decode("utf-8")


def _read_val_mapping(path: Path, name: str) -> dict[str, str]:
    """``<image> <wnid>`` lines, or Kaggle ``LOC_val_solution.csv`` (``ImageId,wnid x y ...``)."""
    mapping = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.replace(",", " ").split()
        if len(fields) < 2 or not WNID_PATTERN.fullmatch(fields[1]):
            continue  # header or blank line
        mapping[Path(fields[0]).stem] = fields[1]
    if not mapping:
        raise DatasetUnavailableError(
            name, f"[{name}] {path} has no '<image name> <wnid>' lines", [str(path)]
        )
    return mapping


_STEPS: dict[type, _StepImpl] = {
    MoveStep: _StepImpl(_move_pending, _move_apply),
    UnpackStep: _StepImpl(lambda step, folder: bool(_nested_archives(step, folder)), _unpack_apply),
    ImageNetValStep: _StepImpl(
        lambda step, folder: bool(_flat_images(folder / step.dir)), _val_apply, _val_missing
    ),
}
