"""Test images + every seed's projectors -> accuracy, alignment and dynamics per step (one image pass)."""

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
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Evaluate all seeds on the benchmark's test split.

    Args:
        projectors: one state dict (with its recipe) per seed, in the order of `seeds`.
        subsets: ("base", "novel") for base-to-novel (each with its own classifier), ("all",)
            for cross-dataset and domain generalisation.

    Returns:
        The long per-run table (benchmark, seed, subset, step, accuracy, ...) with the
        identities of the projectors and text features it scored, and the confidence
        trajectories (`evaluate_with_trajectories`).
    """
    from perl_pipeline.benchmarks.few_shot import subset_labels
    from perl_pipeline.benchmarks.images import ImageFolderTable, image_size, test_transform
    from perl_pipeline.device import resolve_device
    from perl_pipeline.evaluation.evaluate import evaluate_with_trajectories
    from perl_pipeline.models import TextFeatures, build_perl, load_backbone
    from perl_pipeline.provenance import fingerprint

    if len(projectors) != len(seeds):
        raise ValueError(f"{len(projectors)} projector sets for seeds {seeds}")
    features = TextFeatures.from_dict(text_features)
    backbone = load_backbone(clip)
    models, identities = {}, {}
    for seed, state in zip(seeds, projectors, strict=True):
        models[seed] = build_perl(backbone, perl, seed=seed)
        models[seed].load_projector_state_dict({k: v for k, v in state.items() if k != "recipe"})
        identities[seed] = fingerprint(state.get("recipe"))
    test = index.filter(pl.col("split") == "test").sort("path")
    images = ImageFolderTable(
        data_root, test["path"], test["label"], test_transform(image_size(backbone)), benchmark=benchmark
    )
    class_sets = {name: list(subset_labels(name, len(features.classnames))) for name in subsets}
    runs, trajectories = evaluate_with_trajectories(
        models,
        images,
        features.text_prefix(),
        class_sets,
        evaluation,
        device=resolve_device(device),
        benchmark=benchmark,
    )
    runs = runs.with_columns(
        projector=pl.col("seed").replace_strict(identities, return_dtype=pl.String),
        text_features=pl.lit(features.fingerprint),
    )
    return runs, trajectories


def package_adapters(
    text_features: dict,
    runs: pl.DataFrame,
    clip: ClipConfig,
    perl: PerlConfig,
    *projectors: dict,
    benchmark: str,
    subset: str,
    seeds: tuple[int, ...],
) -> list[dict]:
    """One self-describing adapter per seed (`models.Adapter`): its projectors, the backbone's
    identity, the PERL settings, the prompt template, the trained class names, the training
    recipe and the seed's headline metrics from `runs`.

    Returns:
        `Adapter.to_dict()` per seed, in the order of `seeds`.
    """
    from pathlib import Path

    from perl_pipeline.benchmarks.few_shot import subset_labels
    from perl_pipeline.evaluation.headline import headline_metrics
    from perl_pipeline.models import TextFeatures, backbone_identity, make_adapter

    if len(projectors) != len(seeds):
        raise ValueError(f"{len(projectors)} projector sets for seeds {seeds}")
    features = TextFeatures.from_dict(text_features)
    classnames = [features.classnames[label] for label in subset_labels(subset, len(features.classnames))]
    pretrained = clip.pretrained
    if pretrained is not None and Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())  # a file: where it is, from anywhere
    backbone = backbone_identity(clip) | {"pretrained": pretrained}
    adapters = []
    for seed, state in zip(seeds, projectors, strict=True):
        adapter = make_adapter(
            state,
            backbone=backbone,
            perl=vars(perl),
            template=features.recipe["template"],
            classnames=classnames,
            metrics=headline_metrics(runs, seed),
            benchmark=benchmark,
            subset=subset,
            seed=seed,
            benchmark_classnames=list(features.classnames),
        )
        adapters.append(adapter.to_dict())
    return adapters
