"""The replica: every benchmark at its true class count and scaled split sizes, in its real layout,
read back through the real readers (the round trip of the layouts)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from perl_pipeline.benchmarks.index import label_classnames
from perl_pipeline.benchmarks.layouts import LAYOUTS
from perl_pipeline.benchmarks.prepare import build_index
from perl_pipeline.benchmarks.validate import validate_index
from perl_pipeline.toy.miniature import MARKER, replica_split_sizes, write_replica

FRACTION = 0.0005  # every split at least one image per class: about 8,000 files in all


@pytest.fixture(scope="module")
def replica(tmp_path_factory, benchmark_specs):
    root = tmp_path_factory.mktemp("replica")
    return root, {
        name: write_replica(spec, root, fraction=FRACTION) for name, spec in benchmark_specs.items()
    }


def test_scaled_split_sizes_keep_every_class(benchmark_specs):
    imagenet = benchmark_specs["imagenet"]
    assert replica_split_sizes(imagenet, 1.0) == imagenet.split_sizes
    assert replica_split_sizes(imagenet, 0.01) == {"train": 12812, "test": 1000}  # 500 -> one per class
    with pytest.raises(ValueError, match="fraction"):
        replica_split_sizes(imagenet, 0)


def test_every_layout_reads_back_exactly(replica, benchmark_specs):
    root, replicas = replica
    # every layout of the paper's benchmarks (image_folder is your own folders': tests/benchmarks/layouts)
    assert {spec.layout for spec in benchmark_specs.values()} == set(LAYOUTS) - {"image_folder"}
    for name, spec in benchmark_specs.items():
        written = replicas[name]
        assert written.num_classes == spec.num_classes
        assert written.split_sizes == replica_split_sizes(spec, FRACTION)
        index = build_index(spec, root)  # the real reader, with the protocol's own spec
        report = validate_index(index, written, root)  # exact sizes, every class in every split
        assert report.num_classes == spec.num_classes
        names = label_classnames(index, where=name)
        assert len(set(names)) == spec.num_classes, f"{name}: class names must be unique"


def test_generated_wnids_are_wordnet_ids(replica):
    root, replicas = replica
    lines = (root / "imagenet" / "classnames.txt").read_text().splitlines()
    assert len(lines) == 1000 and lines[0] == "n01440764 tench"
    assert all(line[0] == "n" and line[1:9].isdigit() and line[9] == " " for line in lines)


def test_an_unchanged_replica_is_reused(replica, benchmark_specs):
    root, _ = replica
    marker = root / "dtd" / MARKER
    before = marker.stat().st_mtime_ns
    write_replica(benchmark_specs["dtd"], root, fraction=FRACTION)
    assert marker.stat().st_mtime_ns == before
    assert json.loads(marker.read_text())["split_sizes"] == replica_split_sizes(
        benchmark_specs["dtd"], FRACTION
    )


def test_real_size_images_are_like_imagenets(tmp_path, benchmark_specs):
    spec = write_replica(benchmark_specs["eurosat"], tmp_path, fraction=0.001, image_size="real")
    files = sorted((tmp_path / "eurosat" / "2750").rglob("*.jpg"))
    assert len(files) == sum(spec.split_sizes.values())
    with Image.open(files[0]) as image:
        assert image.size == (500, 375)
        image.load()
    assert 70_000 < files[0].stat().st_size < 140_000
