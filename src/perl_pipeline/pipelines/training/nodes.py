"""Few-shot split + cached text prefix -> one seed's trained projectors and its training record."""

from __future__ import annotations

import logging

import polars as pl

from perl_pipeline.config import ClipConfig, PerlConfig, TrainConfig

logger = logging.getLogger(__name__)


def train_seed(
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
    seed: int,
) -> tuple[dict, dict]:
    """Train PERL for one (benchmark, class subset, seed) on its few-shot draw.

    Returns:
        The projector weights (a few KB) and a training record: steps, losses, time, device,
        configuration and the hashes of the inputs.
    """
    import torch

    from perl_pipeline.benchmarks.few_shot import check_fresh, subset_labels
    from perl_pipeline.benchmarks.images import ImageFolderTable, image_size, train_transform
    from perl_pipeline.device import resolve_device
    from perl_pipeline.evaluation.evaluate import select_prefix
    from perl_pipeline.models import build_perl, load_backbone, text_prefix_of
    from perl_pipeline.training import train_projectors

    check_fresh(few_shot, index)
    rows = few_shot.filter(
        (pl.col("seed") == seed) & (pl.col("subset") == subset) & (pl.col("split") == "train")
    ).sort("path")
    if rows.is_empty():
        raise ValueError(f"{benchmark}: the few-shot table has no {subset} training rows for seed {seed}")
    classes = subset_labels(subset, text_features["prefix"].shape[0])
    backbone = load_backbone(clip)
    model = build_perl(backbone, perl, seed=seed)
    images = ImageFolderTable(
        data_root,
        rows["path"],
        rows["label"],
        train_transform(image_size(backbone), training.crop_scale),
    )
    target = resolve_device(device)
    result = train_projectors(
        model,
        images,
        select_prefix(text_prefix_of(text_features), classes),
        training,
        seed=seed,
        device=target,
    )
    record = {
        "benchmark": benchmark,
        "subset": subset,
        "seed": seed,
        "images": len(images),
        "classes": len(classes),
        "steps": result.steps,
        "final_loss": result.loss[-1] if result.loss else None,
        "loss": result.loss,
        "ce": result.ce,
        "anchor": result.anchor,
        "seconds": round(result.seconds, 3),
        "device": str(target) if target.type != "cuda" else torch.cuda.get_device_name(target),
        "trainable_parameters": sum(p.numel() for p in model.trainable_parameters()),
        "config": {
            "clip": vars(clip),
            "perl": {**vars(perl), "modalities": list(perl.modalities)},
            "training": {**vars(training), "crop_scale": list(training.crop_scale)},
        },
        "few_shot_source_hash": few_shot["source_hash"][0],
    }
    return model.projector_state_dict(), record
