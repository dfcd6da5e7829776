"""Build the backbone and PERL from the typed configuration."""

from __future__ import annotations

from torch import nn

from perl_pipeline.config import ClipConfig, PerlConfig
from perl_pipeline.models.loading import load_clip, weights_identity
from perl_pipeline.models.perl import PERL


def load_backbone(config: ClipConfig) -> nn.Module:
    """The frozen CLIP named by `config` (see `load_clip`)."""
    return load_clip(
        config.model_name, config.pretrained, cache_dir=config.cache_dir, init_seed=config.init_seed
    )


def backbone_identity(config: ClipConfig) -> dict:
    """The backbone as provenance sees it: the model config and the weights' identity."""
    weights = weights_identity(config.model_name, config.pretrained, init_seed=config.init_seed)
    return {"model_name": config.model_name, "weights": weights}


def build_perl(clip: nn.Module, config: PerlConfig, seed: int = 0) -> PERL:
    """PERL around `clip` with the configured ablation settings and projector initialisation;
    `seed` fixes the projector init."""
    return PERL(
        clip,
        split_layer=config.split_layer,
        steps=config.steps,
        rank=config.rank,
        modalities=config.modalities,
        share_projector=config.share_projector,
        seed=seed,
        projector_init=config.projector_init,
    )
