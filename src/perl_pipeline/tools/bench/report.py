"""From the measured rows to ratios, targets and the plain-text report."""

from __future__ import annotations

from collections.abc import Sequence
from string import Formatter

from perl_pipeline.config import split_depths
from perl_pipeline.tools.bench.workloads import WORKLOAD_LABELS

INFERENCE_RATIO_TARGET = 2.5  # PERL inference time per image / zero-shot, at most
TEXT_SPEEDUP_TARGET = 3.0  # uncut (77 tokens) / cut text feature time, at least
SEEDS_SPEEDUP_TARGET = {"cpu": 1.0, "gpu": 2.0}  # seeds together / one at a time, images/s, at least
LAST_BLOCK_SHARE = 2 / 12  # the read-out-only last block: K and V of every token, 2 of 12 d² per token


def block_ratio(first_depth: int, steps: int, blocks: int, last_block_readout_only: bool = False) -> float:
    """Block evaluations per image relative to zero-shot (docs/method.md §5, §2.7):
    (J_1 + (K + 1)(L - J_1)) / L, or with the last block at the read-out only
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


def check_targets(ratios: dict, device: str = "cpu") -> list[dict]:
    """The speed targets (name, value, threshold, passed): the inference ratio per batch size, the
    text speed-up per prompt count, and seeds together against one at a time (no slower on a CPU,
    twice as fast on a GPU)."""
    limit, floor = INFERENCE_RATIO_TARGET, TEXT_SPEEDUP_TARGET
    targets = [
        (f"PERL inference / zero-shot at batch {b} <= {limit}", v, limit, v <= limit)
        for b, v in ratios["inference_vs_zero_shot"].items()
    ]
    targets += [
        (f"text uncut / cut speed-up at {n} prompts >= {floor}", v, floor, v >= floor)
        for n, v in ratios["text_uncut_vs_cut"].items()
    ]
    together = ratios.get("seeds_together_vs_one_at_a_time")
    if together is not None:
        floor = SEEDS_SPEEDUP_TARGET["cpu" if device == "cpu" else "gpu"]
        targets.append(
            (f"seeds together / one at a time, images/s, >= {floor}", together, floor, together >= floor)
        )
    return [dict(zip(("name", "value", "threshold", "passed"), target, strict=True)) for target in targets]


TABLES = {  # part of the result: (column headers, row template over the row and its computed cells)
    "image": (
        ("image encoder", "batch", "median s", "reps", "images/s", "ms/image", "peak MiB"),
        "{label:<18}{batch:>6}{seconds:>11.4f}{repeats:>6}{images_per_s:>11.2f}{ms_per_image:>11.2f}"
        "{peak_memory_mb:>10.0f}",
    ),
    "text": (
        ("PERL text features", "cut", "tokens", "median s", "reps", "prompts/s", "peak MiB"),
        "{label:<20}{cut:>5}{tokens:>8}{seconds:>11.4f}{repeats:>6}{prompts_per_s:>11.1f}{peak_memory_mb:>10.0f}",
    ),
    "seeds": (
        ("training step", "seeds", "batch", "median s", "reps", "images/s", "per seed", "peak MiB"),
        "{label:<26}{seeds:>6}{batch:>6}{seconds:>11.4f}{repeats:>6}{images_per_s:>10.2f}{per_seed:>10.2f}"
        "{peak_memory_mb:>10.0f}",
    ),
    "evaluation": (
        ("evaluation (JPEGs)", "decode", "images", "workers", "median s", "reps", "images/s"),
        "{label:<26}{decode:>7}{images:>7}{workers:>8}{seconds:>11.4f}{repeats:>6}{images_per_s:>10.2f}",
    ),
    "loops": (
        ("reasoning loop (Table 4)", "J", "params", "batch", "median s", "ms/image", "/ zero-shot", "theory"),
        "{variant:<18}{depths:>12}{parameters:>8}{batch:>6}{seconds:>11.4f}{ms_per_image:>10.2f}"
        "{vs_zero_shot:>12.2f}{theory:>8.2f}",
    ),
}


def format_report(result: dict) -> str:
    """The figures as plain-text tables."""
    h, s, ratios = result["header"], result["settings"], result["ratios"]
    j, k, depth, seeds = s["split_layer"], s["steps"], h["blocks"], s["seeds"]
    theory = f"{h['theoretical_ratio']:.2f} = (J + (K+1)(L-J))/L = {j + (k + 1) * (depth - j)}/{depth}"
    theory_last = f"{h['theoretical_ratio_last_block']:.2f} = (J + (K+1)(L-J-5/6))/L"
    load, others = h["load_average_start"], h["others_cpu_share"]
    lines = [
        f"PERL benchmark | {h['device']}: {h['device_name']} | torch {h['torch']} | "
        f"open_clip {h['open_clip']} | {h['dtype']}",
        f"model {h['model']} (random weights), J={j} K={k} L={depth} | warm-up {s['warmup']}, "
        f"median of up to {s['repeats']} repeats (~{s['budget_s']:g} s per measurement)",
        f"peak memory: {h['memory']}",
        f"other processes: 1-min load {'n/a' if load is None else f'{load:.2f}'} before the run, "
        f"{'n/a' if others is None else f'{100 * others:.0f}%'} of all CPU time during it "
        "(they skew the figures)",
    ]
    evaluation_labels = {
        "decode_only": "decode only (ceiling)",
        "zero_shot_evaluate": "evaluate zero-shot CLIP",
        "predict": "predict (1 adapter, top-5)",
        "evaluate_jacobian": f"evaluate {seeds} seeds + Jacobian",
    }
    computed = {  # the cells of a row that its figures give only through a label or a sum
        "image": lambda row: {"label": WORKLOAD_LABELS[row["workload"]]},
        "text": lambda row: {"label": f"{row['prompts']} prompts", "cut": "yes" if row["cut"] else "no"},
        "seeds": lambda row: {
            "label": f"{row['seeds']} seeds together" if row["workload"] != "train_one_seed" else "1 seed",
            "per_seed": row["images_per_s"] / row["seeds"],
        },
        "evaluation": lambda row: {
            "label": evaluation_labels.get(row["workload"], f"evaluate {seeds} seeds")
        },
        "loops": lambda row: {
            "depths": ",".join(map(str, split_depths(row["split_layer"]))),
            "theory": block_ratio(
                split_depths(row["split_layer"])[0], k, depth, last_block_readout_only=True
            ),
        },
    }
    for part, (headers, template) in TABLES.items():
        if result.get(part):
            widths = [spec.split(".")[0] for _, name, spec, _ in Formatter().parse(template) if name]
            lines += ["", "".join(f"{head:{width}}" for head, width in zip(headers, widths, strict=True))]
            lines += [template.format(**{**row, **computed[part](row)}) for row in result[part]]

    def listed(values: dict, name: str, unit: str = "") -> str:
        return ", ".join(f"{name.format(n)}: {v:.2f}{unit}" for n, v in values.items())

    lines += [
        "",
        "ratios (same run)",
        f"PERL inference / zero-shot, per image: {listed(ratios['inference_vs_zero_shot'], 'batch {}')}"
        f"   (last block at the read-out; theory {theory_last})",
        "PERL inference, full last block / zero-shot: "
        f"{listed(ratios['inference_full_last_block_vs_zero_shot'], 'batch {}')}   (theory {theory})",
        f"PERL train step / zero-shot, per image: {listed(ratios['train_step_vs_zero_shot'], 'batch {}')}",
        f"text uncut / cut speed-up: {listed(ratios['text_uncut_vs_cut'], '{} prompts', 'x')}",
    ]
    if (together := ratios.get("seeds_together_vs_one_at_a_time")) is not None:
        lines.append(f"{seeds} seeds together / one at a time, images/s: {together:.2f}x")
    if evaluation := ratios.get("evaluation_vs_decode_only"):
        lines.append(f"evaluation / decode-only ceiling, images/s: {listed(evaluation, '{} decode')}")
    for decode, cost in ratios.get("jacobian_s_per_image_step", {}).items():
        lines.append(
            f"input-Jacobian norm ({decode} decode): {1000 * cost:.2f} ms per image, step and seed; a "
            f"benchmark adds about jacobian_images x (K+1) x seeds x that, e.g. 32 x {k + 1} x "
            f"{seeds} x {1000 * cost:.2f} ms = {32 * (k + 1) * seeds * cost:.1f} s"
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
