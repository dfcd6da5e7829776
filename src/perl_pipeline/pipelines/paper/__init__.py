"""paper: the paper's ablation tables, Fig. 3 and dynamics (python -m perl_pipeline.paper)."""

from perl_pipeline.pipelines.paper.pipeline import create_pipeline

__all__ = ["create_pipeline"]
