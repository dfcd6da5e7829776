"""Index -> seeded few-shot draws with base / novel / all subsets."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import polars as pl

from perl_pipeline.benchmarks.few_shot import draw_few_shot
from perl_pipeline.benchmarks.validate import check_drawn_images
from perl_pipeline.config import DataSourceConfig, FewShotConfig

logger = logging.getLogger(__name__)


def draw_few_shot_splits(
    index: pl.DataFrame,
    few_shot: FewShotConfig,
    data_root: str,
    data_source: DataSourceConfig,
    *,
    seeds: Sequence[int],
    benchmark: str,
) -> pl.DataFrame:
    """K shots per class for every seed (one all-class draw per seed, then base / novel / all),
    by the rule ``few_shot.draw`` (``coop``: CoOp's images; ``sorted``), with the content hash of
    the index. Every drawn image is then decoded completely, unless data_source.check_decode is
    false (`DatasetValidationError` names any that is missing, unreadable or does not decode)."""
    table = draw_few_shot(index, shots=few_shot.shots, seeds=seeds, draw=few_shot.draw)
    if data_source.check_decode:
        check_drawn_images(table, data_root, benchmark=benchmark)
    else:
        logger.info("[%s] drawn images not decoded (data_source.check_decode is false)", benchmark)
    return table
