"""Per-run tables of one protocol -> paper-style tables, DVC metrics, per-step curves and plots."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from perl_pipeline.evaluation.report import protocol_report


def write_report(
    label: str,
    training_record: dict,
    *,
    protocol: str,
    benchmarks: Sequence[str],
    **inputs: pl.DataFrame | dict,
) -> tuple[pl.DataFrame, str, dict, pl.DataFrame, dict]:
    """Every report of `protocol` (`evaluation.report.protocol_report`) over `benchmarks`, from each
    one's ``runs_<benchmark>`` table and ``benchmark_<benchmark>`` block: results table, results
    Markdown, DVC metrics, per-step table and the figures {file name: Figure}."""
    runs = {b: inputs[f"runs_{b}"] for b in benchmarks}
    blocks = {b: inputs[f"benchmark_{b}"] for b in benchmarks if f"benchmark_{b}" in inputs}
    return protocol_report(protocol, runs, blocks, training_record, label)


def collect_trajectories(**tables: pl.DataFrame) -> pl.DataFrame:
    """The benchmarks' confidence trajectories (docs/method.md §6.10) in one table."""
    return pl.concat(list(tables.values()), how="vertical")
