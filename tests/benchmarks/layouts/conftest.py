"""Round trips through one layout: its miniature writer writes, its reader reads back."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.benchmarks.index import INDEX_SCHEMA
from perl_pipeline.benchmarks.layouts import LAYOUTS, Key, MiniatureWriter
from perl_pipeline.benchmarks.layouts.base import Place, Row, colour_image
from perl_pipeline.benchmarks.spec import BenchmarkSpec

PER_CLASS = {"train": 2, "val": 1, "test": 2}


class RecordingWriter(MiniatureWriter):
    """A MiniatureWriter that remembers where each image went and which class it shows."""

    def __init__(self, spec: BenchmarkSpec, root: Path, counts: dict[str, int]) -> None:
        mini = spec.miniature
        assert mini is not None
        super().__init__(
            spec,
            root / spec.folder,
            counts,
            random.Random(0),
            choose=lambda n: [mini.entry(i) for i in range(n)],
            draw=lambda hue, name, i: colour_image((int(255 * hue), 80, 160), i, 8),
        )
        self.root = root
        self.meant: list[tuple[str, str, int, str]] = []

    def images(self, classes: list[Key], place: Place | None = None) -> list[Row]:
        def recording(split: str, position: int, key: str, rel: str) -> Path:
            path = place(split, position, key, rel) if place else self.image_dir / rel
            self.meant.append((split, path.relative_to(self.root).as_posix(), position, classes[position][1]))
            return path

        return super().images(classes, recording)


@dataclass(frozen=True)
class RoundTrip:
    """What a layout's writer meant (one row per image it wrote) and what its reader read."""

    spec: BenchmarkSpec
    root: Path
    classes: list[Key]
    meant: pl.DataFrame
    read: pl.DataFrame


def round_trip(spec: BenchmarkSpec, root: Path, count: int) -> RoundTrip:
    """Write `count` classes of `spec` with its layout's writer (and extras), read them back."""
    layout = LAYOUTS[spec.layout]
    counts = {s: k for s, k in PER_CLASS.items() if s in spec.split_sizes}
    writer = RecordingWriter(spec, root, counts)
    classes = layout.write(writer, count)
    if spec.miniature and spec.miniature.extras:
        layout.extras[spec.miniature.extras](writer, classes)
    meant = pl.DataFrame(writer.meant, schema=INDEX_SCHEMA, orient="row")
    return RoundTrip(spec, root, classes, meant, layout.read(spec, root))


def assert_same_index(trip: RoundTrip) -> None:
    """The reader's index is the writer's, row for row (in any order), with every split's size."""
    order = ["split", "path"]
    assert trip.read.sort(order).equals(trip.meant.sort(order))
    counts = {s: k for s, k in PER_CLASS.items() if s in trip.spec.split_sizes}
    sizes = dict(trip.read.group_by("split").len().iter_rows())
    assert sizes == {s: k * len(trip.classes) for s, k in counts.items()}


@pytest.fixture
def trip(tmp_path: Path, benchmark_specs: dict):
    """round_trip(name, count) on the configured spec of benchmark `name`."""
    return lambda name, count: round_trip(benchmark_specs[name], tmp_path, count)
