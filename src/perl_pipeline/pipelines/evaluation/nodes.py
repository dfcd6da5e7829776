"""Test images + every seed's projectors -> accuracy, alignment and dynamics per step (one image pass)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from perl_pipeline.benchmarks.few_shot import subset_labels
from perl_pipeline.config import ClipConfig, EvalConfig, PerlConfig
from perl_pipeline.evaluation.evaluate import evaluate_projectors
from perl_pipeline.evaluation.headline import headline_metrics
from perl_pipeline.models import TextFeatures, backbone_identity, make_adapter
from perl_pipeline.pipelines.training.pipeline import projector


def evaluate_benchmark(
    index: pl.DataFrame,
    text_features: dict,
    data_root: str,
    clip: ClipConfig,
    perl: PerlConfig,
    evaluation: EvalConfig,
    device: str,
    *,
    benchmark: str,
    subsets: tuple[str, ...],
    seeds: tuple[int, ...],
    **projectors: dict,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score every seed's ``projector_<subset>_seed_<seed>`` on the test split, per subset
    (("base", "novel") or ("all",)): the per-run table (benchmark, seed, subset, step, accuracy,
    ...) and the trajectories."""
    trained_subset = "base" if "base" in subsets else "all"  # base-to-novel trains on base classes
    states = {seed: projectors[projector(trained_subset, seed)] for seed in seeds}
    return evaluate_projectors(
        states,
        index,
        TextFeatures.from_dict(text_features),
        data_root,
        clip,
        perl,
        evaluation,
        device=device,
        benchmark=benchmark,
        subsets=subsets,
    )


def package_adapters(
    text_features: dict,
    runs: pl.DataFrame,
    clip: ClipConfig,
    perl: PerlConfig,
    *,
    benchmark: str,
    subset: str,
    seeds: tuple[int, ...],
    **projectors: dict,
) -> list[dict]:
    """One `models.Adapter.to_dict()` per seed, in the order of `seeds`: its projectors, the
    backbone, PERL settings, template, trained class names, recipe and headline metrics."""
    features = TextFeatures.from_dict(text_features)
    labels = subset_labels(subset, len(features.classnames))
    pretrained = clip.pretrained
    if pretrained is not None and Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())  # a file: where it is, from anywhere
    backbone = backbone_identity(clip) | {"pretrained": pretrained}
    return [
        make_adapter(
            projectors[projector(subset, seed)],
            backbone=backbone,
            perl=vars(perl),
            template=features.recipe["template"],
            classnames=[features.classnames[label] for label in labels],
            metrics=headline_metrics(runs, seed),
            benchmark=benchmark,
            subset=subset,
            seed=seed,
            benchmark_classnames=list(features.classnames),
        ).to_dict()
        for seed in seeds
    ]
