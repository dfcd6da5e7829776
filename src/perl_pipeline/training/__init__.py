"""Training of PERL's projectors (no Kedro)."""

from perl_pipeline.training.loop import TrainResult, train_projectors, training_step

__all__ = ["TrainResult", "train_projectors", "training_step"]
