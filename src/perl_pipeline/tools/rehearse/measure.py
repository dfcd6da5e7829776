"""One stage's figures: wall time, peak memory (this process and its workers), items and rate."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from perl_pipeline.tools.bench.harness import peak_memory_mb

_PROC = Path("/proc")


@dataclass
class StageRecord:
    """What one rehearsal stage did and cost."""

    stage: str
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    items: int = 0
    unit: str = ""
    peak_gpu_mb: float | None = None

    @property
    def items_per_s(self) -> float:
        """Items per second of wall time (0 when nothing was done)."""
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """The JSON record (``items_per_s`` included; ``peak_gpu_mb`` only where there is one)."""
        rounded = {"seconds": round(self.seconds, 3), "peak_rss_mb": round(self.peak_rss_mb, 1)}
        record = asdict(self) | rounded | {"items_per_s": round(self.items_per_s, 3)}
        return {key: value for key, value in record.items() if value is not None}


def _rss_kb(pid: int | str) -> int:
    """VmRSS of one process from /proc, in KiB (0 when it has gone)."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (data-loader workers), from /proc."""
    found = []
    for entry in _PROC.glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its children, in MiB. Without /proc (not Linux):
    this process's peak so far."""
    if not _PROC.is_dir():
        return peak_memory_mb(torch.device("cpu"))
    return (_rss_kb(pid) + sum(_rss_kb(child) for child in _children(pid))) / 1024


@contextmanager
def measure(stage: str, *, unit: str = "", gpu: bool = False, interval: float = 0.2) -> Iterator[StageRecord]:
    """Time the body and sample its peak memory; the body may set ``record.items``."""
    record = StageRecord(stage=stage, unit=unit)
    pid = os.getpid()
    peak = [tree_rss_mb(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            peak[0] = max(peak[0], tree_rss_mb(pid))

    if gpu:
        torch.cuda.reset_peak_memory_stats()
    sampler = threading.Thread(target=sample, name=f"rss-{stage}", daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield record
    finally:
        record.seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        record.peak_rss_mb = max(peak[0], tree_rss_mb(pid))
        if gpu:
            record.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
