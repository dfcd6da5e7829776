"""The per-benchmark numbers of the CoOp few-shot protocols (docs/method.md §6) from the per-run
table that `evaluation.evaluate` writes. This module never imports torch (kedro-viz loads it).

The per-run evaluation table ("runs", `RUN_COLUMNS`) has one row per (benchmark, seed, subset,
step): subset "base" | "novel" | "all", step 0..K (0 = zero-shot), accuracy (percent), n_images,
image_alignment (mean cos(v(0), v(step)) over the test images), text_alignment (mean
cos(t(0), t(step)) over the class prompts), then the dynamics (docs/method.md §6.10): confidence
(mean target-class probability, percent), brier, jacobian_norm (null when off) and, per transition
group g of `GROUPS`, n_<g> and the quartiles kl_median_<g>, kl_q1_<g>, kl_q3_<g> of
KL(p_step ‖ p_0) over the group's images (null when it is empty).

Conventions: a value is the mean over seeds, its ``*_std`` the sample std over seeds (ddof = 1;
null for a single seed). The per-dataset HM is ``2BN / (B + N)`` of the seed-mean base and novel;
``hm_std`` is the spread of the per-seed HMs and ``hm_per_seed_mean`` their mean (≤ ``hm``, the HM
being concave). Averages run over the benchmarks present: their point value uses every seed, their
``*_std`` the per-seed average over the seeds every averaged benchmark has.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence

import polars as pl

logger = logging.getLogger(__name__)

GROUPS: dict[str, str] = {
    "cc": "correct → correct",
    "wc": "wrong → correct",
    "cw": "correct → wrong",
    "ww": "wrong → wrong",
}
"""Transition groups by correctness at step 0 and step K, and their names."""
DYNAMICS_COLUMNS: tuple[str, ...] = (
    "confidence",
    "brier",
    "jacobian_norm",
    *(f"{c}_{g}" for g in GROUPS for c in ("n", "kl_median", "kl_q1", "kl_q3")),
)
"""The dynamics columns of the per-run table (docs/method.md §6.10)."""
RUN_COLUMNS: tuple[str, ...] = (
    *("benchmark", "seed", "subset", "step", "accuracy", "n_images", "image_alignment", "text_alignment"),
    *DYNAMICS_COLUMNS,
)
"""Columns of the per-run evaluation table (the data contract)."""
TRAJECTORY_COLUMNS: tuple[str, ...] = (
    *("benchmark", "seed", "subset", "image", "path", "change", "role", "class", "step", "probability"),
)
"""Columns of the confidence-trajectory table: image = test index, path = its file (null if none),
change = "gain" | "loss", role = "target" | "step0_winner", class = original label (§6.10)."""

AVERAGE_MEAN_OF_HMS = "average (mean of HMs)"
"""Base-to-novel average row, PERL-paper convention (Tables 1/5): mean of the per-dataset HMs."""
AVERAGE_HM_OF_MEANS = "average (HM of means)"
"""Base-to-novel average row, CoOp-lineage convention: HM of the mean base / mean novel."""
TARGET_AVERAGE = "target average"
"""Transfer average row: mean over the target benchmarks (the source is excluded)."""

_KEYS = ["benchmark", "seed"]


def harmonic_mean(base: float, novel: float) -> float:
    """Harmonic mean of base and novel accuracy, ``2BN / (B + N)``."""
    if base < 0 or novel < 0:
        raise ValueError(f"accuracies must be non-negative, got base={base}, novel={novel}")
    if base + novel == 0:
        return 0.0
    return 2.0 * base * novel / (base + novel)


def hm_rounding_tolerance(base: float, novel: float, decimals: int = 2) -> float:
    """Largest gap between a printed HM and ``2BN/(B+N)`` of the printed B and N due to rounding."""
    # The HM's own half unit plus B's and N's, propagated by dHM/dB = 2N²/(B+N)², dHM/dN = 2B²/(B+N)².
    half_unit = 0.5 * 10.0 ** (-decimals)
    total = base + novel
    if total == 0:
        return 2 * half_unit
    gradient_sum = 2.0 * (base**2 + novel**2) / total**2
    return half_unit * (1.0 + gradient_sum)


def _hm_expr(base: str | pl.Expr, novel: str | pl.Expr) -> pl.Expr:
    """`harmonic_mean` as a polars expression (0 where both are 0) of two columns or expressions."""
    b, n = (pl.col(x) if isinstance(x, str) else x for x in (base, novel))
    return pl.when(b + n == 0).then(0.0).otherwise(2.0 * b * n / (b + n))


# --------------------------------------------------------------------------- table helpers


def _validate(runs: pl.DataFrame) -> None:
    """Check the data contract: required columns, one row per (benchmark, seed, subset, step)."""
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}; expected {list(RUN_COLUMNS)}")
    key = ["benchmark", "seed", "subset", "step"]
    duplicated = runs.select(key).is_duplicated()
    if duplicated.any():
        example = runs.filter(duplicated).select(key).row(0)
        raise ValueError(f"runs table has duplicate rows for (benchmark, seed, subset, step) = {example}")


def _final_step(runs: pl.DataFrame, final_step: int | None) -> int:
    """The step reported as "ours" (default: the largest present); every run needs it and step 0."""
    if runs.is_empty():
        return 0 if final_step is None else final_step
    step = int(runs["step"].max()) if final_step is None else final_step
    for required in sorted({0, step}):
        lacking = (
            runs.group_by("benchmark", "seed", "subset", maintain_order=True)
            .agg((pl.col("step") == required).any().alias("has"))
            .filter(~pl.col("has"))
        )
        if lacking.height:
            raise ValueError(
                f"(benchmark, seed, subset) {lacking.drop('has').rows()} have no evaluation "
                f"at step {required}"
            )
    return step


def _at(runs: pl.DataFrame, subset: str, step: int, names: dict[str, str]) -> pl.DataFrame:
    """Rows of one subset at one step, keyed by (benchmark, seed), with columns renamed."""
    return runs.filter((pl.col("subset") == subset) & (pl.col("step") == step)).select(
        *_KEYS, *(pl.col(src).alias(dst) for src, dst in names.items())
    )


def _seed_stats(per_seed: pl.DataFrame, by: list[str], metrics: Sequence[str]) -> pl.DataFrame:
    """Mean and sample std over seeds of each metric, grouped by `by`; adds ``n_seeds``."""
    return per_seed.group_by(by, maintain_order=True).agg(
        pl.col("seed").n_unique().cast(pl.Int64).alias("n_seeds"),
        *(c for m in metrics for c in (pl.col(m).mean(), pl.col(m).std(ddof=1).alias(f"{m}_std"))),
    )


def _common_seeds(per_seed: pl.DataFrame) -> pl.DataFrame:
    """Restrict a per-(benchmark, seed) frame to the seeds that every benchmark has."""
    common = (
        per_seed.group_by("seed", maintain_order=True)
        .agg(n=pl.col("benchmark").n_unique())
        .filter(pl.col("n") == per_seed["benchmark"].n_unique())["seed"]
    )
    if common.len() < per_seed["seed"].n_unique():
        logger.warning(
            "seeds differ across benchmarks; the stds of the average rows use only the "
            "%d seed(s) common to all of them",
            common.len(),
        )
    return per_seed.filter(pl.col("seed").is_in(common.implode()))


def _average_row(
    stats: pl.DataFrame,
    per_seed: pl.DataFrame,
    name: str,
    means: dict[str, pl.Expr],
    seed_values: dict[str, pl.Expr],
    seed_means: dict[str, pl.Expr] | None = None,
) -> pl.DataFrame:
    """One average row."""
    per_seed_avg = per_seed.group_by("seed", maintain_order=True).agg(
        pl.col(c).mean() for c in per_seed.columns if c not in _KEYS
    )
    point = stats.select(**means)
    spread = per_seed_avg.select(
        *(expr.std(ddof=1).alias(f"{m}_std") for m, expr in seed_values.items()),
        *(expr.mean().alias(m) for m, expr in (seed_means or {}).items()),
        pl.len().cast(pl.Int64).alias("n_seeds"),
    )
    return pl.concat([point, spread], how="horizontal").with_columns(
        benchmark=pl.lit(name), role=pl.lit("average")
    )


def _assemble(
    rows: list[pl.DataFrame], step: int, metrics: Sequence[str], extra: Sequence[str] = ()
) -> pl.DataFrame:
    """Stack a protocol's benchmark and average rows into its summary columns."""
    columns = ["benchmark", "role", "final_step", "n_seeds", *(c for m in metrics for c in (m, f"{m}_std"))]
    return (
        pl.concat(rows, how="diagonal_relaxed")
        .with_columns(final_step=pl.lit(step, dtype=pl.Int64))
        .select(*columns, *extra)
    )


# --------------------------------------------------------------------------- protocol tables


_ALIGNMENTS = ("image_alignment_base", "image_alignment_novel", "text_alignment_base", "text_alignment_novel")
B2N_METRICS: tuple[str, ...] = (
    *("base", "novel", "hm", "zeroshot_base", "zeroshot_novel", "zeroshot_hm"),
    *_ALIGNMENTS,
)
"""Metrics of `summarize_base_to_novel`, each followed by ``<metric>_std`` in its output."""
_B2N_HMS = {"hm": ("base", "novel"), "zeroshot_hm": ("zeroshot_base", "zeroshot_novel")}
_B2N_PLAIN = tuple(m for m in B2N_METRICS if m not in _B2N_HMS)  # averaged as they are


def summarize_base_to_novel(runs: pl.DataFrame, final_step: int | None = None) -> pl.DataFrame:
    """Per-benchmark base-to-novel results and the two 11-dataset average conventions."""
    _validate(runs)
    runs = runs.filter(pl.col("subset").is_in(["base", "novel"]))
    step = _final_step(runs, final_step)

    def subset(name: str) -> pl.DataFrame:
        renamed = {"accuracy": name, **{f"{a}_alignment": f"{a}_alignment_{name}" for a in ("image", "text")}}
        final = _at(runs, name, step, renamed)
        return final.join(_at(runs, name, 0, {"accuracy": f"zeroshot_{name}"}), on=_KEYS)

    base, novel = subset("base"), subset("novel")
    per_seed = base.join(novel, on=_KEYS, how="inner", maintain_order="left")
    unpaired = base.height + novel.height - 2 * per_seed.height
    if unpaired:
        logger.warning(
            "%d (benchmark, seed) evaluations lack their base or novel half and are "
            "left out of the base-to-novel summary",
            unpaired,
        )
    per_seed = per_seed.with_columns(**{hm: _hm_expr(b, n) for hm, (b, n) in _B2N_HMS.items()}).select(
        *_KEYS, *B2N_METRICS
    )

    stats = (
        _seed_stats(per_seed, ["benchmark"], B2N_METRICS)
        .with_columns(role=pl.lit("benchmark"), **{f"{hm}_per_seed_mean": pl.col(hm) for hm in _B2N_HMS})
        .with_columns(**{hm: _hm_expr(b, n) for hm, (b, n) in _B2N_HMS.items()})
    )

    averages = _base_to_novel_averages(stats, _common_seeds(per_seed)) if stats.height else []
    return _assemble([stats, *averages], step, B2N_METRICS, [f"{hm}_per_seed_mean" for hm in _B2N_HMS])


def _base_to_novel_averages(stats: pl.DataFrame, per_seed: pl.DataFrame) -> list[pl.DataFrame]:
    """The "mean of HMs" and "HM of means" rows of `summarize_base_to_novel`."""
    plain = {m: pl.col(m).mean() for m in _B2N_PLAIN}
    plain_seeds = {m: pl.col(m) for m in _B2N_PLAIN}
    each_seed_hm = {hm: pl.col(hm) for hm in _B2N_HMS}  # the mean of the per-seed HMs...
    seed_hms = {hm: _hm_expr(b, n) for hm, (b, n) in _B2N_HMS.items()}  # ... or the HM of their means
    mean_of_hms = {c: pl.col(c).mean() for c in (*_B2N_HMS, *(f"{hm}_per_seed_mean" for hm in _B2N_HMS))}
    hm_of_means = {hm: _hm_expr(pl.col(b).mean(), pl.col(n).mean()) for hm, (b, n) in _B2N_HMS.items()}
    seed_hm_means = {f"{hm}_per_seed_mean": expr for hm, expr in seed_hms.items()}
    return [
        _average_row(stats, per_seed, AVERAGE_MEAN_OF_HMS, plain | mean_of_hms, plain_seeds | each_seed_hm),
        _average_row(
            stats, per_seed, AVERAGE_HM_OF_MEANS, plain | hm_of_means, plain_seeds | seed_hms, seed_hm_means
        ),
    ]


TRANSFER_METRICS: tuple[str, ...] = ("accuracy", "zeroshot_accuracy", "image_alignment", "text_alignment")
"""Metrics of `summarize_transfer`, each followed by ``<metric>_std`` in its output."""


def summarize_transfer(
    runs: pl.DataFrame, source: str = "imagenet", final_step: int | None = None
) -> pl.DataFrame:
    """Cross-dataset / domain-generalisation results: accuracy ± std per benchmark, target average."""
    _validate(runs)
    runs = runs.filter(pl.col("subset") == "all")
    step = _final_step(runs, final_step)
    per_seed = (
        _at(runs, "all", step, {m: m for m in ("accuracy", "image_alignment", "text_alignment")})
        .join(_at(runs, "all", 0, {"accuracy": "zeroshot_accuracy"}), on=_KEYS, maintain_order="left")
        .select(*_KEYS, *TRANSFER_METRICS)
    )

    role = pl.when(pl.col("benchmark") == source).then(pl.lit("source")).otherwise(pl.lit("target"))
    stats = (  # the source first
        _seed_stats(per_seed, ["benchmark"], TRANSFER_METRICS)
        .with_columns(role=role)
        .sort(pl.col("role") != "source", maintain_order=True)
    )
    if stats.height and source and source not in stats["benchmark"]:  # "": no source (all_classes)
        logger.warning("source benchmark %r is not in the transfer runs", source)

    rows = [stats]
    targets = stats.filter(pl.col("role") == "target")
    if targets.height:
        seeds = _common_seeds(per_seed.filter(pl.col("benchmark") != source))
        columns = {m: pl.col(m) for m in TRANSFER_METRICS}
        means = {m: column.mean() for m, column in columns.items()}
        rows.append(_average_row(targets, seeds, TARGET_AVERAGE, means, columns))
    return _assemble(rows, step, TRANSFER_METRICS)


def per_step_table(runs: pl.DataFrame) -> pl.DataFrame:
    """Mean ± std over seeds of accuracy, alignment and the dynamics at every step."""
    _validate(runs)
    metrics = ("accuracy", "image_alignment", "text_alignment")
    benchmark_order = runs["benchmark"].unique(maintain_order=True).to_list()
    counts = [f"n_{g}" for g in GROUPS]
    dynamics = [c for c in DYNAMICS_COLUMNS if c not in counts]
    stats = _seed_stats(runs, ["benchmark", "subset", "step"], metrics)
    sizes = runs.group_by("benchmark", "subset", "step", maintain_order=True).agg(
        pl.col("n_images").mean(),
        *(c for m in dynamics for c in (pl.col(m).mean(), pl.col(m).std(ddof=1).alias(f"{m}_std"))),
        *(pl.col(c).mean() for c in counts),
    )
    subset_rank = {"base": 0, "novel": 1, "all": 2}
    return stats.join(sizes, on=["benchmark", "subset", "step"], maintain_order="left").sort(
        pl.col("benchmark").replace_strict(benchmark_order, list(range(len(benchmark_order)))),
        pl.col("subset").replace_strict(subset_rank, default=len(subset_rank)),
        "subset",
        "step",
    )


def step_means(per_step: Iterable[Mapping], subset: str, benchmarks: Collection[str] | None = None) -> str:
    """Mean accuracy over benchmarks (all, or those of `benchmarks`) at each step of a per-step
    table's rows (values may be DVC's strings), as ``"a / b / ..."`` for steps 0..K."""
    by_step: dict[int, list[float]] = {}
    for point in per_step:
        if point["subset"] == subset and (benchmarks is None or point["benchmark"] in benchmarks):
            by_step.setdefault(int(point["step"]), []).append(float(point["accuracy"]))
    return " / ".join(f"{sum(v) / len(v):.2f}" for _, v in sorted(by_step.items()))
