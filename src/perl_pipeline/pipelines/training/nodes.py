"""Few-shot split + cached text prefix -> every seed's trained projectors and training record."""

from __future__ import annotations

import polars as pl

from perl_pipeline.config import ClipConfig, PerlConfig, TrainConfig


def train_seeds(
    index: pl.DataFrame,
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
    """Train PERL for every seed of one (benchmark, class subset), each on its own few-shot draw.

    Returns:
        Per seed, in the order of `seeds`: its projectors (with their recipe), then its training record.
    """
    from perl_pipeline.benchmarks.few_shot import check_fresh
    from perl_pipeline.pipelines._inputs import checked_text_features
    from perl_pipeline.training import train_subset

    check_fresh(few_shot, index)
    features, backbone_id = checked_text_features(text_features, index, clip, perl.split_layer, benchmark)
    trained = train_subset(
        few_shot,
        features,
        backbone_id,
        data_root,
        clip,
        perl,
        training,
        device,
        benchmark=benchmark,
        subset=subset,
        seeds=seeds,
    )
    return [output for pair in trained for output in pair]
