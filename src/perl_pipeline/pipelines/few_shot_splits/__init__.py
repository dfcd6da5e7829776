"""The few_shot_splits stage."""

from perl_pipeline.pipelines.few_shot_splits.pipeline import create_pipeline

__all__ = ["create_pipeline"]
