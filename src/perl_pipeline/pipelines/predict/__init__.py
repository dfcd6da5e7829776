"""predict: an adapter file classifies image files and folders (python -m perl_pipeline.predict's work)."""

from perl_pipeline.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]
