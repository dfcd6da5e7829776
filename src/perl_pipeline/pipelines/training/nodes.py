"""Few-shot split + cached text prefix -> every seed's trained projectors and training record."""

from __future__ import annotations

import polars as pl

from perl_pipeline.config import ClipConfig, PerlConfig, TrainConfig
from perl_pipeline.training import train_subset


def train_seeds(
    few_shot: pl.DataFrame,
    text_features: dict,
    data_root: str,
    clip: ClipConfig,
    perl: PerlConfig,
    training: TrainConfig,
    device: str,
    *,
    benchmark: str,
    subset: str,
    seeds: tuple[int, ...],
) -> list[dict]:
    """Train PERL for every seed of one (benchmark, class subset), each on its own few-shot draw:
    per seed, in the order of `seeds`, its projectors (with their recipe), then its training record."""
    return train_subset(
        few_shot,
        text_features,
        data_root,
        clip,
        perl,
        training,
        device,
        benchmark=benchmark,
        subset=subset,
        seeds=seeds,
    )
