"""The one timing helper (interleaved rounds, median wall time, peak memory) and the work counters
(FLOPs and operator calls of one call), which the rehearsal's projection uses too."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from perl_pipeline.tools.bench.host import peak_memory_mb, reset_peak_memory, synchronize


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
        reset_peak_memory(device)
        seconds = _timed_call(calls[name], device)
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


def _timed_call(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start
