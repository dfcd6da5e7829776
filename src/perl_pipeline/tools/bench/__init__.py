"""Speed and memory of PERL against zero-shot CLIP, measured in one run.

    python -m perl_pipeline.bench                 # ViT-B/16 (random weights), best device
    python -m perl_pipeline.bench --quick         # a fast smoke run
    python -m perl_pipeline.bench --json out.json # also write every figure as JSON

Times, as medians of a few synchronised repeats after warm-up: zero-shot image encoding, PERL
inference (last block at the read-out only, and on every token) and a training step at a small and
a large batch; text features with and without the EOS cut; a training step of one seed and of
three together; Table 4's six reasoning loops; evaluation of three seeds over photo-sized JPEGs
beside decoding alone, and with the input-Jacobian norm. Ratios are printed next to the theory,
(J + (K+1)(L-J)) / L block evaluations per zero-shot forward (32/12 = 2.67 for ViT-B/16, about
2.32 with the last block at the read-out). Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch

from perl_pipeline.device import resolve_device
from perl_pipeline.models import PERL, load_clip
from perl_pipeline.tools.bench.harness import (
    cpu_seconds,
    device_description,
    dtype_name,
    load_average,
    memory_kind,
    others_cpu_share,
)
from perl_pipeline.tools.bench.report import (
    INFERENCE_RATIO_TARGET,
    SEEDS_SPEEDUP_TARGET,
    TEXT_SPEEDUP_TARGET,
    block_ratio,
    check_targets,
    compute_ratios,
    format_report,
)
from perl_pipeline.tools.bench.workloads import (
    EVAL_WORKLOADS,
    SEEDS_WORKLOADS,
    WORKLOADS,
    Settings,
    bench_evaluation,
    bench_images,
    bench_loops,
    bench_seeds,
    bench_text,
    class_prompts,
    table4_loops,
)

__all__ = [  # what tests and users reach as perl_pipeline.tools.bench.<name>
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

logger = logging.getLogger("perl_pipeline.tools.bench")

DEFAULTS = {  # options left out, by run; the uncut text pass over 1000 prompts takes minutes on a small CPU
    "batch_sizes": {"quick": (1, 2), "gpu": (4, 256), "cpu": (4, 16)},
    "text_sizes": {"quick": (10,), "gpu": (100, 1000), "cpu": (100,)},
    "warmup": {"quick": 1, "gpu": 3, "cpu": 1},
    "repeats": {"quick": 1, "gpu": 10, "cpu": 3},
    "train_classes": {"quick": 10, "gpu": 100, "cpu": 100},
    "eval_images": {"quick": 4, "gpu": 512, "cpu": 32},
}


def run(settings: Settings) -> dict:
    """Measure everything `settings` asks for and return every figure as a JSON-able dict."""
    started, load_at_start, cpu_at_start = time.perf_counter(), load_average(), cpu_seconds()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    logger.info("building %s with random weights", settings.model)
    clip = load_clip(settings.model, pretrained=None, init_seed=settings.seed).to(device)
    model = PERL(clip, settings.split_layer, settings.steps, seed=settings.seed).to(device)
    tokenizer = open_clip.get_tokenizer(settings.model)
    blocks = len(clip.visual.transformer.resblocks)
    image_rows = bench_images(model, settings, device, tokenizer)
    text_rows = bench_text(model, settings, device, tokenizer)
    seeds_rows = bench_seeds(model, settings, device, tokenizer)
    loop_rows = bench_loops(model, settings, device)
    with tempfile.TemporaryDirectory(prefix="perl-bench-") as folder:
        eval_rows = bench_evaluation(model, settings, device, tokenizer, Path(folder))
    ratios = compute_ratios(image_rows, text_rows, seeds_rows, eval_rows, settings.steps, settings.seeds)
    header = {
        "device": device.type,
        "device_name": device_description(device),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "dtype": dtype_name(device),
        "model": settings.model,
        "blocks": blocks,
        "theoretical_ratio": block_ratio(model.depths[0], model.steps, blocks),
        "theoretical_ratio_last_block": block_ratio(model.depths[0], model.steps, blocks, True),
        "memory": memory_kind(device),
        "load_average_start": load_at_start,
        "others_cpu_share": others_cpu_share(cpu_at_start, time.perf_counter() - started),
        "cpu_threads": torch.get_num_threads(),
    }
    return {
        "header": header,
        "settings": dataclasses.asdict(settings),
        "image": image_rows,
        "text": text_rows,
        "seeds": seeds_rows,
        "loops": loop_rows,
        "evaluation": eval_rows,
        "ratios": ratios,
        "targets": check_targets(ratios, device.type),
        "total_seconds": time.perf_counter() - started,
    }


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, Path | None]:
    """Command-line options, with device-dependent defaults filled in."""
    parser = argparse.ArgumentParser(
        prog="python -m perl_pipeline.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--model", default="ViT-B-16-quickgelu", help="open_clip config or PERL-Tiny-ViT")
    add("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    add("--batch-sizes", type=int, nargs="+", help="image batches (default: 4 256 GPU, 4 16 CPU)")
    add("--text-sizes", type=int, nargs="+", help="prompt counts (default: 100 1000 GPU, 100 CPU)")
    add("--warmup", type=int, help="untimed calls before timing (default: 3 GPU, 1 CPU)")
    add("--repeats", type=int, help="timed calls, median reported (default: 10 GPU, 3 CPU)")
    add(
        "--budget",
        dest="budget_s",
        metavar="BUDGET",
        type=float,
        default=35.0,
        help="seconds of timed calls per measurement",
    )
    add("--split-layer", type=int, default=7, help="J, frozen blocks before the refinement")
    add("--steps", type=int, default=4, help="K, refinement steps")
    add("--train-classes", type=int, help="classes of the fixed text features (default: 100)")
    add("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    add("--seed", type=int, default=0, help="seeds the random weights and inputs")
    add("--seeds", type=int, default=3, help="seeds trained together and evaluated (default: 3)")
    add("--eval-images", type=int, help="JPEGs evaluated (default: 512 GPU, 32 CPU)")
    add("--quick", action="store_true", help="smoke run: batches 1 2, 10 prompts, 1 repeat")
    add("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)

    mode = "quick" if args.quick else "cpu" if resolve_device(args.device).type == "cpu" else "gpu"
    for key, values in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, values[mode])
    args.batch_sizes, args.text_sizes = tuple(args.batch_sizes), tuple(args.text_sizes)
    args.repeats, args.seeds = max(1, args.repeats), max(2, args.seeds)
    fields = {field.name for field in dataclasses.fields(Settings)}
    return Settings(**{key: value for key, value in vars(args).items() if key in fields}), args.json


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the report to stdout and, if asked, the figures to JSON."""
    logging.basicConfig(format="%(asctime)s %(message)s", stream=sys.stderr)  # others: WARNING
    logger.setLevel(logging.INFO)
    settings, json_path = parse_settings(argv)
    result = run(settings)
    sys.stdout.write(format_report(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        logger.info("figures written to %s", json_path)
    return 0
