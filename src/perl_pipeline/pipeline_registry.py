"""Where Kedro looks for the pipelines; they are registered in :mod:`perl_pipeline.pipelines.registry`."""

from perl_pipeline.pipelines.registry import register_pipelines

__all__ = ["register_pipelines"]
