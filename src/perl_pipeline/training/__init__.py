"""Training of PERL's projectors (no Kedro)."""

from perl_pipeline.training.loop import TrainResult, projector_recipe, train_projectors

__all__ = ["TrainResult", "projector_recipe", "train_projectors"]
