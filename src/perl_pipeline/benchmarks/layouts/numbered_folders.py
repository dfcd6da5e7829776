"""Layout ``numbered_folders``: ImageNet-V2, ``<image_dir>/<i>/*`` -> label ``i``, named by line ``i``
of ``classnames.txt``. Folders are matched as integers, never sorted as strings; the only split is test.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import polars as pl

from perl_pipeline.benchmarks.index import INDEX_SCHEMA, image_files, read_classnames, rel_path, subdirs
from perl_pipeline.benchmarks.layouts.base import Key, Layout, MiniatureWriter, write_classnames
from perl_pipeline.benchmarks.spec import BenchmarkError, BenchmarkSpec


def read_numbered_folders(spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
    """Index numbered folders: folder i holds label i, named by line i of classnames.txt."""
    folder = Path(data_root) / spec.folder
    names = list(read_classnames(folder / (spec.classnames_file or "")).values())
    image_dir = folder / spec.image_dir
    rows = []
    subs = subdirs(image_dir)
    bad = [s for s in subs if not s.isdigit() or int(s) >= len(names)]
    if bad:
        raise BenchmarkError(
            f"[{spec.name}] folder(s) {bad[:5]} under {image_dir} are not class numbers "
            f"0..{len(names) - 1} ({spec.classnames_file} has {len(names)} lines)"
        )
    for sub in sorted(subs, key=int):
        name = spec.classname(names[int(sub)])
        for f in image_files(image_dir / sub):
            rows.append(("test", rel_path(spec.folder, spec.image_dir, sub, f), int(sub), name))
    return pl.DataFrame(rows, schema=INDEX_SCHEMA, orient="row")


def write_numbered_folders(w: MiniatureWriter, count: int) -> list[Key]:
    """``<image_dir>/<i>/`` folders; ``classnames.txt`` line i names folder i."""
    classes = w.choose(count)
    write_classnames(w, classes)
    w.images(classes, lambda split, pos, key, rel: w.image_dir / str(pos) / rel)
    return classes


def problems(spec: BenchmarkSpec) -> list[tuple[str, str]]:
    """ImageNet-V2 is a test set: ``split_sizes`` holds only ``test``."""
    if set(spec.split_sizes) != {"test"}:
        return [("split_sizes", "must hold only 'test' for layout 'numbered_folders'")]
    return []


LAYOUT = Layout(
    name="numbered_folders",
    read=read_numbered_folders,
    write=write_numbered_folders,
    root_paths=lambda spec: [spec.classnames_file or "", posixpath.normpath(spec.image_dir)],
    required=("classnames_file",),
    problems=problems,
)
