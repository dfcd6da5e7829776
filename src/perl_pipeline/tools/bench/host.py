"""What the benchmark knows of the machine: device name, precision, synchronisation, peak memory and
how busy the other processes keep the CPUs."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path

import torch


def dtype_name(device: torch.device) -> str:
    """The compute precision `autocast(device)` gives."""
    from perl_pipeline.device import autocast_dtype

    return "bfloat16 autocast (fp32 weights)" if autocast_dtype(device) is torch.bfloat16 else "float32"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a wall-clock interval covers the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak for the next measurement (CUDA only: a process RSS peak cannot reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory since the last reset. Elsewhere: the process peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def memory_kind(device: torch.device) -> str:
    """What the peak memory column means on this device."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated (model included), reset per measurement"
    return "process peak RSS (resource.getrusage; cumulative over the run, includes the model)"


def device_description(device: torch.device) -> str:
    """A human-readable name of the device the run uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = _cpu_model() or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"


def load_average() -> float | None:
    """The 1-minute system load before the run (other processes slow a CPU run down)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return busy, usage.ru_utime + usage.ru_stime


def others_cpu_share(start: tuple[float, float] | None, wall_s: float) -> float | None:
    """Share of the machine's CPU time that other processes used since `start` (0 = quiet)."""
    end = cpu_seconds()
    if start is None or end is None or wall_s <= 0:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, others) / (wall_s * (os.cpu_count() or 1))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
