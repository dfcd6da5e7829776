"""Few-shot split + cached text prefix -> one seed's trained projectors and its training record."""

from __future__ import annotations

import logging

import polars as pl

from perl_pipeline.config import ClipConfig, PerlConfig, TrainConfig

logger = logging.getLogger(__name__)


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
    """Train PERL for every seed of one (benchmark, class subset), each on its own few-shot draw.

    With ``training.seeds_together`` the seeds train in one batched pass (each equal to training
    it alone up to float rounding), otherwise one after another.

    Returns:
        Per seed, in the order of `seeds`: the projector weights (a few KB) with their recipe, then
        a training record (steps, losses, time, device, the few-shot draw's rule, the projector
        init, the shortcuts used, the recipe and its fingerprint).
    """
    import torch

    from perl_pipeline.benchmarks.few_shot import few_shot_identity, few_shot_recipe_of, subset_labels
    from perl_pipeline.benchmarks.images import ImageFolderTable, image_size, train_transform
    from perl_pipeline.device import resolve_device
    from perl_pipeline.models import TextFeatures, backbone_identity, build_perl, load_backbone
    from perl_pipeline.provenance import fingerprint
    from perl_pipeline.training import projector_recipe, train_seeds

    features, backbone_id = TextFeatures.from_dict(text_features), backbone_identity(clip)
    classes = subset_labels(subset, len(features.classnames))
    backbone = load_backbone(clip)
    transform = train_transform(image_size(backbone), training.crop_scale)
    models, images = {}, {}
    for seed in seeds:
        rows = few_shot.filter(
            (pl.col("seed") == seed) & (pl.col("subset") == subset) & (pl.col("split") == "train")
        ).sort("path")
        if rows.is_empty():
            raise ValueError(f"{benchmark}: the few-shot table has no {subset} training rows for seed {seed}")
        models[seed] = build_perl(backbone, perl, seed=seed)
        images[seed] = ImageFolderTable(
            data_root, rows["path"], rows["label"], transform, benchmark=benchmark
        )
    target = resolve_device(device)
    results = train_seeds(models, images, features.text_prefix(classes), training, device=target)
    together = training.seeds_together and len(seeds) > 1
    shortcuts = {
        "last_block_readout_only": all(m.last_block_readout_only for m in models.values()),
        "seeds_together": list(seeds) if together else False,
    }
    outputs = []
    for seed in seeds:
        model, result = models[seed], results[seed]
        recipe = projector_recipe(
            backbone_id,
            perl,
            training,
            subset=subset,
            seed=seed,
            few_shot=few_shot_identity(few_shot, seed),
            text_features=features.fingerprint,
        )
        record = {
            "benchmark": benchmark,
            "subset": subset,
            "seed": seed,
            "images": len(images[seed]),
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
            "few_shot_draw": few_shot_recipe_of(few_shot, seed)["draw"],
            "projector_init": perl.projector_init,
            "shortcuts": shortcuts,
            "recipe": recipe,
            "projector": fingerprint(recipe),
        }
        outputs += [model.projector_state_dict() | {"recipe": recipe}, record]
    return outputs
