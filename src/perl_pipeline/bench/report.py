"""From the measured rows to ratios, targets and the plain-text report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perl_pipeline.bench.workloads import WORKLOAD_LABELS, ImageRow, TextRow
from perl_pipeline.models import PERL

INFERENCE_RATIO_TARGET = 2.9  # PERL inference time per image / zero-shot, at most
TEXT_SPEEDUP_TARGET = 3.0  # uncut (77 tokens) / cut text feature time, at least


@dataclass(frozen=True)
class Target:
    """A speed target checked on this run's figures."""

    name: str
    value: float
    threshold: float
    passed: bool


def theoretical_ratio(model: PERL) -> float:
    """Block evaluations per image relative to zero-shot: (J + (K + 1)(L - J)) / L."""
    depth = len(model.clip.visual.transformer.resblocks)
    j, k = model.split_layer, model.steps
    return (j + (k + 1) * (depth - j)) / depth


def compute_ratios(image_rows: Sequence[ImageRow], text_rows: Sequence[TextRow]) -> dict:
    """Per-image time ratios to zero-shot (per batch size) and uncut/cut text speed-ups."""
    seconds = {(row.workload, row.batch): row.seconds for row in image_rows}
    batches = sorted({row.batch for row in image_rows})
    text = {(row.prompts, row.cut): row.seconds for row in text_rows}
    counts = sorted({row.prompts for row in text_rows})
    return {
        "inference_vs_zero_shot": {
            str(b): seconds["perl_inference", b] / seconds["zero_shot", b] for b in batches
        },
        "train_step_vs_zero_shot": {
            str(b): seconds["perl_train_step", b] / seconds["zero_shot", b] for b in batches
        },
        "text_uncut_vs_cut": {str(n): text[n, False] / text[n, True] for n in counts},
    }


def check_targets(ratios: dict) -> list[Target]:
    """The speed targets: the inference ratio per batch size, the text speed-up per prompt count."""
    inference, limit = ratios["inference_vs_zero_shot"], INFERENCE_RATIO_TARGET
    speedup, floor = ratios["text_uncut_vs_cut"], TEXT_SPEEDUP_TARGET
    targets = [
        Target(f"PERL inference / zero-shot at batch {b} <= {limit}", v, limit, v <= limit)
        for b, v in inference.items()
    ]
    targets += [
        Target(f"text uncut / cut speed-up at {n} prompts >= {floor}", v, floor, v >= floor)
        for n, v in speedup.items()
    ]
    return targets


def format_report(result: dict) -> str:
    """The figures as plain-text tables."""
    h, s = result["header"], result["settings"]
    j, k, depth = s["split_layer"], s["steps"], h["blocks"]
    blocks = j + (k + 1) * (depth - j)
    theory = f"{h['theoretical_ratio']:.2f} = (J + (K+1)(L-J))/L = {blocks}/{depth}"
    lines = [
        f"PERL benchmark | {h['device']}: {h['device_name']} | torch {h['torch']} | "
        f"open_clip {h['open_clip']} | {h['dtype']}",
        f"model {h['model']} (random weights), J={j} K={k} L={depth} | warm-up {s['warmup']}, "
        f"median of up to {s['repeats']} repeats (~{s['budget_s']:g} s per measurement)",
        f"peak memory: {h['memory']}",
        f"other processes: 1-min load {_number(h['load_average_start'])} before the run, "
        f"{_percent(h['others_cpu_share'])} of all CPU time during it (they skew the figures)",
        "",
        f"{'image encoder':<18}{'batch':>6}{'median s':>11}{'reps':>6}{'images/s':>11}"
        f"{'ms/image':>11}{'peak MiB':>10}",
    ]
    for row in result["image"]:
        lines.append(
            f"{WORKLOAD_LABELS[row['workload']]:<18}{row['batch']:>6}{row['seconds']:>11.4f}"
            f"{row['repeats']:>6}{row['images_per_s']:>11.2f}{row['ms_per_image']:>11.2f}"
            f"{row['peak_memory_mb']:>10.0f}"
        )
    lines += [
        "",
        f"{'PERL text features':<20}{'cut':>5}{'tokens':>8}{'median s':>11}{'reps':>6}"
        f"{'prompts/s':>11}{'peak MiB':>10}",
    ]
    for row in result["text"]:
        lines.append(
            f"{str(row['prompts']) + ' prompts':<20}{'yes' if row['cut'] else 'no':>5}"
            f"{row['tokens']:>8}{row['seconds']:>11.4f}{row['repeats']:>6}"
            f"{row['prompts_per_s']:>11.1f}{row['peak_memory_mb']:>10.0f}"
        )
    ratios = result["ratios"]
    lines += ["", "ratios (same run)"]
    lines.append(
        "PERL inference / zero-shot, per image: "
        + ", ".join(f"batch {b}: {v:.2f}" for b, v in ratios["inference_vs_zero_shot"].items())
        + f"   (theory {theory})"
    )
    lines.append(
        "PERL train step / zero-shot, per image: "
        + ", ".join(f"batch {b}: {v:.2f}" for b, v in ratios["train_step_vs_zero_shot"].items())
    )
    lines.append(
        "text uncut / cut speed-up: "
        + ", ".join(f"{n} prompts: {v:.2f}x" for n, v in ratios["text_uncut_vs_cut"].items())
    )
    lines += ["", "targets"]
    for target in result["targets"]:
        verdict = "PASS" if target["passed"] else "FAIL"
        lines.append(f"{verdict}  {target['name']}: {target['value']:.2f}")
    lines.append(f"\ntotal {result['total_seconds']:.0f} s")
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"
