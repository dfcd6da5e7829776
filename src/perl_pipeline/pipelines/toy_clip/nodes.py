"""Pairs -> pretrained weights -> zero-shot probe of the toy world's CLIP."""

from __future__ import annotations

import logging

import open_clip
import polars as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from perl_pipeline.device import resolve_device
from perl_pipeline.models import image_size, load_clip
from perl_pipeline.toy import world as toy_world
from perl_pipeline.toy.config import PretrainConfig, ToyClipConfig  # imports torch and open_clip already
from perl_pipeline.toy.pretrain import pretrain_clip

logger = logging.getLogger(__name__)


def make_pretraining_pairs(toy_clip: ToyClipConfig) -> pl.DataFrame:
    """Scenes of every concept but the held-out ones, each with a caption (one row per pair)."""
    seen = _seen_concepts(toy_clip)
    scenes = toy_world.sample_scenes(seen, toy_clip.pairs, toy_world.Shift(), toy_clip.seed)
    texts = toy_world.captions(scenes, toy_world.CaptionStyle(toy_clip.templates), toy_clip.seed + 1)
    held_out = len(toy_clip.held_out)
    logger.info(
        "%d pairs over %d concepts (%d held out), e.g. %r", scenes.height, len(seen), held_out, texts[0]
    )
    return scenes.with_columns(caption=pl.Series(texts))


def pretrain_toy_clip(
    pairs: pl.DataFrame, toy_clip: ToyClipConfig, pretraining: PretrainConfig, device: str
) -> tuple[dict, dict]:
    """Pretrain `toy_clip.model_name` from random weights on the pairs, contrastively: its weights
    (fp16, a few MB) and its record (`PretrainResult.record`)."""
    model = load_clip(toy_clip.model_name, None, init_seed=toy_clip.init_seed)
    tokens = open_clip.get_tokenizer(toy_clip.model_name)(pairs["caption"].to_list())
    dataset = toy_world.RenderedScenes(pairs, tokens, image_size(model), toy_world.Shift())
    target = resolve_device(device)
    result = pretrain_clip(model, dataset, pretraining, target)
    record = result.record(
        toy_clip.model_name, pairs.height, pretraining.log_every, str(target), pretraining.model_dump()
    )
    loss = result.loss
    logger.info(
        "pretrained %s in %.0f s: loss %.3f -> %.3f", toy_clip.model_name, result.seconds, loss[0], loss[-1]
    )
    weights = {name: value.detach().to(torch.float16) for name, value in model.state_dict().items()}
    return weights, record


def probe_toy_clip(weights: dict, toy_clip: ToyClipConfig, device: str) -> dict:
    """Zero-shot top-1 over all 64 concepts, on seen and held-out concepts, in the pretraining
    world and in the demo's shifted world (chance 1/64)."""
    model = load_clip(toy_clip.model_name, None)
    model.load_state_dict(weights)
    target = resolve_device(device)
    model.to(target)
    classes = toy_world.concepts()
    tokenizer = open_clip.get_tokenizer(toy_clip.model_name)
    with torch.no_grad():
        text = F.normalize(
            model.encode_text(tokenizer([toy_clip.probe_template.format(c) for c in classes]).to(target)),
            dim=-1,
        )
    worlds = {"pretraining": toy_world.Shift(), "shifted": toy_world.Shift(**toy_clip.shifted)}
    metrics = {"chance": 1 / len(classes)}
    for world, shift in worlds.items():
        for group, concepts in (("seen", _seen_concepts(toy_clip)), ("held_out", list(toy_clip.held_out))):
            if concepts:
                scenes = toy_world.sample_scenes(concepts, toy_clip.probe_images, shift, toy_clip.seed + 2)
                metrics[f"zero_shot_{world}_{group}"] = _accuracy(model, text, scenes, shift, classes, target)
    logger.info(
        "zero-shot probe of %s: %s", toy_clip.model_name, {k: round(v, 4) for k, v in metrics.items()}
    )
    return metrics


def _seen_concepts(toy_clip: ToyClipConfig) -> list[str]:
    """The concepts pretraining shows: all but the held-out ones."""
    return [c for c in toy_world.concepts() if c not in toy_clip.held_out]


def _accuracy(model, text, scenes: pl.DataFrame, shift, classes: list[str], device) -> float:
    """Top-1 of the image features of `scenes` against the class embeddings `text` [C, D]."""
    labels = torch.tensor(
        [classes.index(f"{c} {s}") for c, s in zip(scenes["colour"], scenes["shape"], strict=True)]
    )
    images = toy_world.RenderedScenes(scenes, labels, image_size(model), shift)
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(images, batch_size=256):
            predicted = (F.normalize(model.encode_image(x.to(device)), dim=-1) @ text.T).argmax(dim=-1)
            correct += int((predicted.cpu() == y).sum())
    return correct / len(images)
