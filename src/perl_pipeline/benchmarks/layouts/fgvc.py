"""Layout ``fgvc``: FGVC-Aircraft's ``data/`` folder: ``variants.txt`` (class names in label order),
``images_variant_<split>.txt`` (``<image id> <variant>`` lines) and ``<image_dir>/<id>.jpg``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from perl_pipeline.benchmarks.layouts.base import Found, Key, Layout, MiniatureWriter
from perl_pipeline.benchmarks.spec import BenchmarkError, BenchmarkSpec

VARIANTS_FILE = "variants.txt"
SPLIT_FILE = "images_variant_{split}.txt"


def read_fgvc(spec: BenchmarkSpec, folder: Path) -> Iterator[Found]:
    """The images of FGVC-Aircraft: labels in ``variants.txt`` order, one split list per split."""
    variants = [v.strip() for v in (folder / VARIANTS_FILE).read_text().splitlines() if v.strip()]
    label_of = {v: i for i, v in enumerate(variants)}
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
            yield split, f"{image_id}.jpg", label_of[variant], variant


def write_fgvc(w: MiniatureWriter, classes: list[Key]) -> None:
    """``<image_dir>/<id>.jpg``, ``variants.txt`` and ``images_variant_<split>.txt`` (shuffled)."""
    rows = w.images(classes)
    (w.folder / VARIANTS_FILE).write_text("".join(f"{name}\n" for _, name in classes))
    for split in w.counts:
        lines = [f"{Path(rel).stem} {name}\n" for s, _, name, rel in rows if s == split]
        w.rng.shuffle(lines)
        (w.folder / SPLIT_FILE.format(split=split)).write_text("".join(lines))


LAYOUT = Layout(
    name="fgvc",
    find=read_fgvc,
    write_files=write_fgvc,
    root_paths=lambda spec: [
        spec.image_dir,
        VARIANTS_FILE,
        *(SPLIT_FILE.format(split=s) for s in spec.split_sizes),
    ],
)
