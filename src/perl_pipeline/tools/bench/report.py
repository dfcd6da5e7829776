"""From the measured rows to ratios, targets and the plain-text report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perl_pipeline.models import PERL
from perl_pipeline.tools.bench.workloads import WORKLOAD_LABELS

INFERENCE_RATIO_TARGET = 2.5  # PERL inference time per image / zero-shot, at most
TEXT_SPEEDUP_TARGET = 3.0  # uncut (77 tokens) / cut text feature time, at least
SEEDS_SPEEDUP_TARGET = {"cpu": 1.0, "gpu": 2.0}  # seeds together / one at a time, images/s, at least
LAST_BLOCK_SHARE = 2 / 12  # the read-out-only last block: K and V of every token, 2 of 12 d² per token


@dataclass(frozen=True)
class Target:
    """A speed target checked on this run's figures."""

    name: str
    value: float
    threshold: float
    passed: bool


def theoretical_ratio(model: PERL, last_block_readout_only: bool = False) -> float:
    """Block evaluations per image relative to zero-shot (docs/method.md §5, §2.7)."""
    blocks = len(model.clip.visual.transformer.resblocks)
    return block_ratio(model.depths[0], model.steps, blocks, last_block_readout_only)


def block_ratio(first_depth: int, steps: int, blocks: int, last_block_readout_only: bool = False) -> float:
    """(J_1 + (K + 1)(L - J_1)) / L, or with the last block at the read-out only
    (J_1 + (K + 1)(L - J_1 - 1 + 1/6)) / L; J_1 is the first (or only) injection depth."""
    refined = blocks - first_depth - (1 - LAST_BLOCK_SHARE if last_block_readout_only else 0)
    return (first_depth + (steps + 1) * refined) / blocks


def compute_ratios(
    image_rows: Sequence[dict],
    text_rows: Sequence[dict],
    seeds_rows: Sequence[dict] = (),
    eval_rows: Sequence[dict] = (),
    steps: int = 0,
    evaluated_seeds: int = 1,
) -> dict:
    """Per-image time ratios to zero-shot (per batch size), uncut/cut text speed-ups, the seeds'
    together / one-at-a-time throughput, evaluation / decode-only throughput (per decoder) and the
    input-Jacobian norm's seconds per image, step and seed (`steps` = K, `evaluated_seeds`)."""
    seconds = {(row["workload"], row["batch"]): row["seconds"] for row in image_rows}
    batches = sorted({row["batch"] for row in image_rows})
    text = {(row["prompts"], row["cut"]): row["seconds"] for row in text_rows}
    seeds = {row["workload"]: row["images_per_s"] for row in seeds_rows}
    evaluation = {(row["workload"], row["decode"]): row["images_per_s"] for row in eval_rows}
    eval_seconds = {(row["workload"], row["decode"]): row["seconds"] / row["images"] for row in eval_rows}
    decoders = sorted({row["decode"] for row in eval_rows})

    def vs_zero_shot(workload: str) -> dict[str, float]:
        return {str(b): seconds[workload, b] / seconds["zero_shot", b] for b in batches}

    return {
        "inference_vs_zero_shot": vs_zero_shot("perl_inference"),
        "inference_full_last_block_vs_zero_shot": vs_zero_shot("perl_inference_full"),
        "train_step_vs_zero_shot": vs_zero_shot("perl_train_step"),
        "text_uncut_vs_cut": {
            str(n): text[n, False] / text[n, True] for n in sorted({row["prompts"] for row in text_rows})
        },
        "seeds_together_vs_one_at_a_time": (
            seeds["train_seeds_together"] / seeds["train_one_seed"] if seeds else None
        ),
        "evaluation_vs_decode_only": {
            d: evaluation["evaluate", d] / evaluation["decode_only", d] for d in decoders
        },
        "jacobian_s_per_image_step": {  # (with every image's Jacobian - without) / ((K + 1) seeds)
            d: (eval_seconds["evaluate_jacobian", d] - eval_seconds["evaluate", d])
            / ((steps + 1) * evaluated_seeds)
            for d in decoders
            if ("evaluate_jacobian", d) in eval_seconds
        },
        "predict_vs_zero_shot_evaluation": (  # images/s, CPU decoding for both
            evaluation["predict", "cpu"] / evaluation["zero_shot_evaluate", "cpu"]
            if ("predict", "cpu") in evaluation
            else None
        ),
    }


def check_targets(ratios: dict, device: str = "cpu") -> list[Target]:
    """The speed targets: the inference ratio per batch size, the text speed-up per prompt count,
    and seeds together against one at a time (no slower on a CPU, twice as fast on a GPU)."""
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
    together = ratios.get("seeds_together_vs_one_at_a_time")
    if together is not None:
        floor = SEEDS_SPEEDUP_TARGET["cpu" if device == "cpu" else "gpu"]
        name = f"seeds together / one at a time, images/s, >= {floor}"
        targets.append(Target(name, together, floor, together >= floor))
    return targets


def format_report(result: dict) -> str:
    """The figures as plain-text tables."""
    h, s = result["header"], result["settings"]
    j, k, depth = s["split_layer"], s["steps"], h["blocks"]
    blocks = j + (k + 1) * (depth - j)
    theory = f"{h['theoretical_ratio']:.2f} = (J + (K+1)(L-J))/L = {blocks}/{depth}"
    theory_last = f"{h['theoretical_ratio_last_block']:.2f} = (J + (K+1)(L-J-5/6))/L"
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
    if result.get("seeds"):
        lines += [
            "",
            f"{'training step':<26}{'seeds':>6}{'batch':>6}{'median s':>11}{'reps':>6}"
            f"{'images/s':>10}{'per seed':>10}{'peak MiB':>10}",
        ]
        for row in result["seeds"]:
            label = "1 seed" if row["workload"] == "train_one_seed" else f"{row['seeds']} seeds together"
            lines.append(
                f"{label:<26}{row['seeds']:>6}{row['batch']:>6}{row['seconds']:>11.4f}{row['repeats']:>6}"
                f"{row['images_per_s']:>10.2f}{row['images_per_s'] / row['seeds']:>10.2f}"
                f"{row['peak_memory_mb']:>10.0f}"
            )
    if result.get("evaluation"):
        lines += [
            "",
            f"{'evaluation (JPEGs)':<26}{'decode':>7}{'images':>7}{'workers':>8}{'median s':>11}"
            f"{'reps':>6}{'images/s':>10}",
        ]
        for row in result["evaluation"]:
            label = {
                "decode_only": "decode only (ceiling)",
                "zero_shot_evaluate": "evaluate zero-shot CLIP",
                "predict": "predict (1 adapter, top-5)",
                "evaluate_jacobian": f"evaluate {s['seeds']} seeds + Jacobian",
            }.get(row["workload"], f"evaluate {s['seeds']} seeds")
            lines.append(
                f"{label:<26}{row['decode']:>7}{row['images']:>7}{row['workers']:>8}{row['seconds']:>11.4f}"
                f"{row['repeats']:>6}{row['images_per_s']:>10.2f}"
            )
    if result.get("loops"):
        lines += [
            "",
            f"{'reasoning loop (Table 4)':<18}{'J':>12}{'params':>8}{'batch':>6}{'median s':>11}"
            f"{'ms/image':>10}{'/ zero-shot':>12}{'theory':>8}",
        ]
        for row in result["loops"]:
            depths = [row["split_layer"]] if isinstance(row["split_layer"], int) else list(row["split_layer"])
            expected = block_ratio(depths[0], s["steps"], depth, last_block_readout_only=True)
            lines.append(
                f"{row['variant']:<18}{','.join(map(str, depths)):>12}{row['parameters']:>8}"
                f"{row['batch']:>6}{row['seconds']:>11.4f}{row['ms_per_image']:>10.2f}"
                f"{row['vs_zero_shot']:>12.2f}{expected:>8.2f}"
            )
    ratios = result["ratios"]
    lines += ["", "ratios (same run)"]
    lines.append(
        "PERL inference / zero-shot, per image: "
        + ", ".join(f"batch {b}: {v:.2f}" for b, v in ratios["inference_vs_zero_shot"].items())
        + f"   (last block at the read-out; theory {theory_last})"
    )
    lines.append(
        "PERL inference, full last block / zero-shot: "
        + ", ".join(
            f"batch {b}: {v:.2f}" for b, v in ratios["inference_full_last_block_vs_zero_shot"].items()
        )
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
    if ratios.get("seeds_together_vs_one_at_a_time") is not None:
        lines.append(
            f"{s['seeds']} seeds together / one at a time, images/s: "
            f"{ratios['seeds_together_vs_one_at_a_time']:.2f}x"
        )
    if ratios.get("evaluation_vs_decode_only"):
        lines.append(
            "evaluation / decode-only ceiling, images/s: "
            + ", ".join(f"{d} decode: {v:.2f}" for d, v in ratios["evaluation_vs_decode_only"].items())
        )
    for decode, cost in ratios.get("jacobian_s_per_image_step", {}).items():
        lines.append(
            f"input-Jacobian norm ({decode} decode): {1000 * cost:.2f} ms per image, step and seed; a "
            f"benchmark adds about jacobian_images x (K+1) x seeds x that, e.g. 32 x {k + 1} x "
            f"{s['seeds']} x {1000 * cost:.2f} ms = {32 * (k + 1) * s['seeds'] * cost:.1f} s"
        )
    if ratios.get("predict_vs_zero_shot_evaluation"):
        lines.append(
            "predict (python -m perl_pipeline.predict's work) / zero-shot evaluation, images/s: "
            f"{ratios['predict_vs_zero_shot_evaluation']:.2f}x"
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
