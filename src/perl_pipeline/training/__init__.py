"""Training of PERL's projectors (no Kedro)."""

from perl_pipeline.training.loop import TrainResult, projector_recipe, train_projectors, training_step

__all__ = ["TrainResult", "projector_recipe", "train_projectors", "training_step"]
