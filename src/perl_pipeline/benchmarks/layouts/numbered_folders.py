"""Layout ``numbered_folders``: ImageNet-V2, ``<image_dir>/<i>/*`` -> label ``i``, named by line ``i``
of ``classnames.txt``. Folders are matched as integers, never sorted as strings; the only split is test.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from perl_pipeline.benchmarks.index import image_files, index_frame, read_classnames, rel_path, subdirs
from perl_pipeline.benchmarks.layouts.base import Key, Layout, MiniatureWriter, write_classnames
from perl_pipeline.benchmarks.spec import BenchmarkError

if TYPE_CHECKING:
    from perl_pipeline.benchmarks.spec import BenchmarkSpec


def read_numbered_folders(spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
    """Index numbered folders: folder i holds label i, named by line i of classnames.txt."""
    folder = Path(data_root) / spec.folder
    names = list(read_classnames(folder / (spec.classnames_file or "")).values())
    image_dir = folder / spec.image_dir
    cols: dict[str, list[Any]] = {"split": [], "path": [], "label": [], "classname": []}
    subs = subdirs(image_dir)
    bad = [s for s in subs if not s.isdigit() or int(s) >= len(names)]
    if bad:
        raise BenchmarkError(
            f"[{spec.name}] folder(s) {bad[:5]} under {image_dir} are not class numbers "
            f"0..{len(names) - 1} ({spec.classnames_file} has {len(names)} lines)"
        )
    for sub in sorted(subs, key=int):
        files = image_files(image_dir / sub)
        label = int(sub)
        cols["split"] += ["test"] * len(files)
        cols["path"] += [rel_path(spec.folder, spec.image_dir, sub, f) for f in files]
        cols["label"] += [label] * len(files)
        cols["classname"] += [spec.classname(names[label])] * len(files)
    return index_frame(**cols)


def write_numbered_folders(w: MiniatureWriter, count: int) -> list[Key]:
    """``<image_dir>/<i>/`` folders; ``classnames.txt`` line i names folder i."""
    classes = w.classes(count)
    write_classnames(w, classes)
    w.images(classes, lambda split, pos, key, rel: w.image_dir / str(pos) / rel)
    return classes


def root_paths(spec: BenchmarkSpec) -> list[str]:
    """``classnames.txt`` and the image folder."""
    return [spec.classnames_file or "", posixpath.normpath(spec.image_dir)]


def problems(spec: BenchmarkSpec) -> list[tuple[str, str]]:
    """ImageNet-V2 is a test set: ``split_sizes`` holds only ``test``."""
    if set(spec.split_sizes) != {"test"}:
        return [("split_sizes", "must hold only 'test' for layout 'numbered_folders'")]
    return []


LAYOUT = Layout(
    name="numbered_folders",
    read=read_numbered_folders,
    write=write_numbered_folders,
    root_paths=root_paths,
    required=("classnames_file",),
    problems=problems,
)
