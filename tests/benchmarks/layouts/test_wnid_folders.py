"""Layout wnid_folders: wnid folders and classnames.txt read back as written."""

from __future__ import annotations

import polars as pl
import pytest

from perl_pipeline.benchmarks.index import read_classnames
from tests.benchmarks.layouts.conftest import assert_same_index


@pytest.mark.parametrize("name", ["imagenet", "imagenet_sketch", "imagenet_a", "imagenet_r"])
def test_round_trip(trip, name: str) -> None:
    result = trip(name, 13)
    assert result.spec.layout == "wnid_folders"
    assert_same_index(result)


def test_imagenet_val_images_sit_in_wnid_folders_as_the_test_split(trip) -> None:
    result = trip("imagenet", 4)
    assert_same_index(result)
    assert set(result.read["split"]) == {"train", "test"}
    test0 = result.read.filter((pl.col("split") == "test") & (pl.col("label") == 0))["path"]
    assert test0.str.starts_with("imagenet/images/val/n01440764/ILSVRC2012_val_").all()


@pytest.mark.parametrize("name", ["imagenet_a", "imagenet_r"])
def test_a_r_folders_are_a_subset_of_a_longer_classnames_txt(trip, name: str) -> None:
    result = trip(name, 5)
    assert_same_index(result)
    names = read_classnames(result.root / result.spec.folder / "classnames.txt")
    assert len(names) == 10
    assert [wnid for wnid, _ in result.classes] == list(names)[1::2]
    assert (result.root / result.spec.folder / result.spec.image_dir / "README.txt").is_file()
    assert not result.read["path"].str.contains("README").any()
    assert result.read.filter(pl.col("label") == 0)["classname"][0] == "goldfish"
