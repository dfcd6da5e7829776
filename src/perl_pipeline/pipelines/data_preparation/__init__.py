"""The data_preparation stage."""

from perl_pipeline.pipelines.data_preparation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
