"""Test images + every seed's projectors -> accuracy and alignment per step (one image pass)."""

from __future__ import annotations

import polars as pl

from perl_pipeline.config import ClipConfig, EvalConfig, PerlConfig


def evaluate_benchmark(
    index: pl.DataFrame,
    text_features: dict,
    data_root: str,
    clip: ClipConfig,
    perl: PerlConfig,
    evaluation: EvalConfig,
    device: str,
    *projectors: dict,
    benchmark: str,
    subsets: tuple[str, ...],
    seeds: tuple[int, ...],
) -> pl.DataFrame:
    """Evaluate all seeds on the benchmark's test split.

    Args:
        projectors: one state dict per seed, in the order of `seeds`.
        subsets: ("base", "novel") for base-to-novel (each with its own classifier), ("all",)
            for cross-dataset and domain generalisation.

    Returns:
        The long per-run table (benchmark, seed, subset, step, accuracy, ...).
    """
    from perl_pipeline.benchmarks.few_shot import subset_labels
    from perl_pipeline.benchmarks.images import ImageFolderTable, image_size, test_transform
    from perl_pipeline.device import resolve_device
    from perl_pipeline.evaluation.evaluate import evaluate_seeds
    from perl_pipeline.models import build_perl, load_backbone, text_prefix_of

    if len(projectors) != len(seeds):
        raise ValueError(f"{len(projectors)} projector sets for seeds {seeds}")
    backbone = load_backbone(clip)
    models = {}
    for seed, state in zip(seeds, projectors, strict=True):
        models[seed] = build_perl(backbone, perl, seed=seed)
        models[seed].load_projector_state_dict(state)
    test = index.filter(pl.col("split") == "test").sort("path")
    images = ImageFolderTable(data_root, test["path"], test["label"], test_transform(image_size(backbone)))
    num_classes = text_features["prefix"].shape[0]
    class_sets = {subset: list(subset_labels(subset, num_classes)) for subset in subsets}
    return evaluate_seeds(
        models,
        images,
        text_prefix_of(text_features),
        class_sets,
        evaluation,
        device=resolve_device(device),
        benchmark=benchmark,
    )
