"""Layout ``fgvc``: FGVC-Aircraft's ``data/`` folder: ``variants.txt`` (class names in label order),
``images_variant_<split>.txt`` (``<image id> <variant>`` lines) and ``<image_dir>/<id>.jpg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from perl_pipeline.benchmarks.index import index_frame, rel_path
from perl_pipeline.benchmarks.layouts.base import Key, Layout, MiniatureWriter
from perl_pipeline.benchmarks.spec import BenchmarkError

if TYPE_CHECKING:
    from perl_pipeline.benchmarks.spec import BenchmarkSpec

VARIANTS_FILE = "variants.txt"
SPLIT_FILE = "images_variant_{split}.txt"


def read_fgvc(spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
    """Index FGVC-Aircraft: labels in ``variants.txt`` order, one split list per split."""
    folder = Path(data_root) / spec.folder
    variants = [v.strip() for v in (folder / VARIANTS_FILE).read_text().splitlines() if v.strip()]
    label_of = {v: i for i, v in enumerate(variants)}
    cols: dict[str, list[Any]] = {"split": [], "path": [], "label": [], "classname": []}
    for split in spec.split_sizes:
        list_path = folder / SPLIT_FILE.format(split=split)
        for n, line in enumerate(list_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            image_id, _, variant = line.strip().partition(" ")
            if variant not in label_of:
                raise BenchmarkError(
                    f"[{spec.name}] {list_path}:{n}: variant {variant!r} is not listed in {VARIANTS_FILE}"
                )
            cols["split"].append(split)
            cols["path"].append(rel_path(spec.folder, spec.image_dir, f"{image_id}.jpg"))
            cols["label"].append(label_of[variant])
            cols["classname"].append(spec.classname(variant))
    return index_frame(**cols)


def write_fgvc(w: MiniatureWriter, count: int) -> list[Key]:
    """``<image_dir>/<id>.jpg``, ``variants.txt`` and ``images_variant_<split>.txt`` (shuffled)."""
    classes = w.classes(count)
    rows = w.images(classes, lambda split, pos, key, rel: w.image_dir / rel)
    (w.folder / VARIANTS_FILE).write_text("".join(f"{name}\n" for _, name in classes))
    for split in w.counts:
        lines = [f"{Path(rel).stem} {name}\n" for s, _, name, rel in rows if s == split]
        w.rng.shuffle(lines)
        (w.folder / SPLIT_FILE.format(split=split)).write_text("".join(lines))
    return classes


def root_paths(spec: BenchmarkSpec) -> list[str]:
    """The image folder, ``variants.txt`` and one split list per split."""
    return [spec.image_dir, VARIANTS_FILE, *(SPLIT_FILE.format(split=s) for s in spec.split_sizes)]


LAYOUT = Layout(name="fgvc", read=read_fgvc, write=write_fgvc, root_paths=root_paths)
