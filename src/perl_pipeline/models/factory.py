"""Build the backbone and PERL from the typed configuration."""

from __future__ import annotations

import torch
from torch import nn

from perl_pipeline.config import ClipConfig, PerlConfig
from perl_pipeline.models.loading import load_clip
from perl_pipeline.models.perl import PERL, TextPrefix


def load_backbone(config: ClipConfig) -> nn.Module:
    """The frozen CLIP named by `config` (see `load_clip`)."""
    return load_clip(
        config.model_name, config.pretrained, cache_dir=config.cache_dir, init_seed=config.init_seed
    )


def build_perl(clip: nn.Module, config: PerlConfig, seed: int = 0) -> PERL:
    """PERL around `clip` with the configured ablation settings; `seed` fixes the projector init."""
    return PERL(
        clip,
        split_layer=config.split_layer,
        steps=config.steps,
        rank=config.rank,
        modalities=config.modalities,
        share_projector=config.share_projector,
        seed=seed,
    )


@torch.no_grad()
def class_text_features(
    clip: nn.Module,
    tokens: torch.Tensor,
    split_layer: int,
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Everything the text side needs, computed once per class set.

    Returns:
        tokens [C, context] (cut to max(EOS) + 1), eos_index [C], prefix [C, n, d_t] (the frozen
        blocks[0:J] states) and zero_shot [C, D] (open_clip's own encode_text).
    """
    model = PERL(clip, split_layer=split_layer, steps=0, modalities=()).to(device)
    n = int(model.eos_index(tokens).max()) + 1  # one cut for the whole class set
    tokens = tokens[:, :n]
    prefixes, zero_shot = [], []
    for chunk in tokens.to(device).split(batch_size):
        prefix = model.text_prefix(chunk, cut=False)
        prefixes.append(prefix)
        zero_shot.append(model.refine_text(prefix)[0])
    return {
        "tokens": tokens.cpu(),
        "eos_index": torch.cat([p.eos_index for p in prefixes]).cpu(),
        "prefix": torch.cat([p.states for p in prefixes]).float().cpu(),
        "zero_shot": torch.cat(zero_shot).float().cpu(),
    }


def text_prefix_of(features: dict[str, torch.Tensor]) -> TextPrefix:
    """The TextPrefix stored in a `class_text_features` dict."""
    return TextPrefix(features["prefix"], features["eos_index"])
