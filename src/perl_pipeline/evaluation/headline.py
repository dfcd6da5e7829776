"""One seed's headline metrics from the per-run table, as an adapter file records them."""

from __future__ import annotations

import polars as pl

from perl_pipeline.evaluation.metrics import harmonic_mean


def headline_metrics(runs: pl.DataFrame, seed: int) -> dict:
    """Accuracy (percent) of `seed` per class subset at step K (the largest step) and at step 0
    (zero-shot CLIP), with the harmonic mean when there are base and novel subsets."""
    rows = runs.filter(pl.col("seed") == seed)
    if rows.is_empty():
        raise ValueError(f"the runs table has no rows for seed {seed}")
    final = int(rows["step"].max())

    def at(step: int) -> dict[str, float]:
        chosen = rows.filter(pl.col("step") == step).sort("subset")
        return {s: round(float(a), 4) for s, a in zip(chosen["subset"], chosen["accuracy"], strict=True)}

    ours, zero = at(final), at(0)
    images = rows.filter(pl.col("step") == final).sort("subset")
    metrics = {
        "step": final,
        "accuracy": ours,
        "zero_shot": zero,
        "test_images": {s: int(n) for s, n in zip(images["subset"], images["n_images"], strict=True)},
    }
    if {"base", "novel"} <= ours.keys():
        metrics["hm"] = round(harmonic_mean(ours["base"], ours["novel"]), 4)
        metrics["zero_shot_hm"] = round(harmonic_mean(zero["base"], zero["novel"]), 4)
    return metrics
