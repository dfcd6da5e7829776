"""Class prompts -> tokens, zero-shot class embeddings and frozen text prefix states, with their recipe."""

from __future__ import annotations

import logging

import open_clip
import polars as pl

from perl_pipeline.benchmarks.index import label_classnames
from perl_pipeline.config import ClipConfig
from perl_pipeline.device import resolve_device
from perl_pipeline.models import backbone_identity, class_text_features, load_backbone, text_features_recipe

logger = logging.getLogger(__name__)


def encode_class_prompts(
    index: pl.DataFrame, template: str, clip: ClipConfig, split_layer: int | list[int], device: str
) -> dict:
    """Fill the benchmark's template with each class name (label order) and encode the prompts once:
    `TextFeatures.to_dict()`, with the recipe (backbone, weights, J, template, class list) that any
    later use is checked against."""
    classnames = label_classnames(index)
    prompts = [template.format(name.replace("_", " ")) for name in classnames]
    identity = backbone_identity(clip)
    recipe = text_features_recipe(
        identity["model_name"], identity["weights"], split_layer, template, classnames
    )
    backbone = load_backbone(clip)
    tokens = open_clip.get_tokenizer(clip.model_name)(prompts)
    features = class_text_features(
        backbone, tokens, split_layer, resolve_device(device), classnames=classnames, recipe=recipe
    )
    logger.info("%d class prompts, e.g. %r", len(prompts), prompts[0])
    return features.to_dict()
