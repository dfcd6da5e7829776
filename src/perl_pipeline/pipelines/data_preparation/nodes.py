"""Raw benchmark -> validated index table."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from perl_pipeline.benchmarks.prepare import build_index, fetch_benchmark, with_index_sizes
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.benchmarks.validate import check_data_root, validate_index
from perl_pipeline.config import DataSourceConfig
from perl_pipeline.fetch.extract import ExtractLimits
from perl_pipeline.toy.miniature import write_miniature

logger = logging.getLogger(__name__)


def prepare_benchmark(benchmark: dict, data_root: str, data_source: DataSourceConfig) -> pl.DataFrame:
    """Fetch (or generate, for the demo) the benchmark of `benchmark` (its parameters_benchmarks.yml
    block) under data_root, index it (split, path relative to data_root, label, classname) and
    validate it; DataRootError, before any work, if data_root is no folder."""
    root = check_data_root(Path(data_root))
    spec = BenchmarkSpec.from_params(benchmark)
    if data_source.kind == "miniature":
        spec = write_miniature(spec, root, **data_source.miniature)
    else:
        fetch_benchmark(
            spec,
            root,
            download=data_source.download,
            accept_checksum_mismatch=data_source.accept_checksum_mismatch,
            limits=ExtractLimits.from_settings(
                data_source.max_extracted_gb, data_source.max_compression_ratio
            ),
        )
    index = build_index(spec, root)
    spec = with_index_sizes(spec, index)  # image_folder: the sizes are its split file's
    report = validate_index(
        index, spec, root, tolerance=data_source.tolerance, check_decode=data_source.check_decode
    )
    index = report.index
    logger.info("%s: %d images in %d classes", spec.name, index.height, index["label"].n_unique())
    return index
