"""The data_preparation and few_shot_splits nodes, called directly (no Kedro session)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.benchmarks.prepare import build_index
from perl_pipeline.benchmarks.validate import DataRootError, DatasetValidationError
from perl_pipeline.config import DataSourceConfig, FewShotConfig
from perl_pipeline.pipelines.data_preparation.nodes import prepare_benchmark
from perl_pipeline.pipelines.few_shot_splits.nodes import draw_few_shot_splits
from perl_pipeline.pipelines.few_shot_splits.pipeline import create_pipeline
from perl_pipeline.toy.miniature import write_miniature
from tests.benchmarks.test_validate import write_truncated_jpeg


def test_prepare_refuses_a_data_root_that_is_a_file(tmp_path: Path, benchmark_params: dict) -> None:
    not_a_folder = tmp_path / "01_raw"
    not_a_folder.write_text("")
    source = DataSourceConfig(kind="miniature", miniature={"classes": 2})
    with pytest.raises(DataRootError, match=rf"data_root is {not_a_folder}, which is not a folder"):
        prepare_benchmark(benchmark_params["dtd"]["benchmark"], str(not_a_folder), source)


def test_few_shot_node_decodes_the_drawn_shots(tmp_path: Path, benchmark_specs: dict) -> None:
    spec = write_miniature(benchmark_specs["dtd"], tmp_path, classes=3)
    index = build_index(spec, tmp_path)
    shots = FewShotConfig(shots=2)
    table = draw_few_shot_splits(index, shots, str(tmp_path), DataSourceConfig(), seeds=(1,), benchmark="dtd")
    drawn = table.filter(pl.col("split") == "train")["path"][0]
    write_truncated_jpeg(tmp_path / drawn)
    with pytest.raises(DatasetValidationError, match=rf"(?s)\[dtd\].*corrupt \(1\): {drawn}.*Fix:"):
        draw_few_shot_splits(index, shots, str(tmp_path), DataSourceConfig(), seeds=(1,), benchmark="dtd")
    unchecked = DataSourceConfig(check_decode=False)  # the user opted out of decoding
    assert draw_few_shot_splits(index, shots, str(tmp_path), unchecked, seeds=(1,), benchmark="dtd").equals(
        table
    )


def test_few_shot_node_reads_data_root_and_data_source() -> None:
    (node,) = create_pipeline(["dtd"]).nodes
    assert node.inputs == ["dtd.index", "params:few_shot", "params:data_root", "params:data_source"]
    assert node.func.keywords["benchmark"] == "dtd"


def test_prepare_indexes_a_folder_of_your_own_with_its_split_file_sizes(tmp_path: Path) -> None:
    """image_folder through the node: no sizes in the block, the split file's are validated; a
    file that fails to decode is named, and dropped under the tolerance."""
    from tests.benchmarks.layouts.test_image_folder import BLOCK, images

    for name in ("owl", "cat"):
        images(tmp_path / "mine" / name, 10)
    index = prepare_benchmark(BLOCK, str(tmp_path), DataSourceConfig(download=False))
    assert dict(index.group_by("split").len().iter_rows()) == {"train": 10, "val": 4, "test": 6}
    assert index.sort("label")["classname"].unique(maintain_order=True).to_list() == ["cat", "owl"]
    test_file = index.filter(pl.col("split") == "test")["path"][0]
    write_truncated_jpeg(tmp_path / test_file)
    with pytest.raises(DatasetValidationError, match=test_file):
        prepare_benchmark(BLOCK, str(tmp_path), DataSourceConfig(download=False))
    tolerant = prepare_benchmark(BLOCK, str(tmp_path), DataSourceConfig(download=False, tolerance=1))
    assert tolerant.height == 19 and test_file not in tolerant["path"].to_list()


def test_prepare_names_a_single_class_folder(tmp_path: Path) -> None:
    from perl_pipeline.benchmarks.layouts.image_folder import ImageFolderError
    from tests.benchmarks.layouts.test_image_folder import BLOCK, images

    images(tmp_path / "mine" / "only", 6)
    with pytest.raises(ImageFolderError, match=r"\[mine\] .*mine holds a single class folder \('only'\)"):
        prepare_benchmark(BLOCK, str(tmp_path), DataSourceConfig(download=False))
