"""Layout ``numbered_folders``: ImageNet-V2, ``<image_dir>/<i>/*`` -> label ``i``, named by line ``i``
of ``classnames.txt``. Folders are matched as integers, never sorted as strings; the only split is test.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path

from perl_pipeline.benchmarks.index import image_files, read_classnames, subdirs
from perl_pipeline.benchmarks.layouts.base import Found, Key, Layout, MiniatureWriter
from perl_pipeline.benchmarks.spec import BenchmarkError, BenchmarkSpec


def read_numbered_folders(spec: BenchmarkSpec, folder: Path) -> Iterator[Found]:
    """The images of numbered folders: folder i holds label i, named by line i of classnames.txt."""
    names = list(read_classnames(folder / (spec.classnames_file or "")).values())
    image_dir = folder / spec.image_dir
    subs = subdirs(image_dir)
    bad = [s for s in subs if not s.isdigit() or int(s) >= len(names)]
    if bad:
        raise BenchmarkError(
            f"[{spec.name}] folder(s) {bad[:5]} under {image_dir} are not class numbers "
            f"0..{len(names) - 1} ({spec.classnames_file} has {len(names)} lines)"
        )
    for sub in sorted(subs, key=int):
        for f in image_files(image_dir / sub):
            yield "test", f"{sub}/{f}", int(sub), names[int(sub)]


def write_numbered_folders(w: MiniatureWriter, classes: list[Key]) -> None:
    """``<image_dir>/<i>/`` folders (``classnames.txt`` line i names folder i)."""
    w.images(classes, lambda split, pos, key, rel: w.image_dir / str(pos) / rel)


def problems(spec: BenchmarkSpec) -> list[tuple[str, str]]:
    """ImageNet-V2 is a test set: ``split_sizes`` holds only ``test``."""
    if set(spec.split_sizes) != {"test"}:
        return [("split_sizes", "must hold only 'test' for layout 'numbered_folders'")]
    return []


LAYOUT = Layout(
    name="numbered_folders",
    find=read_numbered_folders,
    write_files=write_numbered_folders,
    root_paths=lambda spec: [spec.classnames_file or "", posixpath.normpath(spec.image_dir)],
    required=("classnames_file",),
    problems=problems,
)
