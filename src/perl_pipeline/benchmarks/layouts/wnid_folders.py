"""Layout ``wnid_folders``: ImageNet, -Sketch, -A, -R: ``<image_dir>/<split_dir>/<wnid>/*``.

Labels enumerate the first split's sorted wnid folders, named from ``classnames.txt``, so
ImageNet-A/-R get labels 0..199 over their 200 folders of ImageNet's 1000 names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from perl_pipeline.benchmarks.index import image_files, read_classnames, rel_path, subdirs
from perl_pipeline.benchmarks.layouts.base import Found, Key, Layout, MiniatureWriter
from perl_pipeline.benchmarks.spec import BenchmarkError, BenchmarkSpec


def read_wnid_folders(spec: BenchmarkSpec, folder: Path) -> Iterator[Found]:
    """The images of wnid folders: labels from the first split's sorted folders, names from classnames.txt."""
    names = read_classnames(folder / (spec.classnames_file or ""))
    splits = list(spec.split_dirs.items())
    wnids = subdirs(folder / spec.image_dir / splits[0][1])
    unknown = [w for w in wnids if w not in names]
    if unknown:
        raise BenchmarkError(
            f"[{spec.name}] {len(unknown)} folder(s) under {folder / spec.image_dir / splits[0][1]} are not "
            f"WordNet ids listed in {spec.classnames_file}: {unknown[:5]}; remove stray folders or fix "
            f"{spec.classnames_file}."
        )
    label_of = {w: i for i, w in enumerate(wnids)}
    for split, sub in splits:
        split_dir = folder / spec.image_dir / sub
        for wnid in subdirs(split_dir):
            if wnid not in label_of:
                raise BenchmarkError(
                    f"[{spec.name}] {split_dir / wnid} is not one of the "
                    f"{len(label_of)} class folders of split '{splits[0][0]}'"
                )
            for f in image_files(split_dir / wnid):
                yield split, rel_path(sub, wnid, f), label_of[wnid], names[wnid]


def write_wnid_folders(w: MiniatureWriter, classes: list[Key]) -> None:
    """``<image_dir>/<split_dir>/<wnid>/`` folders."""
    w.images(classes, lambda split, pos, key, rel: w.image_dir / w.spec.split_dirs[split] / key / rel)


def problems(spec: BenchmarkSpec) -> list[tuple[str, str]]:
    """``split_dirs`` must name exactly the splits of ``split_sizes``."""
    if set(spec.split_dirs) == set(spec.split_sizes):
        return []
    wanted, got = sorted(spec.split_sizes), sorted(spec.split_dirs)
    return [("split_dirs", f"must name the same splits as split_sizes ({wanted}), got {got}")]


def _readme(w: MiniatureWriter, classes: list[Key]) -> None:
    """ImageNet-A/-R ship a README.txt beside their class folders: not a class, ignored."""
    (w.image_dir / "README.txt").write_text("Not a class folder; ignored.\n")


LAYOUT = Layout(
    name="wnid_folders",
    find=read_wnid_folders,
    write_files=write_wnid_folders,
    root_paths=lambda spec: [
        spec.classnames_file or "",
        *(rel_path(spec.image_dir, d) for d in spec.split_dirs.values()),
    ],
    required=("classnames_file",),
    problems=problems,
    extras={"readme": _readme},
    defaults={"split_dirs": {"test": "."}},  # ImageNet-Sketch, -A, -R: one test split
)
