"""The loss and logits of docs/method.md §3."""

from __future__ import annotations

import math

import torch

from perl_pipeline.models import clip_logits, perl_loss


def test_logits_are_scaled_cosines():
    v, t = torch.randn(3, 8), torch.randn(5, 8)
    logits = clip_logits(v, t, torch.tensor(100.0))
    expected = 100.0 * torch.nn.functional.cosine_similarity(v[:, None], t[None], dim=-1)
    torch.testing.assert_close(logits, expected)


def test_loss_is_ce_at_step_k_plus_image_anchor():
    g = torch.Generator().manual_seed(0)
    image_steps, text_steps = torch.randn(5, 4, 8, generator=g), torch.randn(5, 3, 8, generator=g)
    labels = torch.tensor([0, 2, 1, 1])
    loss = perl_loss(image_steps, text_steps, labels, torch.tensor(50.0), anchor_weight=0.5)
    ce = torch.nn.functional.cross_entropy(clip_logits(image_steps[4], text_steps[4], 50.0), labels)
    cos = torch.nn.functional.cosine_similarity(image_steps[0], image_steps[4], dim=-1).mean()
    torch.testing.assert_close(loss.ce, ce)
    torch.testing.assert_close(loss.anchor, 1 - cos)
    torch.testing.assert_close(loss.total, ce + 0.5 * (1 - cos))


def test_anchor_is_zero_without_refinement():
    steps = torch.randn(1, 4, 8).expand(3, 4, 8)
    loss = perl_loss(steps, torch.randn(3, 2, 8), torch.tensor([0, 1, 0, 1]), torch.tensor(1.0))
    assert math.isclose(loss.anchor.item(), 0.0, abs_tol=1e-6)
