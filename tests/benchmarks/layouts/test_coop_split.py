"""Layout coop_split: the miniature writer's split file and folders read back as written."""

from __future__ import annotations

import json

import polars as pl
import pytest

from perl_pipeline.benchmarks.layouts import LAYOUTS
from tests.benchmarks.layouts.conftest import assert_same_index

COOP = [
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
]


@pytest.mark.parametrize("name", COOP)
def test_round_trip(trip, name: str) -> None:
    result = trip(name, 14)  # past the 12 (EuroSAT: 10) real classes: synthetic ones too
    assert result.spec.layout == "coop_split"
    assert_same_index(result)


def test_caltech_dropped_folders_are_on_disk_but_not_indexed(trip) -> None:
    result = trip("caltech101", 5)
    assert_same_index(result)
    image_dir = result.root / "caltech-101" / "101_ObjectCategories"
    for dropped in ("BACKGROUND_Google", "Faces_easy"):
        assert (image_dir / dropped / "image_0001.jpg").is_file()
        assert not result.read["path"].str.contains(f"/{dropped}/").any()
    first = result.read.filter(pl.col("label") == 0)
    assert first["classname"].unique().to_list() == ["face"]
    assert first["path"].str.starts_with("caltech-101/101_ObjectCategories/Faces/").all()


def test_sun397_nested_folders_and_reversed_names(trip) -> None:
    result = trip("sun397", 10)
    assert_same_index(result)
    apartment = result.read.filter(pl.col("label") == 8)
    assert apartment["classname"].unique().to_list() == ["outdoor apartment_building"]
    assert apartment["path"].str.starts_with("sun397/SUN397/a/apartment_building/outdoor/sun_").all()
    listed = (result.root / "sun397" / "SUN397" / "ClassName.txt").read_text().splitlines()
    assert listed[8] == "/a/apartment_building/outdoor"


def test_stanford_cars_paths_are_relative_to_the_folder(trip) -> None:
    result = trip("stanford_cars", 3)
    assert_same_index(result)
    split_file = json.loads((result.root / "stanford_cars" / result.spec.split_file).read_text())
    assert split_file["test"][0][0].startswith("cars_test/")
    assert (
        result.read.filter(pl.col("split") == "val")["path"]
        .str.starts_with("stanford_cars/cars_train/")
        .all()
    )


def test_eurosat_raw_folder_names_are_renamed_by_the_spec(trip) -> None:
    result = trip("eurosat", 10)
    split_path = result.root / "eurosat" / result.spec.split_file
    data = json.loads(split_path.read_text())
    for entries in data.values():
        for entry in entries:
            entry[2] = entry[0].split("/")[0]  # the folder name, as a regenerated split file has it
    split_path.write_text(json.dumps(data))
    read = LAYOUTS["coop_split"].read(result.spec, result.root)
    assert read.sort("split", "path").equals(result.meant.sort("split", "path"))
    assert read.filter(pl.col("label") == 0)["classname"].unique().to_list() == ["Annual Crop Land"]
