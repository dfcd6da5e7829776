"""BenchmarkSpec parsing/validation, the YAML configuration, and reader edge cases."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.benchmarks.index import INDEX_SCHEMA, label_classnames
from perl_pipeline.benchmarks.layouts import LAYOUTS
from perl_pipeline.benchmarks.prepare import build_index
from perl_pipeline.benchmarks.spec import (
    BenchmarkError,
    BenchmarkSpec,
    ImageNetValStep,
    MoveStep,
    UnpackStep,
)
from perl_pipeline.protocols import ALL_BENCHMARKS
from perl_pipeline.toy.miniature import write_miniature

# name: (folder, num_classes, split_sizes, template)  -- docs/method.md §6.1 and §6.6
PROTOCOL = {
    "imagenet": ("imagenet", 1000, {"train": 1_281_167, "test": 50_000}, "a photo of a {}."),
    "caltech101": (
        "caltech-101",
        100,
        {"train": 4128, "val": 1649, "test": 2465},
        "a photo of a {}.",
    ),
    "oxford_pets": (
        "oxford_pets",
        37,
        {"train": 2944, "val": 736, "test": 3669},
        "a photo of a {}, a type of pet.",
    ),
    "stanford_cars": (
        "stanford_cars",
        196,
        {"train": 6509, "val": 1635, "test": 8041},
        "a photo of a {}.",
    ),
    "oxford_flowers": (
        "oxford_flowers",
        102,
        {"train": 4093, "val": 1633, "test": 2463},
        "a photo of a {}, a type of flower.",
    ),
    "food101": (
        "food-101",
        101,
        {"train": 50500, "val": 20200, "test": 30300},
        "a photo of {}, a type of food.",
    ),
    "fgvc_aircraft": (
        "fgvc_aircraft",
        100,
        {"train": 3334, "val": 3333, "test": 3333},
        "a photo of a {}, a type of aircraft.",
    ),
    "sun397": ("sun397", 397, {"train": 15880, "val": 3970, "test": 19850}, "a photo of a {}."),
    "dtd": ("dtd", 47, {"train": 2820, "val": 1128, "test": 1692}, "{} texture."),
    "eurosat": (
        "eurosat",
        10,
        {"train": 13500, "val": 5400, "test": 8100},
        "a centered satellite photo of {}.",
    ),
    "ucf101": (
        "ucf101",
        101,
        {"train": 7639, "val": 1898, "test": 3783},
        "a photo of a person doing {}.",
    ),
    "imagenet_v2": ("imagenetv2", 1000, {"test": 10000}, "a photo of a {}."),
    "imagenet_sketch": ("imagenet-sketch", 1000, {"test": 50889}, "a photo of a {}."),
    "imagenet_a": ("imagenet-adversarial", 200, {"test": 7500}, "a photo of a {}."),
    "imagenet_r": ("imagenet-rendition", 200, {"test": 30000}, "a photo of a {}."),
}


def test_yaml_describes_exactly_the_15_benchmarks(benchmark_specs: dict) -> None:
    assert set(benchmark_specs) == set(ALL_BENCHMARKS) == set(PROTOCOL)
    assert all(isinstance(s, BenchmarkSpec) for s in benchmark_specs.values())


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_yaml_matches_the_protocol(benchmark_specs: dict, name: str) -> None:
    spec = benchmark_specs[name]
    folder, num_classes, sizes, template = PROTOCOL[name]
    assert (spec.name, spec.folder, spec.num_classes, spec.split_sizes, spec.template) == (
        name,
        folder,
        num_classes,
        sizes,
        template,
    )
    assert spec.layout in LAYOUTS
    assert spec.manual.strip()
    assert any(not s.optional for s in spec.sources)


def test_every_required_source_without_a_route_is_explained_in_manual(
    benchmark_specs: dict,
) -> None:
    for spec in benchmark_specs.values():
        for src in spec.sources:
            if not src.downloadable:
                assert src.filename in spec.manual, (spec.name, src.filename)


def test_protocol_quirks_are_configured(benchmark_specs: dict) -> None:
    assert benchmark_specs["caltech101"].classname_fixes["Faces"] == "face"
    assert benchmark_specs["eurosat"].classname("AnnualCrop") == "Annual Crop Land"
    assert benchmark_specs["eurosat"].classname("Annual Crop Land") == "Annual Crop Land"
    assert benchmark_specs["stanford_cars"].image_dir == "."
    assert benchmark_specs["imagenet"].split_dirs == {"train": "train", "test": "val"}
    assert benchmark_specs["imagenet_a"].split_dirs == {"test": "."}
    assert MoveStep("sketch", "images") in benchmark_specs["imagenet_sketch"].arrange
    assert any(isinstance(s, ImageNetValStep) for s in benchmark_specs["imagenet"].arrange)
    assert any(isinstance(s, UnpackStep) for s in benchmark_specs["imagenet"].arrange)
    # all five ImageNet-family members share the one classnames.txt source (a YAML anchor)
    family = ["imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    ids = {
        next(s.gdrive_id for s in benchmark_specs[n].sources if s.filename == "classnames.txt")
        for n in family
    }
    assert ids == {"1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"}


def test_kedro_config_loader_exposes_params_name_benchmark(tmp_path: Path, benchmark_specs: dict) -> None:
    from kedro.config import OmegaConfigLoader

    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    shutil.copy(
        Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters_benchmarks.yml",
        conf / "base",
    )
    params = OmegaConfigLoader(str(conf), base_env="base", default_run_env="local")["parameters"]
    assert BenchmarkSpec.from_params(params["dtd"]["benchmark"]) == benchmark_specs["dtd"]
    assert {n: BenchmarkSpec.from_params(params[n]["benchmark"]) for n in ALL_BENCHMARKS} == benchmark_specs


def test_spec_is_frozen_and_hashable(benchmark_specs: dict) -> None:
    spec = benchmark_specs["dtd"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_classes = 3  # type: ignore[misc]
    assert hash(spec) == hash(BenchmarkSpec.from_params(_dtd_params(spec)))


def _dtd_params(spec: BenchmarkSpec) -> dict:
    return {
        "name": spec.name,
        "title": spec.title,
        "folder": spec.folder,
        "layout": spec.layout,
        "image_dir": spec.image_dir,
        "split_file": spec.split_file,
        "num_classes": spec.num_classes,
        "split_sizes": dict(spec.split_sizes),
        "template": spec.template,
        "classname_fixes": {},
        "manual": spec.manual,
        "sources": [
            {
                "filename": s.filename,
                "kind": s.kind,
                "provides": list(s.provides),
                "urls": list(s.urls),
                "gdrive_id": s.gdrive_id,
                "md5": s.md5,
            }
            for s in spec.sources
        ],
        "arrange": [{"op": "move", "src": "dtd", "dst": "."}],
    }


def _set(path: str, value: object):
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[int(p)] if p.isdigit() else d[p]
        d[last] = value

    return edit


def _delete(key: str):
    return lambda d: d.pop(key)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("split_fle", "x.json"), ["benchmark 'dtd'", "unknown key", "split_fle"]),
        (_delete("template"), ["benchmark 'dtd'", "missing required key", "template"]),
        (_set("layout", "coop"), ["benchmark 'dtd'", "'layout'", "coop_split"]),
        (_set("num_classes", "47"), ["benchmark 'dtd'", "'num_classes'", "integer"]),
        (_set("num_classes", 0), ["benchmark 'dtd'", "'num_classes'", "positive"]),
        (_set("split_sizes", {"train": 1, "dev": 2, "test": 3}), ["'split_sizes'", "dev"]),
        (_set("split_sizes", {"train": 1}), ["'split_sizes'", "'test'"]),
        (_set("template", "{} texture {}."), ["'template'", "exactly one"]),
        (_set("split_file", None), ["'split_file'", "required by layout 'coop_split'"]),
        (_set("classname_fixes", ["a"]), ["'classname_fixes'", "mapping"]),
        (_set("sources.0.md6", "x"), ["benchmark 'dtd': sources[0]", "unknown key", "md6"]),
        (_set("sources.0.kind", "zip"), ["'sources[0].kind'", "archive"]),
        (_set("sources.1.provides", []), ["'sources[1].provides'", "required for archives"]),
        (_set("sources.0.optional", "yes"), ["sources[0]", "'optional'", "true/false"]),
        (_set("arrange.0.op", "rename"), ["benchmark 'dtd': arrange[0]", "'op'", "move"]),
        (_set("arrange.0.dest", "."), ["arrange[0] (op move)", "unknown key", "dest"]),
        (_set("split_dirs", {"test": "."}), ["'split_dirs'", "wnid_folders"]),
    ],
)
def test_from_params_rejects_bad_parameters(benchmark_specs: dict, edit, expected) -> None:
    params = copy.deepcopy(_dtd_params(benchmark_specs["dtd"]))
    edit(params)
    with pytest.raises(ValueError) as err:
        BenchmarkSpec.from_params(params)
    for text in expected:
        assert text in str(err.value)


def test_layout_specific_requirements(benchmark_params: dict) -> None:
    params = copy.deepcopy(benchmark_params["imagenet_a"]["benchmark"])
    params.pop("classnames_file")
    with pytest.raises(ValueError, match="imagenet_a.*'classnames_file'.*wnid_folders"):
        BenchmarkSpec.from_params(params)
    params = copy.deepcopy(benchmark_params["imagenet"]["benchmark"])
    params["split_dirs"] = {"train": "train"}
    with pytest.raises(ValueError, match="'split_dirs' must name the same splits"):
        BenchmarkSpec.from_params(params)
    params = copy.deepcopy(benchmark_params["imagenet_v2"]["benchmark"])
    params["split_sizes"] = {"train": 5, "test": 10}
    with pytest.raises(ValueError, match="only 'test'"):
        BenchmarkSpec.from_params(params)


@pytest.mark.parametrize(
    ("name", "edit", "expected"),
    [
        ("dtd", _delete("title"), ["benchmark 'dtd'", "missing required key", "title"]),
        ("dtd", _set("miniature.extras", "readme"), ["'miniature.extras'", "'readme'", "caltech_dropped"]),
        ("fgvc_aircraft", _set("miniature.extras", "readme"), ["'miniature.extras'", "has: none"]),
        ("dtd", _set("miniature.files", "{key}/{idx}.jpg"), ["'miniature.files'", "'idx'", "token"]),
        ("dtd", _set("miniature.toy_key", "{snake"), ["'miniature.toy_key'", "format string"]),
        ("imagenet", _set("miniature.files_per_split", {"val": "x.jpg"}), ["files_per_split", "['val']"]),
        ("dtd", _set("miniature.subset_stride", 2), ["'miniature.subset_stride'", "wnid_folders"]),
        (
            "dtd",
            _set("miniature.classes", {"banded": 1}),
            ["miniature: key 'classes'", "mapping of names to non-empty strings"],
        ),
        ("dtd", _set("miniature.colour", "red"), ["benchmark 'dtd': miniature", "unknown key", "colour"]),
    ],
)
def test_miniature_and_title_are_checked(benchmark_params: dict, name: str, edit, expected) -> None:
    params = copy.deepcopy(benchmark_params[name]["benchmark"])
    edit(params)
    with pytest.raises(ValueError) as err:
        BenchmarkSpec.from_params(params)
    for text in expected:
        assert text in str(err.value)


def test_every_benchmark_has_a_title_and_a_miniature(benchmark_specs: dict) -> None:
    titles = {name: spec.title for name, spec in benchmark_specs.items()}
    assert titles["oxford_flowers"] == "Flowers102" and titles["imagenet_v2"] == "ImageNet-V2"
    assert all(spec.reported_name == name for name, spec in benchmark_specs.items())
    assert all(spec.miniature is not None for spec in benchmark_specs.values())
    imagenet = benchmark_specs["imagenet"].miniature
    assert imagenet.entry(0) == ("n01440764", "tench")  # the shared ImageNet table (a YAML anchor)
    assert benchmark_specs["imagenet_r"].miniature.classes == imagenet.classes
    assert imagenet.entry(30) == ("n90000030", "extra class 030")  # sorts after every real wnid
    assert benchmark_specs["sun397"].miniature.toy_entry_key(0, "red triangle") == "r/red_triangle"
    assert benchmark_specs["oxford_flowers"].miniature.toy_entry_key(4, "red triangle") == "5"


def test_top_level_key_matches_name(benchmark_params: dict) -> None:
    # the pipelines namespace each benchmark by its top-level key and name its files by spec.name
    blocks = {k: v for k, v in benchmark_params.items() if isinstance(v, dict) and "benchmark" in v}
    assert sorted(blocks) == sorted(ALL_BENCHMARKS)
    assert all(BenchmarkSpec.from_params(b["benchmark"]).name == k for k, b in blocks.items())


def test_file_sources_provide_themselves(benchmark_specs: dict) -> None:
    split = benchmark_specs["dtd"].sources[0]
    assert split.kind == "file" and split.provides == (split.filename,)
    assert split.routes() == [
        "https://drive.google.com/uc?id=1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x (Google Drive)"
    ]


# ---- readers ---------------------------------------------------------------------------------


def test_coop_reader_applies_rename_table_to_raw_names(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(
        benchmark_specs["eurosat"], tmp_path, classes=3, per_class={"train": 1, "val": 1, "test": 1}
    )
    split_path = tmp_path / "eurosat" / spec.split_file
    data = json.loads(split_path.read_text())
    for entries in data.values():
        for entry in entries:  # a regenerated split file could carry the folder names
            entry[2] = entry[0].split("/")[0]
    split_path.write_text(json.dumps(data))
    names = label_classnames(build_index(spec, tmp_path))
    assert names == ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land"]


def test_coop_reader_rejects_malformed_entries(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(benchmark_specs["dtd"], tmp_path, classes=2)
    split_path = tmp_path / "dtd" / spec.split_file
    data = json.loads(split_path.read_text())
    data["val"][1] = ["banded/x.jpg", "0"]
    split_path.write_text(json.dumps(data))
    with pytest.raises(BenchmarkError, match=r"\[dtd\].*entry 1 of 'val'"):
        build_index(spec, tmp_path)
    del data["val"]
    split_path.write_text(json.dumps(data))
    with pytest.raises(BenchmarkError, match="has no 'val' list"):
        build_index(spec, tmp_path)
    split_path.write_text('{"train": [')  # an interrupted download
    with pytest.raises(BenchmarkError, match=r"\[dtd\] split file .* is not valid JSON"):
        build_index(spec, tmp_path)


def test_fgvc_labels_follow_variants_txt_not_sorting(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(benchmark_specs["fgvc_aircraft"], tmp_path, classes=5)
    variants = tmp_path / "fgvc_aircraft" / "variants.txt"
    order = ["An-12", "707-320", "ATR-42", "A300B4", "727-200"]
    variants.write_text("\n".join(order) + "\n")
    index = build_index(spec, tmp_path)
    assert label_classnames(index) == order
    variants.write_text("\n".join(order[:4]) + "\n")
    with pytest.raises(BenchmarkError, match="'727-200' is not listed in variants.txt"):
        build_index(spec, tmp_path)


def test_wnid_reader_rejects_folders_missing_from_classnames(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(benchmark_specs["imagenet_r"], tmp_path, classes=3)
    (tmp_path / "imagenet-rendition" / "imagenet-r" / "n09999999").mkdir()
    with pytest.raises(BenchmarkError, match=r"\[imagenet_r\].*n09999999.*classnames.txt"):
        build_index(spec, tmp_path)


def test_wnid_labels_come_from_the_first_split(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(benchmark_specs["imagenet"], tmp_path, classes=4)
    shutil.rmtree(tmp_path / "imagenet" / "images" / "val" / "n01443537")  # label 1's val
    index = build_index(spec, tmp_path)
    test = index.filter(pl.col("split") == "test")
    assert sorted(set(test["label"].to_list())) == [0, 2, 3]
    assert test.filter(pl.col("label") == 2)["classname"].unique().to_list() == ["great white shark"]


def test_numbered_reader_rejects_out_of_range_folders(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(benchmark_specs["imagenet_v2"], tmp_path, classes=3)
    (tmp_path / "imagenetv2" / spec.image_dir / "3").mkdir()
    with pytest.raises(BenchmarkError, match=r"\['3'\].*0\.\.2"):
        build_index(spec, tmp_path)


def index_frame(*columns: list) -> pl.DataFrame:
    return pl.DataFrame(dict(zip(INDEX_SCHEMA, columns, strict=True)), schema=INDEX_SCHEMA)


def test_label_classnames_requires_contiguous_labels_with_one_name() -> None:
    ok = index_frame(["train", "test", "train"], ["a", "b", "c"], [1, 0, 1], ["y", "x", "y"])
    assert label_classnames(ok) == ["x", "y"]
    with pytest.raises(ValueError, match="missing \\[1\\]"):
        label_classnames(index_frame(["train"] * 2, ["a", "b"], [0, 2], ["x", "z"]))
    with pytest.raises(ValueError, match="more than one class name"):
        label_classnames(index_frame(["train"] * 2, ["a", "b"], [0, 0], ["x", "z"]))
