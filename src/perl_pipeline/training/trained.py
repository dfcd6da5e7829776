"""Every seed of one (benchmark, class subset) trained on its own few-shot draw, with its record."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import torch

from perl_pipeline.benchmarks.few_shot import few_shot_recipe_of, subset_labels
from perl_pipeline.benchmarks.images import ImageFolderTable, train_transform
from perl_pipeline.config import ClipConfig, PerlConfig, TrainConfig
from perl_pipeline.device import resolve_device
from perl_pipeline.models import TextFeatures, backbone_identity, build_perl, image_size, load_backbone
from perl_pipeline.provenance import IGNORED, fingerprint


def train_subset(
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
    seeds: Sequence[int],
) -> list[dict]:
    """Train PERL for every seed of (benchmark, subset) on its own few-shot draw (`train_seeds`);
    per seed, in the order of `seeds`: its projector weights (a few KB) with their recipe, then its
    training record. `text_features`: `TextFeatures.to_dict`'s form, as the catalog loads it."""
    from perl_pipeline.training import train_seeds  # looked up when called: tests replace it

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
    shortcuts = {
        "last_block_readout_only": all(m.last_block_readout_only for m in models.values()),
        "seeds_together": list(seeds) if training.seeds_together and len(seeds) > 1 else False,
    }
    sections = {"clip": clip, "perl": perl, "training": training}
    outputs = []
    for seed in seeds:
        model, result = models[seed], results[seed]
        recipe = {  # everything that determines the seed's projectors (no setting that changes no weight)
            "backbone": backbone_id,
            "perl": perl.model_dump(),
            "training": training.model_dump(exclude=set(IGNORED["training"])),
            "subset": subset,
            "seed": int(seed),
            "few_shot": fingerprint(few_shot_recipe_of(few_shot, seed)),
            "text_features": features.fingerprint,
        }
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
            "config": {name: section.model_dump(mode="json") for name, section in sections.items()},
            "few_shot_source_hash": few_shot["source_hash"][0],
            "few_shot_draw": few_shot_recipe_of(few_shot, seed)["draw"],
            "projector_init": perl.projector_init,
            "shortcuts": shortcuts,
            "recipe": recipe,
            "projector": fingerprint(recipe),
        }
        outputs += [model.projector_state_dict() | {"recipe": recipe}, record]
    return outputs
