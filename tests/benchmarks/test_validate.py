"""validate_index: structure and file checks stop with clear messages; tolerance drops a few."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from perl_pipeline.benchmarks import validate
from perl_pipeline.benchmarks.few_shot import draw_few_shot
from perl_pipeline.benchmarks.prepare import build_index
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.benchmarks.validate import (
    DataRootError,
    DatasetValidationError,
    check_data_root,
    check_drawn_images,
    check_image_file,
    default_workers,
    validate_index,
)
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


# ---- images that decode completely -------------------------------------------------------------


def write_truncated_jpeg(path: Path, keep: float = 0.6) -> None:
    """A real JPEG (noise, so every byte matters) cut to ``keep`` of its bytes: the header is intact."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    data = buffer.getvalue()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_jpeg_passes_verify_but_not_validation(dtd: tuple) -> None:
    root, spec, index = dtd
    bad = _paths(index, "test")[1]
    write_truncated_jpeg(root / bad)
    with Image.open(root / bad) as image:
        image.verify()  # what validation used to rely on: it accepts the truncated file
    with pytest.raises(DatasetValidationError) as err:
        validate_index(index, spec, root, workers=2)
    message = str(err.value)
    assert f"corrupt (1): {bad}" in message
    assert "truncated" in message
    assert "--params data_source.tolerance=1" in message


def test_train_images_get_a_header_check_at_preparation(dtd: tuple, caplog: pytest.LogCaptureFixture) -> None:
    root, spec, index = dtd
    shot = _paths(index, "train")[0]
    write_truncated_jpeg(root / shot)
    assert check_image_file(root / shot, "header") is None
    kind, reason = check_image_file(root / shot, "decode")
    assert kind == "corrupt" and "truncated" in reason
    with caplog.at_level(logging.INFO, logger="perl_pipeline.benchmarks.validate"):
        report = validate_index(index, spec, root, workers=2)
    assert report.corrupt == () and report.decode_checked
    assert any("files/s" in r.getMessage() and "(decode)" in r.getMessage() for r in caplog.records)
    assert any("(header)" in r.getMessage() for r in caplog.records)
    (root / _paths(index, "train")[1]).write_bytes(b"not an image")  # no readable header
    with pytest.raises(DatasetValidationError, match=rf"corrupt \(1\): {_paths(index, 'train')[1]}"):
        validate_index(index, spec, root)


def test_a_truncated_drawn_shot_is_caught_at_the_few_shot_stage(dtd: tuple) -> None:
    root, spec, index = dtd
    table = draw_few_shot(index, shots=2, seeds=[1])
    check_drawn_images(table, root, benchmark="dtd", workers=2)
    drawn = sorted(set(table.filter(pl.col("split") == "train")["path"].to_list()))
    write_truncated_jpeg(root / drawn[0])
    validate_index(index, spec, root)  # preparation only reads the train headers
    with pytest.raises(DatasetValidationError) as err:
        check_drawn_images(table, root, benchmark="dtd")
    message = str(err.value)
    assert f"corrupt (1): {drawn[0]}" in message and "truncated" in message
    assert "replace just those files" in message
    assert "kedro run --pipelines few_shot_splits --namespaces dtd" in message


def test_workers_come_from_the_machine() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers() == min(32, cores + 4)


# ---- advice that names the broken thing and a shell command --------------------------------------


def test_a_bad_split_file_is_named_and_only_it_is_to_be_replaced(dtd: tuple) -> None:
    root, spec, index = dtd
    with pytest.raises(DatasetValidationError) as err:
        validate_index(index, dataclasses.replace(spec, num_classes=5), root)
    message = str(err.value)
    split_file = root / "dtd" / "split_zhou_DescribableTextures.json"
    assert f"the index is read from {split_file}" in message
    assert "Replace just that file" in message and f"rm {split_file}" in message
    assert "kedro run --pipelines data_preparation --namespaces dtd" in message
    assert "drive.google.com" in message  # where the good copy comes from
    assert f"delete {root / 'dtd'}" not in message and "fetch_benchmark" not in message


def test_unreadable_files_are_a_permissions_problem_not_missing(
    dtd: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, spec, index = dtd
    locked_file = index["path"][0]  # listed first in the message
    locked_dir = str(root / Path(_paths(index, "val")[-1]).parent)
    assert not str(root / locked_file).startswith(locked_dir + os.sep)  # two separate cases
    real_stat, real_access = os.stat, os.access

    def stat(path, *args, **kwargs):  # a folder without read/search permission
        if os.fspath(path).startswith(locked_dir + os.sep):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    def access(path, mode, *args, **kwargs):  # a file without read permission
        if os.fspath(path) == str(root / locked_file):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(validate.os, "stat", stat)
    monkeypatch.setattr(validate.os, "access", access)
    prefix = _paths(index, "val")[-1].rsplit("/", 1)[0] + "/"
    locked = {p for p in index["path"].to_list() if p.startswith(prefix)} | {locked_file}
    with pytest.raises(DatasetValidationError) as err:
        validate_index(index, spec, root)
    message = str(err.value)
    assert "missing (" not in message
    assert f"unreadable, permission denied ({len(locked)})" in message
    assert f"chmod -R u+rX {root / 'dtd'}" in message
    report = validate_index(index, spec, root, tolerance=len(locked))
    assert set(report.unreadable) == locked and report.missing == report.corrupt == ()


def test_data_root_that_is_a_file_is_refused_before_any_work(dtd: tuple, tmp_path: Path) -> None:
    _, spec, index = dtd
    not_a_folder = tmp_path / "data_root.txt"
    not_a_folder.write_text("oops")
    with pytest.raises(DataRootError, match=rf"data_root is {not_a_folder}, which is not a folder"):
        validate_index(index, spec, not_a_folder)
    with pytest.raises(DataRootError, match="data_root"):
        check_data_root(not_a_folder)
    assert check_data_root(tmp_path / "not yet there") == tmp_path / "not yet there"
