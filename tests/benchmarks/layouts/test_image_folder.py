"""Layout image_folder: a folder of class folders becomes a benchmark with a seeded Dassl split,
written once as a CoOp split file and read by the coop_split reader; bad folders are named."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from perl_pipeline.benchmarks.layouts.image_folder import ImageFolderError, dassl_counts, make_split
from perl_pipeline.benchmarks.prepare import build_index, with_index_sizes
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.benchmarks.validate import validate_index
from perl_pipeline.config import ConfigError

BLOCK = {
    "name": "mine",
    "title": "Mine",
    "folder": "mine",
    "layout": "image_folder",
    "template": "a photo of a {}.",
}


def spec(**changes) -> BenchmarkSpec:
    return BenchmarkSpec.from_params({**BLOCK, **changes})


def images(folder: Path, n: int, start: int = 0, suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        pixels = np.random.default_rng(i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
        paths.append(folder / f"img_{i:03d}{suffix}")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_a_block_needs_no_sizes_and_other_layouts_still_do():
    made = spec()
    assert (made.num_classes, made.split_sizes, made.image_dir) == (0, {}, ".")
    assert made.split_file == "split_perl.json" and made.split_seed == 1
    with pytest.raises(ConfigError, match="num_classes"):
        BenchmarkSpec.from_params(
            {**BLOCK, "layout": "coop_split", "split_file": "s.json", "image_dir": "i", "manual": "m"}
        )


def test_class_folders_split_once_as_dassl_does_and_read_back(tmp_path):
    root = tmp_path / "01_raw"
    counts = {"cat": 10, "Dog_breed": 7, "emu": 4}
    for name, n in counts.items():
        images(root / "mine" / name, n)
    (root / "mine" / "cat" / "notes.txt").write_text("not an image")
    index = build_index(spec(classname_fixes={"Dog_breed": "dog"}), root)
    split_file = root / "mine" / "split_perl.json"
    written = json.loads(split_file.read_text())
    # Dassl's read_and_split_data, transcribed: sorted classes, each class's list shuffled by the
    # one seeded generator, round(n * 0.5) train, round(n * 0.2) val, the rest test
    random.seed(1)
    expected: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(sorted(counts)):
        files = [f"{name}/img_{i:03d}.png" for i in range(counts[name])]
        random.shuffle(files)
        n_train, n_val = round(len(files) * 0.5), round(len(files) * 0.2)
        expected["train"] += [[f, label, name] for f in files[:n_train]]
        expected["val"] += [[f, label, name] for f in files[n_train : n_train + n_val]]
        expected["test"] += [[f, label, name] for f in files[n_train + n_val :]]
    assert written == expected
    assert [dassl_counts(n) for n in (10, 7, 4)] == [(5, 2, 3), (4, 1, 2), (2, 1, 1)]
    assert index.height == 21 and "notes.txt" not in " ".join(index["path"])
    classes = index.sort("label").unique("label", maintain_order=True)["classname"].to_list()
    assert classes == ["dog", "cat", "emu"]  # sorted folder names, then the rename table
    sized = with_index_sizes(spec(), index)
    assert (sized.num_classes, sized.split_sizes) == (3, {"train": 11, "val": 4, "test": 6})
    # written once: the file is the split from now on, even after more images arrive
    images(root / "mine" / "emu", 3, start=50)
    assert build_index(spec(), root).height == 21
    assert json.loads(split_file.read_text()) == written


def test_train_val_test_folders_are_the_users_split(tmp_path):
    root = tmp_path / "01_raw"
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for name in ("b", "a"):
            images(root / "mine" / split / name, n, start=10 * len(split))
    index = build_index(spec(), root)
    sizes = with_index_sizes(spec(), index).split_sizes
    assert sizes == {"train": 6, "val": 2, "test": 4}
    row = index.filter(pl.col("split") == "val").sort("path").row(0, named=True)
    assert row["path"] == "mine/val/a/img_030.png" and (row["label"], row["classname"]) == (0, "a")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "holds no class folders"),
        ({"only": 5}, "single class folder"),
        ({"Red_Car": 5, "red car": 5}, "'Red_Car' and 'red car'.*name the same class"),
        ({"a": 5, "b": 3}, "has 3 image.*at least 4"),
    ],
)
def test_folders_that_cannot_be_a_benchmark_are_named(tmp_path, layout, message):
    (tmp_path / "mine").mkdir()
    for name, n in layout.items():
        images(tmp_path / "mine" / name, n)
    with pytest.raises(ImageFolderError, match=message):
        make_split(spec(), tmp_path / "mine")


def test_symlink_loop_and_strange_files_are_named_and_left_out(tmp_path, caplog):
    for name in ("a", "b"):
        images(tmp_path / "mine" / name, 4)
    (tmp_path / "mine" / "a" / "again").symlink_to(tmp_path / "mine" / "a", target_is_directory=True)
    (tmp_path / "mine" / "b" / "readme.md").write_text("hi")
    with caplog.at_level(logging.WARNING):
        split = make_split(spec(), tmp_path / "mine")
    assert sum(len(v) for v in split.values()) == 8
    assert "symlink loop" in caplog.text and "readme.md: not an image file" in caplog.text


def test_undecodable_images_are_dropped_under_the_tolerance(tmp_path):
    root = tmp_path / "01_raw"
    for name in ("a", "b"):
        images(root / "mine" / name, 6)
    for path in (root / "mine" / "a").iterdir():
        path.write_bytes(b"\x89PNG broken")  # every image of a: one of them lands in val or test
        break
    index = build_index(spec(), root)
    sized = with_index_sizes(spec(), index)
    bad = (root / "mine" / "a").iterdir().__next__().name
    with pytest.raises(Exception, match=bad):
        validate_index(index, sized, root, tolerance=0, workers=1)
    report = validate_index(index, sized, root, tolerance=1, workers=1)
    assert report.index.height == 11
