"""validate_index: structure and file checks stop with clear messages; tolerance drops a few."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.benchmarks.prepare import build_index
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.benchmarks.validate import DatasetValidationError, validate_index
from perl_pipeline.toy.miniature import write_miniature


@pytest.fixture
def dtd(tmp_path: Path, benchmark_specs: dict) -> tuple[Path, BenchmarkSpec, pl.DataFrame]:
    """A private DTD miniature (tests may damage it): (data_root, spec, index)."""
    spec = write_miniature(benchmark_specs["dtd"], tmp_path, classes=4)
    return tmp_path, spec, build_index(spec, tmp_path)


def _paths(index: pl.DataFrame, split: str) -> list[str]:
    return sorted(index.filter(pl.col("split") == split)["path"].to_list())


def test_valid_index_passes_with_a_report(dtd: tuple) -> None:
    root, spec, index = dtd
    report = validate_index(index, spec, root, workers=2)
    assert (report.benchmark, report.num_files, report.num_classes) == ("dtd", 36, 4)
    assert report.split_sizes == {"train": 16, "val": 8, "test": 12}
    assert report.missing == report.corrupt == ()
    assert report.to_dict()["split_sizes"] == {"train": 16, "val": 8, "test": 12}


def test_missing_file_stops_with_name_and_fix(dtd: tuple) -> None:
    root, spec, index = dtd
    gone = _paths(index, "test")[0]
    (root / gone).unlink()
    with pytest.raises(DatasetValidationError) as err:
        validate_index(index, spec, root)
    message = str(err.value)
    assert "[dtd] 1 of 36 listed image files are missing or unreadable (tolerance 0)" in message
    assert f"missing (1): {gone}" in message
    assert "kedro run --pipelines data_preparation --namespaces dtd" in message
    assert "--params data_source.tolerance=1" in message
    assert "fetch_benchmark" not in message  # a shell command, not a Python function


def test_corrupt_image_stops_with_name(dtd: tuple) -> None:
    root, spec, index = dtd
    bad = _paths(index, "train")[2]
    (root / bad).write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetValidationError, match=rf"corrupt \(1\): {bad}"):
        validate_index(index, spec, root)


def test_many_bad_files_are_listed_first_five_plus_count(dtd: tuple) -> None:
    root, spec, index = dtd
    gone = _paths(index, "train")[:8]
    for path in gone:
        (root / path).unlink()
    with pytest.raises(DatasetValidationError) as err:
        validate_index(index, spec, root)
    assert f"missing (8): {', '.join(gone[:5])} (and 3 more)" in str(err.value)


def test_tolerance_drops_a_corrupt_file_with_a_warning(dtd: tuple, caplog: pytest.LogCaptureFixture) -> None:
    root, spec, index = dtd
    bad = _paths(index, "val")[0]
    (root / bad).write_bytes(b"\xff\xd8 truncated")
    with caplog.at_level(logging.WARNING, logger="perl_pipeline.benchmarks.validate"):
        report = validate_index(index, spec, root, tolerance=1)
    assert report.corrupt == (bad,) and report.dropped == (bad,)
    assert report.index.height == index.height - 1
    assert bad not in report.index["path"].to_list()
    assert report.split_sizes["val"] == 7
    assert any("dropping 1 bad file" in r.getMessage() and bad in r.getMessage() for r in caplog.records)
    (root / _paths(index, "test")[0]).unlink()
    with pytest.raises(DatasetValidationError, match="2 of 36 .* \\(tolerance 1\\)"):
        validate_index(index, spec, root, tolerance=1)


def test_existence_only_check_ignores_decoding(dtd: tuple) -> None:
    root, spec, index = dtd
    (root / _paths(index, "train")[0]).write_bytes(b"garbage")
    assert validate_index(index, spec, root, check_decode=False).corrupt == ()
    (root / _paths(index, "train")[1]).unlink()
    with pytest.raises(DatasetValidationError, match="missing \\(1\\)"):
        validate_index(index, spec, root, check_decode=False)


def test_wrong_class_count_stops(dtd: tuple) -> None:
    root, spec, index = dtd
    with pytest.raises(DatasetValidationError) as err:
        validate_index(index, dataclasses.replace(spec, num_classes=5), root)
    message = str(err.value)
    assert "[dtd] the index does not match the protocol" in message
    assert "found 4 classes, the protocol says 5; labels missing: 4" in message
    assert "Fix:" in message


def test_wrong_split_size_stops(dtd: tuple) -> None:
    root, spec, index = dtd
    sizes = {**spec.split_sizes, "train": 17}
    with pytest.raises(
        DatasetValidationError, match="split 'train' has 16 images, the protocol says 17 \\(-1\\)"
    ):
        validate_index(index, dataclasses.replace(spec, split_sizes=sizes), root)


def test_unexpected_and_missing_splits_stop(dtd: tuple) -> None:
    root, spec, index = dtd
    renamed = index.with_columns(pl.col("split").replace({"val": "dev"}))
    with pytest.raises(DatasetValidationError) as err:
        validate_index(renamed, spec, root)
    assert "split 'dev' has 8 images but the protocol has no such split" in str(err.value)
    assert "split 'val' has 0 images, the protocol says 8" in str(err.value)


def test_a_split_missing_a_class_stops(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(
        benchmark_specs["imagenet"], tmp_path, classes=3, per_class={"train": 2, "test": 2}
    )
    shutil.rmtree(tmp_path / "imagenet" / "images" / "val" / "n01443537")
    index = build_index(spec, tmp_path)
    spec = dataclasses.replace(spec, split_sizes={"train": 6, "test": 4})
    with pytest.raises(DatasetValidationError, match="split 'test' covers 2 of 3 classes"):
        validate_index(index, spec, tmp_path)


def test_inconsistent_names_and_bad_columns_stop(dtd: tuple) -> None:
    root, spec, index = dtd
    renamed = index.with_columns(
        pl.when(pl.col("path") == _paths(index, "test")[0])
        .then(pl.lit("other"))
        .otherwise(pl.col("classname"))
        .alias("classname")
    )
    with pytest.raises(DatasetValidationError, match="labels with more than one class name"):
        validate_index(renamed, spec, root)
    with pytest.raises(DatasetValidationError, match="columns must be"):
        validate_index(index.with_columns(pl.col("label").cast(pl.Int32)), spec, root)
