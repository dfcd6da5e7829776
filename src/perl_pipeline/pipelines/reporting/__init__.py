"""The reporting stage."""

from perl_pipeline.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
