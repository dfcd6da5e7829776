"""The PERL model library (no Kedro): the frozen backbone, the thought projectors, the objective."""

from perl_pipeline.models.factory import (
    build_perl,
    check_model_settings,
    class_text_features,
    load_backbone,
    text_prefix_of,
)
from perl_pipeline.models.loading import PretrainedWeightsUnavailable, load_clip
from perl_pipeline.models.objective import PerlLoss, clip_logits, perl_loss
from perl_pipeline.models.perl import PERL, TextPrefix, causal_mask
from perl_pipeline.models.projector import ThoughtProjector

__all__ = [
    "PERL",
    "PerlLoss",
    "PretrainedWeightsUnavailable",
    "TextPrefix",
    "ThoughtProjector",
    "build_perl",
    "causal_mask",
    "check_model_settings",
    "class_text_features",
    "clip_logits",
    "load_backbone",
    "load_clip",
    "perl_loss",
    "text_prefix_of",
]
