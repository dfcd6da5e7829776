"""Tiny copies of the benchmarks in their REAL on-disk layouts, for demos and tests.

:func:`write_miniature` writes a few small images per class (class-dependent colours, so a model
can actually learn something) with the real folder structure, file naming and split/meta file
formats, including each dataset's quirks:

* Caltech101: capitalised ``Faces``/``Leopards``/``Motorbikes`` first in label order, renamed
  (``Faces`` -> ``face``), and ``BACKGROUND_Google``/``Faces_easy`` folders on disk but not in
  the split file;
* StanfordCars: paths relative to the dataset folder (``cars_train/00001.jpg``), year-first names;
* SUN397: ``a/apartment_building/outdoor`` folders -> ``outdoor apartment_building``;
* EuroSAT: ``AnnualCrop`` folders -> ``Annual Crop Land``; UCF101: ``Apply_Eye_Makeup`` folders
  with ``v_ApplyEyeMakeup_gXX_cYY.jpg`` frames;
* FGVC: ``variants.txt`` order with names holding spaces and slashes (``F/A-18``);
* ImageNet: wnid folders + ``classnames.txt``; V2: numbered folders (more than 10, so string
  sorting would be wrong); A/R: a subset of the wnids of a larger ``classnames.txt``.

The class names, file names and extra files of each benchmark are data in its ``miniature`` block
(``conf/base/parameters_benchmarks.yml``); the per-layout writers live beside their readers in
:mod:`perl_pipeline.benchmarks.layouts`. This module chooses the classes, draws the images and
runs the layout's writer.

The returned spec has ``num_classes``/``split_sizes`` set to the miniature's, so
:func:`~perl_pipeline.benchmarks.validate.validate_index` passes on it.

With ``world`` set, the images come from the toy world (:mod:`perl_pipeline.toy.world`) under
that shift and the classes are toy-world concepts ("red triangle"), chosen per benchmark; the
layout, the file naming and the split/meta files stay the benchmark's own.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import logging
import random
import shutil
from pathlib import Path

from PIL import Image

from perl_pipeline.benchmarks.layouts import LAYOUTS, Key, MiniatureWriter
from perl_pipeline.benchmarks.layouts.base import colour_image
from perl_pipeline.benchmarks.spec import BenchmarkSpec, Miniature
from perl_pipeline.toy import world as toy_world

logger = logging.getLogger(__name__)

MARKER = ".perl-miniature.json"
DEFAULT_PER_CLASS = {"train": 4, "val": 2, "test": 3}
DEFAULT_MAX_CLASSES = 12


def write_miniature(
    spec: BenchmarkSpec,
    data_root: Path | str,
    *,
    classes: int | None = None,
    per_class: dict[str, int] | None = None,
    image_size: int = 32,
    seed: int = 0,
    world: dict | None = None,
) -> BenchmarkSpec:
    """Write a tiny, real-layout copy of ``spec``'s benchmark under ``data_root / spec.folder``.

    Args:
        spec: The benchmark (its folder, image_dir, split file and layout are used as is).
        data_root: Where benchmark folders live.
        classes: Number of classes (default: ``min(spec.num_classes, 12)``); real class names
            first, then synthetic ones in the same style.
        per_class: Images per class and split (default train 4, val 2, test 3, restricted to
            the spec's splits).
        image_size: Side of the square images, in pixels.
        seed: Makes colours, tokens and line order reproducible.
        world: a :class:`~perl_pipeline.toy.world.Shift`'s fields: draw toy-world images
            and concepts instead of plain colours and the real class names.

    Returns:
        ``spec`` with ``num_classes`` and ``split_sizes`` of the miniature.

    Raises:
        ValueError: bad ``classes``/``per_class``, or a spec without a ``miniature`` block.
        FileExistsError: the folder holds something that is not a miniature (never deleted).
    """
    if spec.miniature is None:
        raise ValueError(
            f"benchmark '{spec.name}' has no 'miniature' block: add one to its block in "
            f"conf/base/parameters_benchmarks.yml (see the other benchmarks' blocks)"
        )
    mini = spec.miniature
    classes = min(spec.num_classes, DEFAULT_MAX_CLASSES) if classes is None else classes
    # toy-world classes are concepts, not the dataset's: their number is the world's to limit
    most = spec.num_classes if world is None else len(toy_world.concepts()) // mini.subset_stride
    if isinstance(classes, bool) or not isinstance(classes, int) or not 1 <= classes <= most:
        raise ValueError(f"[{spec.name}] classes must be 1..{most}, got {classes!r}")
    counts = _per_class(spec, per_class)
    folder = Path(data_root) / spec.folder
    _clear(folder, spec.name)
    layout = LAYOUTS[spec.layout]
    writer = _writer(spec, mini, folder, counts, image_size, random.Random(seed), world)
    listed = layout.write(writer, classes)
    if mini.extras:
        layout.extras[mini.extras](writer, listed)
    (folder / MARKER).write_text(
        json.dumps(
            {
                "benchmark": spec.name,
                "classes": classes,
                "per_class": counts,
                "image_size": image_size,
                "seed": seed,
                "world": world,
            },
            indent=2,
        )
    )
    logger.info(
        "[%s] wrote a miniature with %d classes (%s per class) to %s",
        spec.name,
        classes,
        counts,
        folder,
    )
    return dataclasses.replace(
        spec, num_classes=classes, split_sizes={s: classes * k for s, k in counts.items()}
    )


def _per_class(spec: BenchmarkSpec, per_class: dict[str, int] | None) -> dict[str, int]:
    given = dict(per_class or {})
    unknown = sorted(set(given) - set(DEFAULT_PER_CLASS))
    if unknown:
        raise ValueError(
            f"[{spec.name}] per_class names unknown splits {unknown}; use {sorted(DEFAULT_PER_CLASS)}"
        )
    # splits the benchmark lacks (val for ImageNet, train for the variants) are skipped, so one
    # setting serves every benchmark
    counts = {s: given.get(s, DEFAULT_PER_CLASS[s]) for s in spec.split_sizes}
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in counts.values()):
        raise ValueError(f"[{spec.name}] per_class counts must be positive integers: {counts}")
    return counts


def _clear(folder: Path, name: str) -> None:
    """Remove a previous miniature; refuse to touch anything else."""
    if (folder / MARKER).is_file():
        shutil.rmtree(folder)
    elif folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"[{name}] {folder} exists and is not a miniature written by "
            f"write_miniature; refusing to overwrite it"
        )


def _writer(
    spec: BenchmarkSpec,
    mini: Miniature,
    folder: Path,
    counts: dict[str, int],
    image_size: int,
    rng: random.Random,
    world: dict | None,
) -> MiniatureWriter:
    """The layout writers' state, with the classes and images of the plain or the toy world."""
    if world is None:

        def choose(count: int) -> list[Key]:
            return [mini.entry(i) for i in range(count)]

        def draw(hue: float, name: str, i: int) -> Image.Image:
            r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.55 + 0.4 * rng.random())
            return colour_image((int(r * 255), int(g * 255), int(b * 255)), i, image_size)

    else:
        shift = toy_world.Shift(**world)

        def choose(count: int) -> list[Key]:
            """A grid of toy-world concepts whose keys on disk follow the benchmark's naming."""
            names = toy_world.concept_grid(count, random.Random(f"{spec.name}:{rng.random()}"))
            return [(mini.toy_entry_key(i, name), name) for i, name in enumerate(names)]

        def draw(hue: float, name: str, i: int) -> Image.Image:
            scenes = toy_world.sample_scenes([name], 1, shift, seed=rng.randrange(2**31))
            return Image.fromarray(toy_world.render(scenes.row(0, named=True), image_size, shift))

    return MiniatureWriter(spec, folder, counts, rng, choose=choose, draw=draw)
