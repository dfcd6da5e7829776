"""PERL's logits and training objective (docs/method.md §3)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F


class PerlLoss(NamedTuple):
    """total = ce + anchor_weight * anchor; the parts are kept for logging."""

    total: torch.Tensor
    ce: torch.Tensor
    anchor: torch.Tensor


def clip_logits(
    image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """τ · norm(v) · norm(T)ᵀ: [..., B, D] x [..., C, D] -> [..., B, C]."""
    v = F.normalize(image_embeddings, dim=-1)
    t = F.normalize(text_embeddings, dim=-1)
    return logit_scale * v @ t.transpose(-1, -2)


def perl_loss(
    image_steps: torch.Tensor,
    text_steps: torch.Tensor,
    labels: torch.Tensor,
    logit_scale: torch.Tensor,
    anchor_weight: float = 1.0,
) -> PerlLoss:
    """CE(τ · norm(v(K)) · norm(T(K))ᵀ, y) + λ · (1 − mean_i cos(v_i(0), v_i(K)))."""
    logits = clip_logits(image_steps[-1], text_steps[-1], logit_scale)  # [B, C]
    ce = F.cross_entropy(logits.float(), labels)
    anchor = 1.0 - F.cosine_similarity(image_steps[0], image_steps[-1], dim=-1).float().mean()
    return PerlLoss(ce + anchor_weight * anchor, ce, anchor)
