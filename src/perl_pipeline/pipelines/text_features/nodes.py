"""Class prompts -> tokens, zero-shot class embeddings and frozen text prefix states."""

from __future__ import annotations

import logging

import polars as pl

from perl_pipeline.config import ClipConfig, PerlConfig

logger = logging.getLogger(__name__)


def encode_class_prompts(
    index: pl.DataFrame, benchmark: dict, clip: ClipConfig, perl: PerlConfig, device: str
) -> dict:
    """Fill the benchmark's template with each class name (label order) and encode the prompts once.

    Returns:
        tokens, eos_index, prefix (blocks[0:J] states) and zero_shot embeddings, one row per class.
    """
    import open_clip

    from perl_pipeline.benchmarks.index import label_classnames
    from perl_pipeline.benchmarks.spec import BenchmarkSpec
    from perl_pipeline.device import resolve_device
    from perl_pipeline.models import class_text_features, load_backbone

    spec = BenchmarkSpec.from_params(benchmark)
    prompts = [spec.template.format(name.replace("_", " ")) for name in label_classnames(index)]
    backbone = load_backbone(clip)
    tokens = open_clip.get_tokenizer(clip.model_name)(prompts)
    features = class_text_features(backbone, tokens, perl.split_layer, resolve_device(device))
    logger.info("%s: %d class prompts, e.g. %r", spec.name, len(prompts), prompts[0])
    return features
