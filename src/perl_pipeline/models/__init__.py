"""The PERL model library (no Kedro): the frozen backbone, the thought projectors, the objective."""

from perl_pipeline.models.adapter import (
    Adapter,
    AdapterClassifier,
    AdapterFileError,
    BackboneMismatchError,
    adapter_from_dict,
    load_adapter,
    make_adapter,
    read_adapter,
    save_adapter,
)
from perl_pipeline.models.factory import (
    backbone_identity,
    build_perl,
    check_model_settings,
    image_size,
    load_backbone,
)
from perl_pipeline.models.loading import (
    PretrainedWeightsUnavailable,
    WeightsFileError,
    check_weights,
    load_clip,
)
from perl_pipeline.models.objective import PerlLoss, clip_logits, perl_loss
from perl_pipeline.models.perl import PERL, PerlSeeds, TextPrefix, causal_mask
from perl_pipeline.models.projector import ThoughtProjector, count_projector_parameters
from perl_pipeline.models.text_features import TextFeatures, class_text_features, text_features_recipe

__all__ = [
    "Adapter",
    "AdapterClassifier",
    "AdapterFileError",
    "BackboneMismatchError",
    "adapter_from_dict",
    "PERL",
    "PerlLoss",
    "PerlSeeds",
    "PretrainedWeightsUnavailable",
    "TextFeatures",
    "TextPrefix",
    "ThoughtProjector",
    "WeightsFileError",
    "backbone_identity",
    "build_perl",
    "causal_mask",
    "check_model_settings",
    "check_weights",
    "class_text_features",
    "clip_logits",
    "count_projector_parameters",
    "image_size",
    "load_adapter",
    "load_backbone",
    "make_adapter",
    "load_clip",
    "perl_loss",
    "read_adapter",
    "save_adapter",
    "text_features_recipe",
]
