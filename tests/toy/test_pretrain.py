"""Contrastive pretraining: CLIP's loss, its settings, and a short run that learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from perl_pipeline.toy.config import PretrainConfig
from perl_pipeline.toy.pretrain import contrastive_loss, pretrain_clip


def test_contrastive_loss_is_clips_symmetric_cross_entropy() -> None:
    torch.manual_seed(0)
    image, text, scale = torch.randn(6, 8), torch.randn(6, 8), torch.tensor(math.log(10.0))
    logits = 10.0 * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(contrastive_loss(image, text, scale), expected)
    aligned = torch.eye(6, 8)
    assert contrastive_loss(aligned, 3 * aligned, torch.tensor(math.log(100.0))) < 1e-3


def _pairs(n: int, seed: int = 0):
    import open_clip

    from perl_pipeline.toy import world as toy_world

    chosen = ["red circle", "blue square", "green triangle", "yellow star"]
    scenes = toy_world.sample_scenes(chosen, n, toy_world.Shift(), seed=seed)
    captions = [f"a photo of a {c} {s}." for c, s in zip(scenes["colour"], scenes["shape"], strict=True)]
    tokens = open_clip.get_tokenizer("PERL-Toy-ViT")(captions)
    return toy_world.RenderedScenes(scenes, tokens, 64, toy_world.Shift())


def test_a_short_run_lowers_the_contrastive_loss() -> None:
    from perl_pipeline.models import load_clip

    model = load_clip("PERL-Toy-ViT", None, init_seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = PretrainConfig(steps=60, batch_size=32, lr=3e-3, warmup=5, log_every=20, num_workers=0)
    result = pretrain_clip(model, _pairs(640), config, torch.device("cpu"))
    assert len(result.loss) == 60 and not model.training
    first, last = sum(result.loss[:10]) / 10, sum(result.loss[-10:]) / 10
    # measured: 3.47 -> 1.18 (32-way in-batch, 4 concepts: ~8 true pairs per caption)
    assert last < first - 1.0, (first, last)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "visual.conv1.weight" in changed and "token_embedding.weight" in changed
    assert 0 < result.logit_scale <= 100.0


def test_too_few_pairs_for_one_batch() -> None:
    from perl_pipeline.models import load_clip

    with pytest.raises(ValueError, match="cannot fill one batch"):
        pretrain_clip(
            load_clip("PERL-Toy-ViT", None),
            _pairs(8),
            PretrainConfig(batch_size=16, num_workers=0),
            torch.device("cpu"),
        )
