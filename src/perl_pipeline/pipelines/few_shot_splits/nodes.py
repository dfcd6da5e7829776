"""Index -> seeded few-shot draws with base / novel / all subsets."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from perl_pipeline.config import FewShotConfig


def draw_few_shot_splits(
    index: pl.DataFrame, few_shot: FewShotConfig, *, seeds: Sequence[int]
) -> pl.DataFrame:
    """K shots per class for every seed (one all-class draw per seed, then base / novel / all).

    The table carries the content hash of the index it was drawn from, so a changed split file
    can never silently reuse a stale draw.
    """
    from perl_pipeline.benchmarks.few_shot import draw_few_shot

    return draw_few_shot(index, shots=few_shot.shots, seeds=seeds)
