"""What every layout module provides (:class:`Layout`: reader and miniature writer side by side),
and the shared state of a miniature being written (:class:`MiniatureWriter`, which holds the class
chooser and image drawer :mod:`perl_pipeline.toy.miniature` hands the writers).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw

from perl_pipeline.benchmarks.index import INDEX_SCHEMA, rel_path
from perl_pipeline.benchmarks.spec import BenchmarkSpec, Miniature

Key = tuple[str, str]
"""A class as a miniature writes it: (its key on disk, its class name in the index)."""

Found = tuple[str, str, int, str]
"""An image a reader found: (split, path under ``image_dir``, label, class name as on disk)."""

Row = tuple[str, int, str, str]
"""An image a miniature writer wrote: (split, class position, class name, relative path)."""

Place = Callable[[str, int, str, str], Path]
"""Where an image goes: ``place(split, class position, key, relative path)``."""


def file_fields(key: str, name: str, i: int, n: int, token: str, split: str) -> dict[str, object]:
    """The fields a miniature's file-name templates may use: ``camel`` is the key without ``_``,
    ``i`` the 1-based image number in its class, ``n`` the global one."""
    return {
        "key": key,
        "camel": key.replace("_", ""),
        "name": name,
        "i": i,
        "n": n,
        "uid": 1_000_000 + n,
        "token": token,
        "trainval": "test" if split == "test" else "train",
        "group": 1 + (i - 1) // 4,
        "clip": 1 + (i - 1) % 4,
    }


FILE_FIELDS = file_fields("n01440764", "tench", 1, 1, "abcdefghijklmnop", "train")
"""Sample values of :func:`file_fields` (for validation)."""


class MiniatureWriter:
    """Shared state of one miniature. ``counts``: images per class per split, one number or one per
    class; ``choose(count)``: the first classes as :data:`Key` pairs; ``draw(hue, name, i)``: an image
    or its encoded bytes."""

    def __init__(
        self,
        spec: BenchmarkSpec,
        folder: Path,
        counts: Mapping[str, int | Sequence[int]],
        rng: random.Random,
        *,
        choose: Callable[[int], list[Key]],
        draw: Callable[[float, str, int], Image.Image | bytes],
    ) -> None:
        if spec.miniature is None:
            raise ValueError(f"benchmark '{spec.name}' has no 'miniature' block to write from")
        self.spec, self.folder, self.counts, self.rng = spec, folder, counts, rng
        self.miniature: Miniature = spec.miniature
        self.choose, self.draw = choose, draw
        self.n = 0

    @property
    def image_dir(self) -> Path:
        """The benchmark's ``image_dir`` under the miniature's folder."""
        return self.folder / self.spec.image_dir

    def images(self, classes: list[Key], place: Place | None = None) -> list[Row]:
        """Write every image (class-major, splits in spec order) at ``place(split, position, key, rel)``
        (default: ``rel`` under ``image_dir``); return one :data:`Row` per image."""
        rows = []
        made: set[Path] = set()
        for position, (key, name) in enumerate(classes):
            hue = position / len(classes)
            i = 0
            for split, k in self.counts.items():
                template = self.miniature.files_per_split.get(split, self.miniature.files)
                for _ in range(k if isinstance(k, int) else k[position]):
                    i += 1
                    self.n += 1
                    rel = template.format(**file_fields(key, name, i, self.n, self.token(), split))
                    path = place(split, position, key, rel) if place else self.image_dir / rel
                    if path.parent not in made:  # one mkdir per folder, not per image
                        path.parent.mkdir(parents=True, exist_ok=True)
                        made.add(path.parent)
                    save_image(self.draw(hue, name, i), path)
                    rows.append((split, position, name, rel))
        return rows

    def token(self) -> str:
        """16 random lowercase letters (SUN397's and ImageNet-V2's file names)."""
        return "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(16))


@dataclass(frozen=True)
class Layout:
    """One on-disk layout: its reader (``find``, over the benchmark's folder), its miniature writer
    (``write_files``: the chosen classes' images and the layout's own files) and what a spec needs
    for it (``sizes_from_split_file``: class count and split sizes come from the index, not the block)."""

    name: str
    find: Callable[[BenchmarkSpec, Path], Iterator[Found]]
    write_files: Callable[[MiniatureWriter, list[Key]], None]
    root_paths: Callable[[BenchmarkSpec], list[str]]
    required: tuple[str, ...] = ()
    problems: Callable[[BenchmarkSpec], list[tuple[str, str]]] = lambda spec: []
    extras: Mapping[str, Callable[[MiniatureWriter, list[Key]], None]] = field(default_factory=dict)
    sizes_from_split_file: bool = False
    defaults: Mapping[str, object] = field(default_factory=dict)

    def read(self, spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
        """The index of the prepared copy under ``data_root`` (class names through the rename table)."""
        rows = [
            (split, rel_path(spec.folder, spec.image_dir, path), label, spec.classname(name))
            for split, path, label, name in self.find(spec, Path(data_root) / spec.folder)
        ]
        return pl.DataFrame(rows, schema=INDEX_SCHEMA, orient="row")

    def write(self, w: MiniatureWriter, count: int) -> list[Key]:
        """Write a miniature of ``count`` classes and return them. With ``subset_stride`` s > 1 they are
        every s-th of an s-times-longer list, which ``classnames_file`` lists whole (ImageNet-A/-R)."""
        stride = w.miniature.subset_stride
        listed = w.choose(count * stride)
        if w.spec.classnames_file:  # CoOp's classnames.txt: one "<key> <class name>" line per class
            path = w.folder / w.spec.classnames_file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{key} {name}\n" for key, name in listed))
        classes = listed[stride - 1 :: stride]
        self.write_files(w, classes)
        return classes


def colour_image(colour: tuple[int, int, int], i: int, size: int) -> Image.Image:
    """A solid colour with a lighter square whose position varies with ``i``."""
    image = Image.new("RGB", (size, size), colour)
    side = max(size // 3, 1)
    x, y = (i * 7) % (size - side + 1), (i * 11) % (size - side + 1)
    light = (min(255, colour[0] + 90), min(255, colour[1] + 90), min(255, colour[2] + 90))
    ImageDraw.Draw(image).rectangle([x, y, x + side - 1, y + side - 1], fill=light)
    return image


def save_image(image: Image.Image | bytes, path: Path) -> None:
    """Save as PNG or JPEG (quality 90) by suffix, or encoded bytes as they are."""
    if isinstance(image, bytes):
        path.write_bytes(image)
    elif path.suffix.lower() == ".png":
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=90)
