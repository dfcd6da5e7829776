"""The text_features stage."""

from perl_pipeline.pipelines.text_features.pipeline import create_pipeline

__all__ = ["create_pipeline"]
