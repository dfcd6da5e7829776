"""Text features carry their recipe through the catalog (the hook decides whether they are current:
tests/pipelines/test_freshness_recipes.py)."""

from __future__ import annotations

import os

import pytest
import torch

from perl_pipeline.models import TextFeatures, class_text_features, text_features_recipe
from perl_pipeline.pipelines.datasets import TensorDictDataset

CLASSES = ["cat", "golden retriever", "banded"]
BACKBONE = {"model_name": "PERL-Tiny-ViT", "weights": "random:0"}


def _features(tiny_clip, tokenize, split_layer=2) -> TextFeatures:
    recipe = text_features_recipe(
        **BACKBONE, split_layer=split_layer, template="a photo of a {}.", classnames=CLASSES
    )
    tokens = tokenize([f"a photo of a {c}." for c in CLASSES])
    return class_text_features(
        tiny_clip, tokens, split_layer, torch.device("cpu"), classnames=CLASSES, recipe=recipe
    )


def test_round_trip_through_the_catalog_keeps_tensors_names_and_recipe(tiny_clip, tokenize, tmp_path):
    features = _features(tiny_clip, tokenize)
    dataset = TensorDictDataset(filepath=str(tmp_path / "text_features.safetensors"))
    dataset.save(features.to_dict())
    loaded = TextFeatures.from_dict(dataset.load())
    assert loaded.classnames == tuple(CLASSES) and loaded.recipe == features.recipe
    assert loaded.split_layer == 2 and loaded.fingerprint == features.fingerprint
    for key in ("tokens", "eos_index", "prefix", "zero_shot"):
        assert torch.equal(getattr(loaded, key), getattr(features, key))
    subset = loaded.text_prefix([2, 0])
    assert torch.equal(subset.states, features.prefix[[2, 0]])
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "text_features.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_features_without_a_recipe_are_refused_with_the_rebuild_command(tiny_clip, tokenize):
    data = _features(tiny_clip, tokenize).to_dict()
    del data["recipe"]
    with pytest.raises(ValueError, match="kedro run --pipelines text_features"):
        TextFeatures.from_dict(data)
