"""The training stage."""

from perl_pipeline.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
