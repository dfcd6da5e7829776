"""Check an index table against its spec and the files on disk (no Kedro).

Decode what a run reads: every val and test image, train headers only (a run reads just its few-shot
draw, which :func:`check_drawn_images` decodes). Files are checked on a thread pool (Pillow decodes
without holding the GIL).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from PIL import Image
from tqdm import tqdm

from perl_pipeline.benchmarks.index import INDEX_SCHEMA
from perl_pipeline.benchmarks.spec import SPLITS, BenchmarkError, BenchmarkSpec

logger = logging.getLogger(__name__)

_BATCH = 64
DECODED_SPLITS = ("val", "test")
"""Splits decoded completely at data preparation (the train split gets a header read)."""
CHECK_MODES = ("exists", "header", "decode")


class DatasetValidationError(BenchmarkError):
    """The index does not match the protocol, or too many listed files are missing/corrupt."""


class DataRootError(BenchmarkError):
    """The ``data_root`` parameter does not point at a usable folder."""


def preparation_command(benchmark: str) -> str:
    """The shell command that (re)runs data preparation for one benchmark."""
    return f"kedro run --pipelines data_preparation --namespaces {benchmark}"


def check_data_root(data_root: Path | str) -> Path:
    """Refuse a ``data_root`` that exists but is not a readable folder (a missing one is fine)."""
    root = Path(data_root)
    try:
        exists, is_dir = root.exists(), root.is_dir()
    except PermissionError as exc:
        raise DataRootError(permission_message("data_root:", root, exc)) from exc
    if exists and not is_dir:
        raise DataRootError(
            f"data_root is {root}, which is not a folder (it is a file or something else). "
            f"data_root must be the folder that holds the benchmark folders: point it at one, "
            f'e.g. kedro run --params "data_root=/datasets/coop", or move {root} out of the way.'
        )
    if is_dir and not os.access(root, os.R_OK | os.X_OK):
        raise DataRootError(permission_message("data_root:", root))
    return root


def permission_message(who: str, path: Path | str, detail: object = None, rerun: str = "again") -> str:
    """``path`` cannot be read: the fix (read access), then run ``rerun``."""
    shown = f" ({detail})" if detail is not None else ""
    return (
        f"{who} {path} cannot be read: permission denied{shown}. The files may well be there; "
        f"give your user read access, e.g. chmod -R u+rX {path} (or ask its owner), then run {rerun}."
    )


@dataclass(frozen=True)
class FileCheck:
    """Outcome of :func:`check_image_files`: path -> (kind, reason) per bad file, in input order;
    ``missing``, ``unreadable`` and ``corrupt`` are the paths of one kind, ``bad`` all of them by kind."""

    problems: dict[str, tuple[str, str]]

    def of(self, kind: str) -> tuple[str, ...]:
        """The bad paths of one kind, in input order."""
        return tuple(p for p, (k, _) in self.problems.items() if k == kind)

    missing = property(lambda self: self.of("missing"))
    unreadable = property(lambda self: self.of("unreadable"))
    corrupt = property(lambda self: self.of("corrupt"))
    bad = property(lambda self: self.missing + self.unreadable + self.corrupt)


@dataclass(frozen=True)
class ValidationReport(FileCheck):
    """Outcome of :func:`validate_index`; ``index`` is the input without the tolerated bad files."""

    benchmark: str
    index: pl.DataFrame = field(repr=False)
    num_files: int
    split_sizes: dict[str, int]
    num_classes: int
    decode_checked: bool
    dropped = FileCheck.bad  # every bad file was removed from the index


def validate_index(
    index: pl.DataFrame,
    spec: BenchmarkSpec,
    data_root: Path | str,
    *,
    tolerance: int = 0,
    check_decode: bool = True,
    workers: int | None = None,
) -> ValidationReport:
    """Validate ``index`` for ``spec``; up to ``tolerance`` bad files are dropped with a warning.

    Raises DatasetValidationError on a structure mismatch or more bad files.
    """
    root = check_data_root(data_root)
    problems = _structure_problems(index, spec)
    if problems:
        raise DatasetValidationError(
            f"[{spec.name}] the index does not match the protocol:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\n"
            + _structure_fix(spec, root)
        )
    paths = index["path"].unique(maintain_order=True).to_list()
    if check_decode:
        decoded = set(index.filter(pl.col("split").is_in(DECODED_SPLITS))["path"].to_list())
        groups = {
            "decode": [p for p in paths if p in decoded],
            "header": [p for p in paths if p not in decoded],
        }
    else:
        groups = {"exists": paths}
    checks = [
        check_image_files(group, root, mode=mode, workers=workers, desc=f"[{spec.name}] {mode}")
        for mode, group in groups.items()
        if group
    ]
    found = FileCheck({p: problem for c in checks for p, problem in c.problems.items()})
    bad = list(found.bad)
    if len(bad) > tolerance:
        raise DatasetValidationError(_bad_files_message(spec, root, paths, found, tolerance))
    if bad:
        msg = "[%s] dropping %d bad file(s) from the index (tolerance %d): %s"
        logger.warning(msg, spec.name, len(bad), tolerance, _first(bad))
        index = index.filter(~pl.col("path").is_in(bad))
    report = ValidationReport(
        found.problems,
        benchmark=spec.name,
        index=index,
        num_files=len(paths),
        split_sizes=split_sizes(index),
        num_classes=index["label"].n_unique(),
        decode_checked=check_decode,
    )
    msg = "[%s] index valid: %d files, %d classes, splits %s"
    logger.info(msg, spec.name, len(paths), report.num_classes, report.split_sizes)
    return report


def check_drawn_images(
    few_shot: pl.DataFrame, data_root: Path | str, *, benchmark: str, workers: int | None = None
) -> None:
    """Decode every image a few-shot table draws, before training (data preparation only reads
    train headers); raises DatasetValidationError naming the bad files and the fix."""
    root = check_data_root(data_root)
    paths = few_shot["path"].unique(maintain_order=True).to_list()
    check = check_image_files(paths, root, mode="decode", workers=workers, desc=f"[{benchmark}] decode shots")
    if check.bad:
        lines = [
            f"[{benchmark}] {len(check.bad)} of the {len(paths)} images drawn for few-shot "
            f"training cannot be used (paths relative to {root}):"
        ]
        lines += _bad_lines(check)
        lines.append(
            "Fix: replace just those files with good copies (from the benchmark's archive or "
            "your copy), or fix their permissions (e.g. chmod -R u+rX "
            f"{root / paths[0].split('/')[0]}), then run again, e.g. kedro run --pipelines "
            f"few_shot_splits --namespaces {benchmark}. Data preparation only reads the headers "
            "of training images, so it cannot drop these with data_source.tolerance."
        )
        raise DatasetValidationError("\n".join(lines))
    logger.info("[%s] all %d drawn few-shot images decode", benchmark, len(paths))


def default_workers() -> int:
    """Threads for file checks: the cores this process may use, plus a few for I/O waits."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(32, cores + 4))


def check_image_files(
    paths: Sequence[str],
    data_root: Path | str,
    *,
    mode: str = "decode",
    workers: int | None = None,
    desc: str = "check images",
) -> FileCheck:
    """Check image files (relative to data_root) on a thread pool and log the rate (files/s).

    ``mode``: ``decode`` (every pixel), ``header`` (open: format and size) or ``exists`` (readable).
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"mode must be one of {CHECK_MODES}, got {mode!r}")
    root = Path(data_root)
    workers = workers or default_workers()
    batches = [paths[i : i + _BATCH] for i in range(0, len(paths), _BATCH)]
    found: dict[str, tuple[str, str]] = {}
    start = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar,
    ):
        for batch, done in zip(
            batches, pool.map(lambda b: _check_batch(b, root, mode), batches), strict=True
        ):
            found.update(done)
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    rate = len(paths) / max(seconds, 1e-9)
    msg = "%s: checked %d files (%s) in %.1f s, %.0f files/s on %d threads"
    logger.info(msg, desc, len(paths), mode, seconds, rate, workers)
    return FileCheck({p: found[p] for p in paths if p in found})


def check_image_file(path: Path | str, mode: str = "decode") -> tuple[str, str] | None:
    """Check one image: None if good, else (kind, reason) with kind missing/unreadable/corrupt."""
    full = os.fspath(path)
    try:
        info = os.stat(full)
        if not stat.S_ISREG(info.st_mode):
            return "missing", "not a file"
        if not os.access(full, os.R_OK):
            return "unreadable", "permission denied"
        if mode == "exists":
            return None
        with Image.open(full) as image:
            if mode == "decode":
                image.load()
    except PermissionError as exc:
        return "unreadable", str(exc)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        return "missing", str(exc)
    except Exception as exc:  # any decoder failure (OSError, SyntaxError, ...) means a corrupt file
        return "corrupt", f"{type(exc).__name__}: {exc}"
    return None


def _check_batch(paths: Iterable[str], data_root: Path, mode: str) -> dict[str, tuple[str, str]]:
    checked = ((rel, check_image_file(os.path.join(data_root, rel), mode)) for rel in paths)
    return {rel: problem for rel, problem in checked if problem is not None}


def _structure_problems(index: pl.DataFrame, spec: BenchmarkSpec) -> list[str]:
    """Everything wrong with the table itself (no file access)."""
    schema = dict(index.schema)
    wrong = {c: str(schema.get(c)) for c, t in INDEX_SCHEMA.items() if schema.get(c) != t}
    if wrong:
        return [
            f"columns must be {dict((c, str(t)) for c, t in INDEX_SCHEMA.items())}; got {wrong} for those"
        ]
    problems = []
    sizes = split_sizes(index)
    for split in sorted(set(sizes) | set(spec.split_sizes), key=_split_order):
        found, expected = sizes.get(split, 0), spec.split_sizes.get(split)
        if expected is None:
            problems.append(
                f"split '{split}' has {found} images but the protocol has no such "
                f"split (expected {sorted(spec.split_sizes)})"
            )
        elif found != expected:
            problems.append(
                f"split '{split}' has {found} images, the protocol says {expected} ({found - expected:+d})"
            )
    labels = set(index["label"].unique().to_list())
    expected_labels = set(range(spec.num_classes))
    if labels != expected_labels:
        extra, lacking = sorted(labels - expected_labels), sorted(expected_labels - labels)
        problems.append(
            f"found {len(labels)} classes, the protocol says {spec.num_classes}"
            + (f"; labels missing: {_first(lacking)}" if lacking else "")
            + (f"; unexpected labels: {_first(extra)}" if extra else "")
        )
    else:
        for split, n in index.group_by("split").agg(pl.col("label").n_unique()).iter_rows():
            if n != spec.num_classes:
                problems.append(f"split '{split}' covers {n} of {spec.num_classes} classes")
    names = index.group_by("label").agg(pl.col("classname").n_unique().alias("n"))
    multi = sorted(names.filter(pl.col("n") > 1)["label"].to_list())
    if multi:
        problems.append(f"labels with more than one class name: {_first(multi)}")
    dupes = index.filter(pl.struct("split", "path").is_duplicated())
    if dupes.height:
        example = _first(dupes["path"].unique().to_list())
        logger.warning(
            "[%s] %d index rows repeat a (split, path) pair, e.g. %s", spec.name, dupes.height, example
        )
    return problems


def _structure_fix(spec: BenchmarkSpec, data_root: Path) -> str:
    """Which file(s) the index was read from, and how to replace just those."""
    folder = data_root / spec.folder
    rerun = preparation_command(spec.name)
    if spec.layout in ("coop_split", "fgvc"):
        names = [p for p in spec.root_paths if p != spec.image_dir]  # the split file(s)
        files = ", ".join(str(folder / n) for n in names)
        routes = [r for s in spec.sources if s.filename in names for r in s.routes()]
        where = f" (from {' or '.join(routes)})" if routes else ""
        return (
            f"Fix: the index is read from {files}, which does not list the protocol's images. "
            f"Replace just that file with the official copy{where}: remove it "
            f"(rm {folder / names[0]}) and run {rerun}, which fetches it again when it has a "
            f"download route; the images need not be touched. {spec.manual}"
        )
    image_dir = folder / spec.image_dir
    return (
        f"Fix: the index is read from the class folders under {image_dir} (names from "
        f"{folder / (spec.classnames_file or '')}). Restore missing class folders or remove "
        f"stray ones there (nothing else needs to change), then run {rerun}. {spec.manual}"
    )


def _split_order(split: str) -> tuple[int, str]:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def split_sizes(index: pl.DataFrame) -> dict[str, int]:
    """Images per split, splits in protocol order."""
    counts = dict(index.group_by("split").len().iter_rows())
    return {s: counts[s] for s in sorted(counts, key=_split_order)}


def _first(items: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def _bad_lines(check: FileCheck) -> list[str]:
    lines = []
    for what, paths in (
        ("missing", check.missing),
        ("unreadable, permission denied", check.unreadable),
        ("corrupt", check.corrupt),
    ):
        if paths:
            lines.append(f"  {what} ({len(paths)}): {_first(paths)}")
    if check.corrupt:
        lines.append(f"    e.g. {check.corrupt[0]}: {check.problems[check.corrupt[0]][1]}")
    return lines


def _bad_files_message(
    spec: BenchmarkSpec, data_root: Path, paths: Sequence[str], check: FileCheck, tolerance: int
) -> str:
    bad = len(check.bad)
    lines = [
        f"[{spec.name}] {bad} of {len(paths)} listed image files are "
        f"missing or unreadable (tolerance {tolerance}):"
    ]
    lines += _bad_lines(check)
    lines.append(f"Paths are relative to {data_root}. Fix (touch only the files listed):")
    if check.unreadable:
        lines.append(
            f"  - unreadable: the files are there but your user may not read them (or a folder "
            f"above them); fix the permissions, e.g. chmod -R u+rX {data_root / spec.folder} "
            f"(or ask its owner)"
        )
    if check.missing or check.corrupt:
        lines.append(
            "  - missing or corrupt: put a good copy of each listed file in place (from the "
            "benchmark's archive or your copy); nothing else needs to be deleted or re-extracted"
        )
    lines.append(f"  then run {preparation_command(spec.name)}")
    lines.append(
        f"  - or go on without them (dropped with a warning): {preparation_command(spec.name)} "
        f"--params data_source.tolerance={bad}"
    )
    lines.append(spec.manual)
    return "\n".join(lines)
