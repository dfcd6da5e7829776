"""Per-run tables of one protocol -> paper-style tables, DVC metrics, per-step curves and plots."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

REPORTS = {
    "base_to_novel": "base_to_novel_report",
    "cross_dataset": "cross_dataset_report",
    "domain_generalization": "domain_generalization_report",
    "all_classes": "all_classes_report",
}


def write_report(
    label: str,
    training_record: dict,
    *inputs: pl.DataFrame | dict,
    protocol: str,
    benchmarks: Sequence[str],
) -> tuple[pl.DataFrame, str, dict, pl.DataFrame, dict]:
    """Build every report of a protocol from its benchmarks' per-run tables.

    Args:
        label: a note under each report's heading (the demo says it is a demo).
        training_record: one of the protocol's training records (its trainable-parameter count
            goes into the parameters-vs-HM plot).
        inputs: the per-run tables of `benchmarks`, then their ``params:<b>.benchmark`` blocks
            (titles and reported-results keys), both in the order of `benchmarks`.
        protocol: base_to_novel, cross_dataset or domain_generalization.
        benchmarks: the protocol's benchmarks.

    Returns:
        results table (CSV), results Markdown, DVC metrics (JSON), per-step table (CSV, DVC
        plots), and the figures {file name: Figure}.
    """
    from perl_pipeline.benchmarks.spec import BenchmarkSpec
    from perl_pipeline.evaluation import plots, report
    from perl_pipeline.evaluation.metrics import per_step_table

    if len(inputs) != 2 * len(benchmarks):
        raise ValueError(
            f"write_report({protocol}) needs a runs table and a benchmark block for each of "
            f"{list(benchmarks)}, got {len(inputs)} inputs"
        )
    runs, blocks = inputs[: len(benchmarks)], inputs[len(benchmarks) :]
    specs = {name: BenchmarkSpec.from_params(block) for name, block in zip(benchmarks, blocks, strict=True)}
    names = report.paper_names(specs)
    titles = {name: paper.title for name, paper in names.items()}
    combined = pl.concat(runs, how="vertical")
    table, markdown = getattr(report, REPORTS[protocol])(
        combined, benchmarks=names, label=label, setup=setup_line(training_record)
    )
    figures = {
        "accuracy_per_step.png": plots.accuracy_per_step_figure(combined, titles=titles),
        "alignment_per_step.png": plots.alignment_per_step_figure(combined, titles=titles),
        "dynamics_per_step.png": plots.dynamics_per_step_figure(combined),
    }
    if protocol == "base_to_novel":
        hm = table.filter(pl.col("benchmark") == "average (mean of HMs)")["hm"].item()
        figures["params_vs_hm.png"] = plots.params_vs_hm_figure(hm, training_record["trainable_parameters"])
    metrics = {**_metrics(table), "trainable_parameters": training_record["trainable_parameters"]}
    return table, markdown, metrics, per_step_table(combined), figures


def collect_trajectories(*tables: pl.DataFrame) -> pl.DataFrame:
    """The benchmarks' confidence trajectories (docs/method.md §6.10) in one table."""
    return pl.concat(tables, how="vertical")


def setup_line(training_record: dict) -> str:
    """ "Few-shot draw: ...; projector init: ..." from a training record ("" if it names neither)."""
    parts = []
    draw = training_record.get("few_shot_draw")
    if draw:
        why = {"coop": "the CoOp lineage's images", "sorted": "paths sorted per class"}.get(draw, "")
        parts.append(f"Few-shot draw: {draw}" + (f" ({why})" if why else ""))
    init = training_record.get("projector_init")
    if init:
        parts.append(f"projector init: {init}")
    return "; ".join(parts) + "." if parts else ""


def _metrics(table: pl.DataFrame) -> dict:
    """{benchmark or average row: {metric: value}} for `dvc metrics show` / `dvc exp show` (and the
    ablation table of ``perl_pipeline.sweep``)."""
    columns = ("base", "novel", "hm", "accuracy", "zeroshot_base", "zeroshot_novel", "zeroshot_hm")
    columns += tuple(f"{c}_std" for c in ("base", "novel", "hm", "accuracy"))  # over seeds
    alignments = ("zeroshot_accuracy", "image_alignment_base", "text_alignment_base")
    keep = [c for c in (*columns, *alignments) if c in table.columns]
    return {
        row["benchmark"]: {c: round(row[c], 4) for c in keep if row[c] is not None}
        for row in table.select("benchmark", *keep).iter_rows(named=True)
    }
