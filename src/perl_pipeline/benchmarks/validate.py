"""Check an index table against its spec and the files on disk (no Kedro).

Structure (splits, split sizes, class count, one name per label) must match the protocol
exactly; every listed file must exist and decode (``PIL.Image.verify``). Up to ``tolerance`` bad
files are dropped with a warning; more stop the run with :class:`DatasetValidationError`.
"""

from __future__ import annotations

import logging
import os
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

_BATCH = 256


class DatasetValidationError(BenchmarkError):
    """The index does not match the protocol, or too many listed files are missing/corrupt."""


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of :func:`validate_index`.

    Attributes:
        benchmark: The benchmark's name.
        index: The index with the tolerated bad files removed (the input itself if none).
        num_files: Distinct files checked.
        missing: Paths (relative to ``data_root``) that do not exist.
        corrupt: Paths that exist but do not decode (empty when decoding was not checked).
        split_sizes: Rows per split in the returned index.
        num_classes: Distinct labels in the returned index.
        decode_checked: Whether images were decoded.
    """

    benchmark: str
    index: pl.DataFrame = field(repr=False)
    num_files: int
    missing: tuple[str, ...]
    corrupt: tuple[str, ...]
    split_sizes: dict[str, int]
    num_classes: int
    decode_checked: bool

    @property
    def dropped(self) -> tuple[str, ...]:
        """Every bad file that was removed from the index."""
        return self.missing + self.corrupt

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for metrics / reporting datasets)."""
        return {
            "benchmark": self.benchmark,
            "num_files": self.num_files,
            "missing": list(self.missing),
            "corrupt": list(self.corrupt),
            "split_sizes": self.split_sizes,
            "num_classes": self.num_classes,
            "decode_checked": self.decode_checked,
        }


def validate_index(
    index: pl.DataFrame,
    spec: BenchmarkSpec,
    data_root: Path | str,
    *,
    tolerance: int = 0,
    check_decode: bool = True,
    workers: int | None = None,
) -> ValidationReport:
    """Validate ``index`` (from :func:`~perl_pipeline.benchmarks.prepare.build_index`) for ``spec``.

    Args:
        index: The index table.
        spec: The benchmark it claims to be.
        data_root: Folder the index paths are relative to.
        tolerance: How many missing/corrupt files may be dropped (with a warning).
        check_decode: Decode every image (``PIL.Image.verify``); False only checks existence.
        workers: Threads for the file checks (default: ``min(32, cpu_count + 4)``).

    Raises:
        DatasetValidationError: wrong columns, splits, split sizes or class count, or more than
            ``tolerance`` bad files. The message names the benchmark, the problem (the first 5
            bad files and their count) and the fix.
    """
    problems = _structure_problems(index, spec)
    if problems:
        raise DatasetValidationError(
            f"[{spec.name}] the index does not match the protocol:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nFix: re-download the split/meta files and re-extract the images (delete "
            f"{Path(data_root) / spec.folder} and run fetch_benchmark again), or correct the "
            f"spec if the protocol numbers are wrong. {spec.manual}"
        )
    paths = index["path"].unique(maintain_order=True).to_list()
    missing, corrupt = _check_files(
        paths,
        Path(data_root),
        check_decode=check_decode,
        workers=workers,
        desc=f"validate {spec.name}",
    )
    bad = missing + corrupt
    if len(bad) > tolerance:
        raise DatasetValidationError(_bad_files_message(spec, data_root, paths, missing, corrupt, tolerance))
    if bad:
        logger.warning(
            "[%s] dropping %d bad file(s) from the index (tolerance %d): %s",
            spec.name,
            len(bad),
            tolerance,
            _first(bad),
        )
        index = index.filter(~pl.col("path").is_in(bad))
    report = ValidationReport(
        benchmark=spec.name,
        index=index,
        num_files=len(paths),
        missing=tuple(missing),
        corrupt=tuple(corrupt),
        split_sizes=_split_sizes(index),
        num_classes=index["label"].n_unique(),
        decode_checked=check_decode,
    )
    logger.info(
        "[%s] index valid: %d files, %d classes, splits %s",
        spec.name,
        len(paths),
        report.num_classes,
        report.split_sizes,
    )
    return report


def _structure_problems(index: pl.DataFrame, spec: BenchmarkSpec) -> list[str]:
    """Everything wrong with the table itself (no file access)."""
    schema = dict(index.schema)
    wrong = {c: str(schema.get(c)) for c, t in INDEX_SCHEMA.items() if schema.get(c) != t}
    if wrong:
        return [
            f"columns must be {dict((c, str(t)) for c, t in INDEX_SCHEMA.items())}; got {wrong} for those"
        ]
    problems = []
    sizes = _split_sizes(index)
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
        logger.warning(
            "[%s] %d index rows repeat a (split, path) pair, e.g. %s",
            spec.name,
            dupes.height,
            _first(dupes["path"].unique().to_list()),
        )
    return problems


def _split_order(split: str) -> tuple[int, str]:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def _split_sizes(index: pl.DataFrame) -> dict[str, int]:
    counts = dict(index.group_by("split").len().iter_rows())
    return {s: counts[s] for s in sorted(counts, key=_split_order)}


def _check_files(
    paths: Sequence[str], data_root: Path, *, check_decode: bool, workers: int | None, desc: str
) -> tuple[list[str], list[str]]:
    """(missing, corrupt) among ``paths``, in input order, checked on a thread pool."""
    batches = [paths[i : i + _BATCH] for i in range(0, len(paths), _BATCH)]
    results: dict[str, str] = {}
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar,
    ):
        for batch, done in zip(
            batches,
            pool.map(lambda b: _check_batch(b, data_root, check_decode), batches),
            strict=True,
        ):
            results.update(done)
            bar.update(len(batch))
    missing = [p for p in paths if results.get(p) == "missing"]
    corrupt = [p for p in paths if results.get(p) == "corrupt"]
    return missing, corrupt


def _check_batch(paths: Iterable[str], data_root: Path, check_decode: bool) -> dict[str, str]:
    bad = {}
    for rel in paths:
        full = os.path.join(data_root, rel)
        if not os.path.isfile(full):
            bad[rel] = "missing"
        elif check_decode:
            try:
                with Image.open(full) as im:
                    im.verify()
            except Exception:  # any decoder failure means a corrupt file
                bad[rel] = "corrupt"
    return bad


def _first(items: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def _bad_files_message(
    spec: BenchmarkSpec,
    data_root: Path | str,
    paths: Sequence[str],
    missing: Sequence[str],
    corrupt: Sequence[str],
    tolerance: int,
) -> str:
    lines = [
        f"[{spec.name}] {len(missing) + len(corrupt)} of {len(paths)} listed image files are "
        f"missing or unreadable (tolerance {tolerance}):"
    ]
    if missing:
        lines.append(f"  missing ({len(missing)}): {_first(missing)}")
    if corrupt:
        lines.append(f"  corrupt ({len(corrupt)}): {_first(corrupt)}")
    lines.append(
        f"Paths are relative to {data_root}. Fix: re-extract the archives (delete the affected "
        f"folders under {Path(data_root) / spec.folder} and run fetch_benchmark again) or "
        f"replace the files from another copy; to go on without a few of them, raise the "
        f"validation tolerance. {spec.manual}"
    )
    return "\n".join(lines)
