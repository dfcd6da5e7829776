"""The index table of a prepared benchmark, and the small helpers every layout reader shares.

An index has one row per image (:data:`INDEX_SCHEMA`): its split, its path relative to
``data_root`` (POSIX), its label and its class name.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import polars as pl

INDEX_SCHEMA: dict[str, pl.DataType] = {
    "split": pl.String(),
    "path": pl.String(),
    "label": pl.Int64(),
    "classname": pl.String(),
}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def label_classnames(index: pl.DataFrame, *, where: str = "index") -> list[str]:
    """Class names in label order; ValueError unless labels are exactly 0..n-1, each with one name."""
    pairs = index.select("label", "classname").unique().sort("label", "classname")
    dupes = pairs.filter(pl.col("label").is_duplicated())
    if dupes.height:
        shown = dupes.group_by("label", maintain_order=True).agg("classname").head(5).rows()
        raise ValueError(f"{where}: labels with more than one class name: {shown}")
    labels = pairs["label"].to_list()
    if labels != list(range(len(labels))):
        gaps = sorted(set(range(max(labels, default=-1) + 1)) - set(labels))
        raise ValueError(f"{where}: labels must be 0..n-1 without gaps; missing {gaps[:10]}")
    return pairs["classname"].to_list()


def read_classnames(path: Path) -> dict[str, str]:
    """Read CoOp's ``classnames.txt`` (``<wnid> <name...>`` per line) in file order."""
    names: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            wnid, _, name = line.strip().partition(" ")
            if not name.strip():
                raise ValueError(f"{path}:{n}: expected '<wnid> <class name>', got {line!r}")
            names[wnid] = name.strip()
    return names


def rel_path(*parts: str) -> str:
    """Join path parts as a normalised POSIX path (index paths are POSIX on every system)."""
    return posixpath.normpath(posixpath.join(*parts))


def _visible(path: Path) -> list[os.DirEntry[str]]:
    """The entries directly under ``path`` whose names do not start with a dot, sorted by name."""
    with os.scandir(path) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def subdirs(path: Path) -> list[str]:
    """Names of the visible folders directly under ``path``, sorted."""
    return [e.name for e in _visible(path) if e.is_dir()]


def image_files(path: Path) -> list[str]:
    """Names of the visible image files (:data:`IMAGE_SUFFIXES`) directly under ``path``, sorted."""
    return [
        e.name
        for e in _visible(path)
        if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
    ]
