"""Inputs the model stages share, checked before use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from perl_pipeline.config import ClipConfig

if TYPE_CHECKING:  # torch is imported by the nodes only when they run
    from perl_pipeline.models import TextFeatures


def checked_text_features(
    text_features: dict, index: pl.DataFrame, clip: ClipConfig, split_layer: int | list[int], benchmark: str
) -> tuple[TextFeatures, dict]:
    """The benchmark's `TextFeatures` and the backbone's identity, after checking that the features
    were computed with this backbone, J and class list (`StaleArtefactError` names what differs)."""
    from perl_pipeline.benchmarks.index import label_classnames
    from perl_pipeline.models import TextFeatures, backbone_identity

    features = TextFeatures.from_dict(text_features)
    backbone = backbone_identity(clip)
    features.check(
        backbone,
        split_layer,
        label_classnames(index),
        name=f"{benchmark}.text_features",
        fix=f"kedro run --pipelines text_features --namespaces {benchmark}",
    )
    return features, backbone
