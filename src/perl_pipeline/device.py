"""Device and precision choice: CUDA, then MPS, then CPU; bf16 autocast on GPUs by default."""

from __future__ import annotations

import contextlib

import torch

from perl_pipeline.config import check_precision


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit name must be available."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use device: auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but is not available; use device: auto or cpu")
    return device


def autocast(device: torch.device, precision: str = "auto"):
    """The compute precision of `precision` on `device`: 'auto' is bf16 autocast on CUDA / MPS and
    plain fp32 on the CPU; 'bf16' autocasts on every device (on a CPU: the GPU's dtype path, for
    tests, and slow); 'fp32' never autocasts."""
    if autocast_dtype(device, precision) is torch.bfloat16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The dtype matrix products run in under `autocast(device, precision)`."""
    check_precision(precision)
    if precision == "bf16" or (precision == "auto" and device.type in ("cuda", "mps")):
        return torch.bfloat16
    return torch.float32
