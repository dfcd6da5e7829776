"""Build the backbone and PERL from the typed configuration."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from perl_pipeline.config import ClipConfig, ConfigError, PerlConfig, check_perl_settings
from perl_pipeline.models.loading import load_clip, register_model_configs, weights_identity
from perl_pipeline.models.perl import PERL


def check_model_settings(clip: ClipConfig, perl: PerlConfig) -> None:
    """Check the PERL settings against the backbone's architecture from its config alone (no weights):
    ConfigError for an unknown model name or a split layer outside 0..L-1 of a refined tower."""
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


def image_size(clip: nn.Module) -> int:
    """The input resolution of an open_clip image tower (224 for ViT-B/16)."""
    size = clip.visual.image_size
    return int(size[0] if isinstance(size, Sequence) else size)


def backbone_identity(config: ClipConfig) -> dict:
    """The backbone as provenance sees it: the model config and the weights' identity."""
    weights = weights_identity(config.model_name, config.pretrained, init_seed=config.init_seed)
    return {"model_name": config.model_name, "weights": weights}


def build_perl(clip: nn.Module, config: PerlConfig, seed: int = 0) -> PERL:
    """PERL around `clip` with the configured settings (its keywords); `seed` fixes the projector init."""
    return PERL(clip, **config.model_dump(), seed=seed)
