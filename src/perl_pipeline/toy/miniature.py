"""Tiny copies of the benchmarks in their REAL on-disk layouts (quirks included), for demos and tests.

The layout writers live beside their readers in :mod:`perl_pipeline.benchmarks.layouts`; images
have class-dependent colours (so a model can learn something) or come from the toy world.
"""

from __future__ import annotations

import colorsys
import dataclasses
import io
import json
import logging
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from perl_pipeline.benchmarks.layouts import LAYOUTS, Key, MiniatureWriter
from perl_pipeline.benchmarks.layouts.base import colour_image
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.toy import world as toy_world

logger = logging.getLogger(__name__)

MARKER = ".perl-miniature.json"
DEFAULT_PER_CLASS = {"train": 4, "val": 2, "test": 3}
DEFAULT_MAX_CLASSES = 12
# a replica's image sizes (width, height): tiny (fast to write) or real (ImageNet's typical size)
REPLICA_IMAGES: dict[str, tuple[int, int]] = {"tiny": (16, 16), "real": (500, 375)}
_POOL_HUES = 64  # a replica reuses one encoded image per (hue bucket, variant): a million files
_POOL_VARIANTS = 4  # are written, not a million images encoded


def write_miniature(
    spec: BenchmarkSpec,
    data_root: Path | str,
    *,
    classes: int | None = None,
    per_class: dict[str, int] | None = None,
    split_sizes: dict[str, int] | None = None,
    image_size: int | tuple[int, int] = 32,
    seed: int = 0,
    world: dict | None = None,
    reuse: bool = False,
) -> BenchmarkSpec:
    """Write a tiny, real-layout copy of ``spec``'s benchmark; return ``spec`` with its sizes.

    ``classes`` defaults to ``min(spec.num_classes, 12)``; ``per_class`` (default train 4, val 2,
    test 3) or ``split_sizes`` (spread evenly, earlier classes one more; plain images then encoded
    once per colour and variant and reused) set the images; ``world`` holds a
    :class:`~perl_pipeline.toy.world.Shift`'s fields; ``reuse`` keeps a copy written with the same
    settings. A folder that is not a miniature is never deleted (FileExistsError).
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
    most = most or DEFAULT_MAX_CLASSES  # image_folder: as many classes as its miniature names
    if isinstance(classes, bool) or not isinstance(classes, int) or not 1 <= classes <= most:
        raise ValueError(f"[{spec.name}] classes must be 1..{most}, got {classes!r}")
    if split_sizes is not None and per_class is not None:
        raise ValueError(f"[{spec.name}] give per_class or split_sizes, not both")
    counts = _per_class(spec, per_class) if split_sizes is None else _spread(spec, split_sizes, classes)
    sizes = {s: classes * k if isinstance(k, int) else sum(k) for s, k in counts.items()}
    folder = Path(data_root) / spec.folder
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    settings = {
        "benchmark": spec.name,
        "classes": classes,
        "per_class": counts if split_sizes is None else None,
        "split_sizes": split_sizes and sizes,
        "image_size": image_size if isinstance(image_size, int) else list(size),
        "seed": seed,
        "world": world,
    }
    result = dataclasses.replace(spec, num_classes=classes, split_sizes=sizes)
    if reuse and _written_with(folder, settings):
        logger.info("[%s] reusing the miniature in %s (written with these settings)", spec.name, folder)
        return result
    _clear(folder, spec.name)
    layout = LAYOUTS[spec.layout]
    rng = random.Random(seed)
    writer = _writer(spec, folder, counts, size, rng, world, pooled=split_sizes is not None)
    listed = layout.write(writer, classes)
    if mini.extras:
        layout.extras[mini.extras](writer, listed)
    (folder / MARKER).write_text(json.dumps(settings, indent=2))  # last: marks a complete copy
    logger.info("[%s] wrote a miniature with %d classes (%s) to %s", spec.name, classes, sizes, folder)
    return result


def replica_split_sizes(spec: BenchmarkSpec, fraction: float) -> dict[str, int]:
    """The protocol's split sizes times ``fraction``, rounded, at least one image per class."""
    if isinstance(fraction, bool) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return {s: max(spec.num_classes, round(n * fraction)) for s, n in spec.split_sizes.items()}


def write_replica(
    spec: BenchmarkSpec,
    data_root: Path | str,
    *,
    fraction: float = 1.0,
    image_size: str = "tiny",
    seed: int = 0,
) -> BenchmarkSpec:
    """The miniature writer at the protocol's volume (for the full-scale rehearsal): every class, every
    split at its true size times ``fraction``, images :data:`REPLICA_IMAGES`; reused if present."""
    if image_size not in REPLICA_IMAGES:
        raise ValueError(f"image_size must be one of {sorted(REPLICA_IMAGES)}, got {image_size!r}")
    return write_miniature(
        spec,
        data_root,
        classes=spec.num_classes,
        split_sizes=replica_split_sizes(spec, fraction),
        image_size=REPLICA_IMAGES[image_size],
        seed=seed,
        reuse=True,
    )


def _spread(spec: BenchmarkSpec, split_sizes: dict[str, int], classes: int) -> dict[str, list[int]]:
    """Each split's size over the classes: as even as it goes, earlier classes one more."""
    unknown = sorted(set(split_sizes) ^ set(spec.split_sizes))
    if unknown:
        raise ValueError(f"[{spec.name}] split_sizes must name the splits {sorted(spec.split_sizes)}")
    small = {
        s: n for s, n in split_sizes.items() if isinstance(n, bool) or not isinstance(n, int) or n < classes
    }
    if small:
        raise ValueError(f"[{spec.name}] split_sizes must be integers >= {classes} (one per class): {small}")
    return {
        s: [split_sizes[s] // classes + (p < split_sizes[s] % classes) for p in range(classes)]
        for s in spec.split_sizes
    }


def _written_with(folder: Path, settings: dict) -> bool:
    """Whether ``folder`` holds a complete miniature written with ``settings``."""
    try:
        return json.loads((folder / MARKER).read_text()) == settings
    except (OSError, ValueError):
        return False


def _per_class(spec: BenchmarkSpec, per_class: dict[str, int] | None) -> dict[str, int]:
    given = dict(per_class or {})
    unknown = sorted(set(given) - set(DEFAULT_PER_CLASS))
    if unknown:
        raise ValueError(
            f"[{spec.name}] per_class names unknown splits {unknown}; use {sorted(DEFAULT_PER_CLASS)}"
        )
    # splits the benchmark lacks are skipped; image_folder has no sizes yet: every split counts
    counts = {s: given.get(s, DEFAULT_PER_CLASS[s]) for s in spec.split_sizes or DEFAULT_PER_CLASS}
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in counts.values()):
        raise ValueError(f"[{spec.name}] per_class counts must be positive integers: {counts}")
    return counts


def _clear(folder: Path, name: str) -> None:
    """Remove a previous miniature; refuse to touch anything else."""
    if (folder / MARKER).is_file():
        shutil.rmtree(folder)
    elif folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"[{name}] {folder} exists and is not a miniature written by write_miniature; "
            "refusing to overwrite it"
        )


def _writer(
    spec: BenchmarkSpec,
    folder: Path,
    counts: dict[str, int] | dict[str, list[int]],
    size: tuple[int, int],
    rng: random.Random,
    world: dict | None,
    *,
    pooled: bool = False,
) -> MiniatureWriter:
    """The layout writers' state, with the classes and images of the plain or the toy world."""
    mini = spec.miniature
    draw: Callable[[float, str, int], Image.Image | bytes]
    if world is None:

        def choose(count: int) -> list[Key]:
            return [mini.entry(i) for i in range(count)]

        def draw(hue: float, name: str, i: int) -> Image.Image:
            r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.55 + 0.4 * rng.random())
            colour = (int(r * 255), int(g * 255), int(b * 255))
            width, height = size
            if width == height:
                return colour_image(colour, i, width)
            # a colour with noise that encodes like a photo (500 x 375: ~100 KB)
            noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 24, (height, width, 3))
            return Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8))

        if pooled:
            draw = _pooled(draw)

    else:
        shift = toy_world.Shift(**world)

        def choose(count: int) -> list[Key]:
            """A grid of toy-world concepts whose keys on disk follow the benchmark's naming."""
            names = toy_world.concept_grid(count, random.Random(f"{spec.name}:{rng.random()}"))
            return [(mini.toy_entry_key(i, name), name) for i, name in enumerate(names)]

        def draw(hue: float, name: str, i: int) -> Image.Image:
            scenes = toy_world.sample_scenes([name], 1, shift, seed=rng.randrange(2**31))
            return Image.fromarray(toy_world.render(scenes.row(0, named=True), size[0], shift))

    return MiniatureWriter(spec, folder, counts, rng, choose=choose, draw=draw)


def _pooled(draw: Callable[[float, str, int], Image.Image]) -> Callable[[float, str, int], bytes]:
    """``draw`` encoded once per (hue bucket, variant) and its JPEG bytes reused."""
    pool: dict[tuple[int, int], bytes] = {}

    def pooled(hue: float, name: str, i: int) -> bytes:
        key = (round(hue * _POOL_HUES) % _POOL_HUES, i % _POOL_VARIANTS)
        if key not in pool:
            buffer = io.BytesIO()
            draw(key[0] / _POOL_HUES, name, i).save(buffer, format="JPEG", quality=90)
            pool[key] = buffer.getvalue()
        return pool[key]

    return pooled
