"""Build the backbone and PERL from the typed configuration."""

from __future__ import annotations

import torch
from torch import nn

from perl_pipeline.config import ClipConfig, ConfigError, PerlConfig, check_perl_settings
from perl_pipeline.models.loading import load_clip, register_model_configs
from perl_pipeline.models.perl import PERL, TextPrefix


def check_model_settings(clip: ClipConfig, perl: PerlConfig) -> None:
    """Check the PERL settings against the backbone's architecture, from its config alone (no weights).

    Raises:
        ConfigError: an unknown model name, or a split layer outside 1..L-1 of a refined tower
            (the rule PERL's constructor runs, here from the config before any weight is loaded).
    """
    import open_clip

    register_model_configs()
    config = open_clip.get_model_config(clip.model_name)
    if config is None:
        raise ConfigError(
            f"clip.model_name={clip.model_name!r} is not an open_clip model config; "
            "e.g. 'ViT-B-16-quickgelu' (the paper's) or 'PERL-Toy-ViT' (the demo's)"
        )
    depths = {"image": config["vision_cfg"]["layers"], "text": config["text_cfg"]["layers"]}
    check_perl_settings(
        perl.split_layer, perl.steps, perl.rank, perl.modalities, depths, where=f" of {clip.model_name}"
    )


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
