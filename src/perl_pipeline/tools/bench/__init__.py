"""Speed and memory of PERL against zero-shot CLIP (``python -m perl_pipeline.bench``).

harness: the timing helper and the machine (device, precision, memory, load); workloads: what is
timed; report: ratios, targets and the text report; cli: the command line and the run.
"""

from perl_pipeline.tools.bench.cli import main, parse_settings, run
from perl_pipeline.tools.bench.report import (
    INFERENCE_RATIO_TARGET,
    SEEDS_SPEEDUP_TARGET,
    TEXT_SPEEDUP_TARGET,
    format_report,
)
from perl_pipeline.tools.bench.workloads import (
    EVAL_WORKLOADS,
    SEEDS_WORKLOADS,
    WORKLOADS,
    Settings,
    class_prompts,
    table4_loops,
)

__all__ = [
    "EVAL_WORKLOADS",
    "INFERENCE_RATIO_TARGET",
    "SEEDS_SPEEDUP_TARGET",
    "SEEDS_WORKLOADS",
    "TEXT_SPEEDUP_TARGET",
    "WORKLOADS",
    "Settings",
    "class_prompts",
    "format_report",
    "main",
    "parse_settings",
    "run",
    "table4_loops",
]
