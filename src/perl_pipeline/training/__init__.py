"""Training of PERL's projectors (no Kedro)."""

from perl_pipeline.training.loop import (
    TrainResult,
    train_projectors,
    train_seeds,
    training_step,
    training_step_together,
)
from perl_pipeline.training.trained import train_subset

__all__ = [
    "TrainResult",
    "train_projectors",
    "train_seeds",
    "train_subset",
    "training_step",
    "training_step_together",
]
