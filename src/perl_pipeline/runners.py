"""The name ``kedro run --runner perl_pipeline.runners.DaskRunner`` takes; see
:mod:`perl_pipeline.pipelines.runners`."""

from perl_pipeline.pipelines.runners import DaskRunner

__all__ = ["DaskRunner"]
