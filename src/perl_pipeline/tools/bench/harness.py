"""The one timing helper (interleaved rounds, median wall time, peak memory), the work counters
(FLOPs and operator calls of one call, which the rehearsal's projection uses too) and what the
benchmark knows of the machine: device name, precision, synchronisation, peak memory and how busy
the other processes keep the CPUs."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Timing:
    """Median wall time of `repeats` timed calls after warm-up, and the peak memory they reached."""

    seconds: float
    repeats: int
    times: tuple[float, ...]
    peak_memory_mb: float
    flops: float = 0.0  # of one call (torch's flop counter), when counted
    ops: int = 0  # aten operator calls of one call, views aside, when counted


def measure(
    calls: Mapping[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
    budget_s: float,
    before: Callable[[str], object] | None = None,
    count: bool = False,
) -> dict[str, Timing]:
    """Median wall time of each call, timed in interleaved rounds.

    A slow spell of a shared CPU hits every call of a round alike, so ratios stay fair. The rounds
    are cut (to at least one) to take about `budget_s` per call; `count` adds one counting call."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    peaks = dict.fromkeys(calls, 0.0)

    def call(name: str) -> float:
        if before is not None:
            before(name)
        if device.type == "cuda":  # a fresh peak per call (a process RSS peak cannot reset)
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        calls[name]()
        synchronize(device)
        seconds = time.perf_counter() - start
        peaks[name] = max(peaks[name], peak_memory_mb(device))
        return seconds

    round_s = 0.0
    for _ in range(warmup):
        round_s = sum(call(name) for name in calls)
    if round_s > 0 and budget_s > 0:
        repeats = max(1, min(repeats, int(budget_s * len(calls) / round_s)))
    for _ in range(repeats):
        for name in calls:
            times[name].append(call(name))
    counts = dict.fromkeys(calls, (0.0, 0))
    for name in calls if count else ():
        if before is not None:
            before(name)
        counts[name] = count_work(calls[name])
    return {
        name: Timing(statistics.median(ts), len(ts), tuple(ts), peaks[name], *counts[name])
        for name, ts in times.items()
    }


class OperatorCalls(TorchDispatchMode):
    """Counts aten operator calls, views aside (a view launches no kernel; on a GPU every other call
    is about one kernel launch)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not func.is_view
        return func(*args, **(kwargs or {}))


def count_work(fn: Callable[[], object]) -> tuple[float, int]:
    """(FLOPs, operator calls) of one call of `fn`, in this process (data-loader workers are not seen)."""
    with FlopCounterMode(display=False) as flops, OperatorCalls() as calls:
        fn()
    return float(flops.get_total_flops()), calls.ops


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
