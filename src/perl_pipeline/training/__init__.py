"""Training of PERL's projectors (no Kedro)."""

from perl_pipeline.training.device import autocast, resolve_device
from perl_pipeline.training.loop import TrainResult, train_projectors

__all__ = ["TrainResult", "autocast", "resolve_device", "train_projectors"]
