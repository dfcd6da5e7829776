"""Adapter + image paths -> one row per image: its top-k classes and probabilities."""

from __future__ import annotations

import logging

import polars as pl

from perl_pipeline.device import resolve_device
from perl_pipeline.models import adapter_from_dict, load_adapter
from perl_pipeline.predict import check_classnames, find_images, parse_classes, predict_files

logger = logging.getLogger(__name__)


def predict_images(adapter: dict, options: dict, device: str) -> pl.DataFrame:
    """`python -m perl_pipeline.predict` as a node (``options``: images, classes, step, top_k,
    batch_size, pretrained): one row per image found or skipped (path, step, class_i / prob_i, error)."""
    target = resolve_device(device)
    classifier = load_adapter(adapter_from_dict(adapter), pretrained=options.get("pretrained"), device=target)
    classes = options.get("classes")
    if classes:
        classifier.set_classes(
            parse_classes(classes) if isinstance(classes, str) else check_classnames(classes)
        )
    step = options.get("step")
    if step is not None and not 0 <= int(step) <= classifier.steps:
        raise ValueError(f"predict.step={step} is outside 0..{classifier.steps} (the adapter's K)")
    images = options.get("images") or []
    files, skipped = find_images([images] if isinstance(images, str) else images)
    if not files:
        raise ValueError(f"predict.images={images!r}: no image files found")
    rows, rate = predict_files(
        classifier,
        files,
        skipped=skipped,
        top_k=int(options.get("top_k", 5)),
        step=step,
        batch_size=int(options.get("batch_size", 64)),
        device=target,
    )
    logger.info("%d images at %.1f images/s on %s", len(rows), rate, target)
    return pl.DataFrame(rows, infer_schema_length=None)
