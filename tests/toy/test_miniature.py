"""Every benchmark's miniature, in its real layout, indexes to the right labels and names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from perl_pipeline.benchmarks.index import INDEX_SCHEMA, label_classnames
from perl_pipeline.benchmarks.prepare import build_index
from perl_pipeline.benchmarks.validate import validate_index
from perl_pipeline.protocols import ALL_BENCHMARKS
from perl_pipeline.toy.miniature import MARKER, write_miniature

# The first class names in label order, as CoOp's loaders produce them (docs/method.md §6.1).
FIRST_CLASSES = {
    "imagenet": ["tench", "goldfish", "great white shark", "tiger shark"],
    "caltech101": ["face", "leopard", "motorbike", "accordion", "airplane", "anchor"],
    "oxford_pets": [
        "abyssinian",
        "american_bulldog",
        "american_pit_bull_terrier",
        "basset_hound",
        "beagle",
        "bengal",
    ],
    "stanford_cars": [
        "2000 AM General Hummer SUV",
        "2012 Acura RL Sedan",
        "2012 Acura TL Sedan",
        "2008 Acura TL Type-S",
    ],
    "oxford_flowers": ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"],
    "food101": ["apple_pie", "baby_back_ribs", "baklava"],
    "fgvc_aircraft": [
        "707-320",
        "727-200",
        "A300B4",
        "ATR-42",
        "An-12",
        "BAE 146-200",
        "Boeing 717",
        "CRJ-200",
        "Cessna 172",
        "F-16A/B",
        "F/A-18",
        "Yak-42",
    ],
    "sun397": [
        "abbey",
        "airplane_cabin",
        "airport_terminal",
        "alley",
        "amphitheater",
        "amusement_arcade",
        "amusement_park",
        "anechoic_chamber",
        "outdoor apartment_building",
        "indoor apse",
        "aquarium",
        "aqueduct",
    ],
    "dtd": ["banded", "blotchy", "braided"],
    "eurosat": [
        "Annual Crop Land",
        "Forest",
        "Herbaceous Vegetation Land",
        "Highway or Road",
        "Industrial Buildings",
        "Pasture Land",
        "Permanent Crop Land",
        "Residential Buildings",
        "River",
        "Sea or Lake",
    ],
    "ucf101": ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling"],
    "imagenet_v2": ["tench", "goldfish", "great white shark", "tiger shark"],
    "imagenet_sketch": ["tench", "goldfish", "great white shark", "tiger shark"],
    "imagenet_a": ["goldfish", "tiger shark", "electric ray", "rooster"],
    "imagenet_r": ["goldfish", "tiger shark", "electric ray", "rooster"],
}


def _index(miniatures: tuple, name: str) -> pl.DataFrame:
    root, specs = miniatures
    return build_index(specs[name], root)


def _by_label(index: pl.DataFrame, label: int) -> pl.DataFrame:
    return index.filter(pl.col("label") == label)


@pytest.mark.parametrize("name", ALL_BENCHMARKS)
def test_miniature_indexes_and_validates(miniatures: tuple, name: str) -> None:
    root, specs = miniatures
    spec = specs[name]
    index = build_index(spec, root)
    assert dict(index.schema) == INDEX_SCHEMA
    report = validate_index(index, spec, root)
    assert report.dropped == () and report.index.equals(index)
    assert report.split_sizes == spec.split_sizes
    names = label_classnames(index)
    assert len(names) == spec.num_classes
    assert names[: len(FIRST_CLASSES[name])] == FIRST_CLASSES[name]
    paths = index["path"].to_list()
    assert all(p.startswith(spec.folder + "/") and "\\" not in p and "/./" not in p for p in paths)
    assert all((root / p).is_file() for p in paths)
    expected_splits = {"test"} if name.startswith("imagenet_") else set(spec.split_sizes)
    assert set(index["split"].unique().to_list()) == expected_splits


def test_caltech_capitalised_classes_come_first_and_are_renamed(miniatures: tuple) -> None:
    index = _index(miniatures, "caltech101")
    assert _by_label(index, 0)["path"].str.contains("/101_ObjectCategories/Faces/").all()
    assert _by_label(index, 4)["path"].str.contains("/airplanes/image_").all()
    root = miniatures[0]
    for dropped in ("BACKGROUND_Google", "Faces_easy"):
        assert (root / "caltech-101" / "101_ObjectCategories" / dropped).is_dir()
        assert not index["path"].str.contains(f"/{dropped}/").any()


def test_stanford_cars_paths_are_relative_to_the_dataset_folder(miniatures: tuple) -> None:
    index = _index(miniatures, "stanford_cars")
    for split, folder in (("train", "cars_train"), ("val", "cars_train"), ("test", "cars_test")):
        paths = index.filter(pl.col("split") == split)["path"]
        assert paths.str.starts_with(f"stanford_cars/{folder}/").all()
    assert _by_label(index, 1)["classname"][0] == "2012 Acura RL Sedan"


def test_sun397_multilevel_names_are_reversed(miniatures: tuple) -> None:
    index = _index(miniatures, "sun397")
    outdoor = _by_label(index, 8)
    assert outdoor["classname"][0] == "outdoor apartment_building"
    assert outdoor["path"].str.starts_with("sun397/SUN397/a/apartment_building/outdoor/sun_").all()
    assert _by_label(index, 9)["classname"][0] == "indoor apse"


def test_eurosat_folders_keep_raw_names(miniatures: tuple) -> None:
    index = _index(miniatures, "eurosat")
    assert _by_label(index, 0)["path"].str.starts_with("eurosat/2750/AnnualCrop/AnnualCrop_").all()
    assert _by_label(index, 9)["classname"][0] == "Sea or Lake"


def test_ucf101_camel_case_split(miniatures: tuple) -> None:
    index = _index(miniatures, "ucf101")
    paths = _by_label(index, 0)["path"]
    assert paths.str.starts_with("ucf101/UCF-101-midframes/Apply_Eye_Makeup/v_ApplyEyeMakeup_g").all()
    assert paths.str.contains(r"_g\d\d_c\d\d\.jpg$").all()


def test_fgvc_names_with_spaces_and_slashes(miniatures: tuple) -> None:
    index = _index(miniatures, "fgvc_aircraft")
    assert _by_label(index, 10)["classname"][0] == "F/A-18"
    assert _by_label(index, 6)["classname"][0] == "Boeing 717"
    assert index["path"].str.contains(r"^fgvc_aircraft/images/\d{7}\.jpg$").all()


def test_imagenet_has_train_and_test_from_wnid_folders(miniatures: tuple) -> None:
    index = _index(miniatures, "imagenet")
    assert set(index["split"].unique().to_list()) == {"train", "test"}
    test0 = index.filter((pl.col("split") == "test") & (pl.col("label") == 0))["path"]
    assert test0.str.starts_with("imagenet/images/val/n01440764/ILSVRC2012_val_").all()


def test_imagenet_v2_folder_i_is_label_i(miniatures: tuple) -> None:
    root, specs = miniatures
    spec = specs["imagenet_v2"]
    assert spec.num_classes > 10  # "10" sorts before "2" as a string: must not matter
    index = build_index(spec, root)
    lines = (root / spec.folder / "classnames.txt").read_text().splitlines()
    for label in (2, 10, 11):
        rows = _by_label(index, label)
        assert rows["path"].str.contains(f"/{label}/").all()
        assert rows["classname"][0] == lines[label].split(" ", 1)[1]


@pytest.mark.parametrize("name", ["imagenet_a", "imagenet_r"])
def test_imagenet_a_r_use_their_wnid_subset_and_imagenet_names(miniatures: tuple, name: str) -> None:
    root, specs = miniatures
    spec = specs[name]
    index = build_index(spec, root)
    classnames = dict(
        line.split(" ", 1) for line in (root / spec.folder / "classnames.txt").read_text().splitlines()
    )
    assert len(classnames) == 2 * spec.num_classes  # a subset of a longer list, like 200/1000
    folders = sorted(p.name for p in (root / spec.folder / spec.image_dir).iterdir() if p.is_dir())
    assert len(folders) == spec.num_classes
    assert (root / spec.folder / spec.image_dir / "README.txt").is_file()  # ignored
    for label, wnid in enumerate(folders):
        rows = _by_label(index, label)
        assert rows["path"].str.contains(f"/{wnid}/").all()
        assert rows["classname"][0] == classnames[wnid]


def test_returned_spec_describes_the_miniature(tmp_path: Path, benchmark_specs: dict) -> None:
    pets = write_miniature(
        benchmark_specs["oxford_pets"],
        tmp_path,
        classes=37,
        per_class={"train": 5, "test": 1},
        image_size=16,
    )
    assert pets.num_classes == 37
    assert pets.split_sizes == {"train": 185, "val": 74, "test": 37}
    assert pets.template == benchmark_specs["oxford_pets"].template
    index = build_index(pets, tmp_path)
    validate_index(index, pets, tmp_path)
    assert label_classnames(index)[-1] == "extra_class_036"  # synthetic beyond the real names


def test_images_are_class_coloured_and_deterministic(tmp_path: Path, benchmark_specs: dict) -> None:
    from PIL import Image

    spec = benchmark_specs["dtd"]
    mini = write_miniature(spec, tmp_path / "a", classes=3, seed=7)
    write_miniature(spec, tmp_path / "b", classes=3, seed=7)
    index = build_index(mini, tmp_path / "a")

    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for path in sorted(index["path"].to_list()) + [f"dtd/{mini.split_file}"]:
            h.update((root / path).read_bytes())
        return h.hexdigest()

    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    colours = {
        label: Image.open(tmp_path / "a" / _by_label(index, label)["path"][0])
        .convert("RGB")
        .getpixel((31, 31))
        for label in range(3)
    }
    assert len(set(colours.values())) == 3


def test_split_file_is_in_coop_format(miniatures: tuple) -> None:
    root, specs = miniatures
    data = json.loads((root / "caltech-101" / specs["caltech101"].split_file).read_text())
    assert set(data) == {"train", "val", "test"}
    assert data["train"][0] == ["Faces/image_0001.jpg", 0, "face"]


def test_rewrites_its_own_miniature_but_never_other_data(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = benchmark_specs["dtd"]
    write_miniature(spec, tmp_path, classes=2)
    write_miniature(spec, tmp_path, classes=3)
    assert json.loads((tmp_path / "dtd" / MARKER).read_text())["classes"] == 3
    assert len(label_classnames(build_index(spec, tmp_path))) == 3
    (tmp_path / "dtd" / MARKER).unlink()
    with pytest.raises(FileExistsError, match="not a miniature"):
        write_miniature(spec, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": 0}, "classes must be 1..47"),
        ({"classes": 48}, "classes must be 1..47"),
        ({"per_class": {"train": 0}}, "positive integers"),
        ({"per_class": {"dev": 1}}, "splits \\['dev'\\]"),
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, benchmark_specs: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_miniature(benchmark_specs["dtd"], tmp_path, **kwargs)


TOY_WORLD = {"backgrounds": ["noisy", "wavy"], "noise": 0.05, "occlusion": 0.3}


@pytest.mark.parametrize("name", ALL_BENCHMARKS)
def test_toy_world_miniature_keeps_the_layout_with_toy_concepts(
    tmp_path: Path, benchmark_specs: dict, name: str
) -> None:
    from perl_pipeline.toy import world as toy_world

    options = {
        "classes": 6,
        "per_class": {"train": 2, "val": 1, "test": 2},
        "image_size": 32,
        "world": TOY_WORLD,
    }
    spec = write_miniature(benchmark_specs[name], tmp_path, **options)
    index = build_index(spec, tmp_path)
    validate_index(index, spec, tmp_path)
    names = label_classnames(index)
    assert len(set(names)) == 6
    assert all(toy_world.split_concept(n) for n in names)  # "red triangle", not the real names
    again = tmp_path / "again"
    write_miniature(benchmark_specs[name], again, **options)
    assert label_classnames(build_index(spec, again)) == names  # the concepts are seeded


def test_toy_world_images_show_the_class_concept(tmp_path: Path, benchmark_specs: dict) -> None:
    from PIL import Image

    from perl_pipeline.toy import world as toy_world

    world = {"backgrounds": ["plain"], "colour_jitter": 0.0, "background_saturation": 0.0}
    spec = write_miniature(
        benchmark_specs["dtd"], tmp_path, classes=4, per_class={"train": 3}, image_size=48, world=world
    )
    index = build_index(spec, tmp_path)
    for row in index.iter_rows(named=True):
        colour, _ = toy_world.split_concept(row["classname"])
        pixels = np.asarray(Image.open(tmp_path / row["path"]).convert("RGB")).reshape(-1, 3).astype(float)
        target = np.array(toy_world.COLOURS[colour]) * 255
        near = (np.abs(pixels - target).max(axis=1) < 30).mean()  # JPEG keeps the colour within a few levels
        assert near > 0.02, (row["path"], near)  # the smallest shapes cover ~5 % of the image


def test_toy_world_class_count_is_limited_by_its_concepts_not_the_dataset(
    tmp_path: Path, benchmark_specs: dict
) -> None:
    eurosat = write_miniature(
        benchmark_specs["eurosat"], tmp_path, classes=20, per_class={"train": 1}, world=TOY_WORLD
    )
    assert eurosat.num_classes == 20  # the real EuroSAT has 10
    with pytest.raises(ValueError, match=r"classes must be 1\.\.64"):
        write_miniature(benchmark_specs["caltech101"], tmp_path, classes=65, world=TOY_WORLD)
    with pytest.raises(ValueError, match=r"classes must be 1\.\.32"):  # A/R: every other class of a list
        write_miniature(benchmark_specs["imagenet_a"], tmp_path, classes=33, world=TOY_WORLD)
