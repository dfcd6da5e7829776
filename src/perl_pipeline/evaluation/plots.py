"""Figures of the evaluation: PERL against the reported baselines, and the per-step dynamics.

Figures are built directly, never through pyplot, so nothing here touches global matplotlib state
and it all renders headless: ``figure.savefig(buffer, format="png")``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import polars as pl
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from perl_pipeline.evaluation.metrics import GROUPS, per_step_table
from perl_pipeline.evaluation.reference import load_reported, load_reported_params

logger = logging.getLogger(__name__)

_SUBSET_TITLES = {"base": "Base classes", "novel": "Novel classes", "all": "All classes"}
_SUBSET_STYLES = {"base": "-", "novel": "--", "all": ":"}
_PARAMS_ALIASES = {"CLIP zero-shot": "CLIP"}  # reported_trainable_params.csv -> results names


def params_vs_hm_figure(
    ours_hm: float, ours_params: int = 6402, *, ours_label: str = "PERL (ours)"
) -> Figure:
    """Trainable parameters against base-to-novel average HM: ours beside the paper's methods."""
    reported = load_reported().filter(
        protocol="unified_1epoch_16shot",
        setting="base_to_novel",
        dataset="average",
        metric="hm_mean_of_datasets",
    )
    params = load_reported_params().select(
        pl.col("method").replace(_PARAMS_ALIASES), pl.col("trainable_params_numeric").alias("params")
    )
    points = reported.select("method", hm="value").join(params, on="method", how="inner").sort("params")
    clip = points.filter(pl.col("params") == 0)
    methods = points.filter(pl.col("params") > 0)

    figure = Figure(figsize=(7.0, 4.8), layout="constrained")
    ax = figure.add_subplot()
    ax.scatter(
        methods["params"], methods["hm"], color="tab:gray", zorder=2, label="reported (PERL paper, Table 1)"
    )
    for method, params, hm in methods.select("method", "params", "hm").iter_rows():
        ax.annotate(method, (params, hm), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for hm in clip["hm"]:
        ax.axhline(
            hm, color="tab:blue", linestyle="--", linewidth=1, label=f"CLIP zero-shot (0 params), {hm:.2f}"
        )
    ours = f"{ours_label}, {ours_hm:.2f}"
    ax.scatter([ours_params], [ours_hm], marker="*", s=200, color="tab:red", zorder=3, label=ours)
    ax.set(xscale="log", xlabel="trainable parameters (log scale)", ylabel="base-to-novel average HM (%)")
    ax.set_title("Parameters vs. harmonic mean, CLIP ViT-B/16")
    ax.margins(x=0.12)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure


def _line(
    ax: Axes, rows: pl.DataFrame, metric: str, style: str, color: object, label: str, band: bool = False
) -> None:
    """One line of `metric` over steps (nothing when `rows` is empty), with a ±std band if `band` (the
    band only where the std is defined)."""
    if rows.is_empty():
        return
    steps, mean = rows["step"].to_numpy(), rows[metric].to_numpy()
    ax.plot(steps, mean, style, marker="o", markersize=3, color=color, label=label)
    std = rows[f"{metric}_std"].fill_null(0.0).to_numpy() if band else None
    if std is not None and std.any():
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)


def _colors(benchmarks: list[str]) -> dict[str, object]:
    """A fixed colour per benchmark, shared by all axes of a figure."""
    palette = colormaps["tab20"] if len(benchmarks) > 10 else colormaps["tab10"]
    return {b: palette(i % palette.N) for i, b in enumerate(benchmarks)}


def _figure_legend(figure: Figure, axes: Sequence[Axes]) -> None:
    """One legend for the whole figure, outside the axes, each label once."""
    entries: dict[str, Artist] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels, strict=True):
            entries.setdefault(label, handle)
    figure.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=7)


def accuracy_per_step_figure(runs: pl.DataFrame, *, titles: Mapping[str, str] | None = None) -> Figure:
    """Top-1 accuracy (mean ± std over seeds) at every reasoning step."""
    table = per_step_table(runs)
    subsets = table["subset"].unique(maintain_order=True).to_list()
    figure = Figure(figsize=(4.2 * max(len(subsets), 1), 3.8), layout="constrained")
    if not subsets:
        logger.warning("no evaluations to plot")
        figure.add_subplot().set_title("no evaluations")
        return figure
    colors = _colors(table["benchmark"].unique(maintain_order=True).to_list())
    axes = figure.subplots(1, len(subsets), squeeze=False, sharey=True)[0]
    for ax, subset in zip(axes, subsets, strict=True):
        rows = table.filter(pl.col("subset") == subset)
        for (benchmark,), line in rows.group_by("benchmark", maintain_order=True):
            label = (titles or {}).get(benchmark, benchmark)
            _line(ax, line, "accuracy", "-", colors[benchmark], label, band=True)
        if rows["benchmark"].n_unique() > 1:
            mean = rows.group_by("step").agg(pl.col("accuracy").mean()).sort("step")
            label = "mean over benchmarks"
            ax.plot(mean["step"], mean["accuracy"], "-", color="black", linewidth=2.5, label=label)
        ax.set(title=_SUBSET_TITLES.get(subset, subset), xlabel="reasoning step (0 = zero-shot CLIP)")
        ax.set_xticks(rows["step"].unique().sort().to_list())
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy (%)")
    _figure_legend(figure, axes)
    return figure


def alignment_per_step_figure(runs: pl.DataFrame, *, titles: Mapping[str, str] | None = None) -> Figure:
    """Alignment with zero-shot CLIP (mean ± std over seeds) at every reasoning step."""
    table = per_step_table(runs)
    figure = Figure(figsize=(9.0, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, squeeze=False)[0]
    colors = _colors(table["benchmark"].unique(maintain_order=True).to_list())
    panels = (
        ("image_alignment", "image: mean cos(v(0), v(k))"),
        ("text_alignment", "text: mean cos(t(0), t(k))"),
    )
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for (benchmark, subset), rows in table.group_by("benchmark", "subset", maintain_order=True):
            label = f"{(titles or {}).get(benchmark, benchmark)} ({subset})"
            _line(ax, rows, metric, _SUBSET_STYLES.get(subset, "-."), colors[benchmark], label, band=True)
        ax.set(title=title, xlabel="reasoning step (0 = zero-shot CLIP)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("cosine similarity")
    if table.height:
        _figure_legend(figure, axes)
    else:
        logger.warning("no evaluations to plot")
    return figure


def dynamics_per_step_figure(runs: pl.DataFrame) -> Figure:
    """The paper's dynamics (Figs. 4, 5, 7, 8; docs/method.md §6.10) per step, averaged over benchmarks."""
    table = per_step_table(runs)
    average = (
        table.group_by("subset", "step", maintain_order=True).agg(pl.exclude("benchmark").mean()).sort("step")
    )
    figure = Figure(figsize=(13.0, 3.6), layout="constrained")
    axes = figure.subplots(1, 4, squeeze=False)[0]
    panels = (
        ("confidence", "target-class confidence (%)"),
        ("brier", "Brier score"),
        ("jacobian_norm", "‖∂z_target/∂x‖"),
    )
    subsets = average["subset"].unique(maintain_order=True).to_list()
    for ax, (metric, label) in zip(axes, panels, strict=False):
        for subset in subsets:
            rows = average.filter((pl.col("subset") == subset) & pl.col(metric).is_not_null())
            style = _SUBSET_STYLES.get(subset, "-.")
            _line(ax, rows, metric, style, "black", _SUBSET_TITLES.get(subset, subset))
        ax.set_ylabel(label)
    for subset in subsets:
        for group, color in zip(GROUPS, colormaps["tab10"].colors, strict=False):
            metric = f"kl_median_{group}"
            rows = average.filter((pl.col("subset") == subset) & (pl.col("step") > 0) & (pl.col(metric) > 0))
            label = f"{GROUPS[group].replace(' ', '')} ({subset})"
            _line(axes[3], rows, metric, _SUBSET_STYLES.get(subset, "-."), color, label)
    axes[3].set(yscale="log", ylabel="median KL(p_k ‖ p_0)")
    for ax in axes:
        ax.set_xlabel("step k")
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=6)
    if not table.height:
        logger.warning("no evaluations to plot")
    return figure
