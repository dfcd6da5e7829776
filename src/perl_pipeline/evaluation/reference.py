"""The PERL paper's reported numbers (arXiv 2605.18464v1), shipped in ``reference/`` as CSVs and
read through importlib.resources.
"""

from __future__ import annotations

import io
from importlib import resources

import polars as pl


def _read_reference(name: str) -> pl.DataFrame:
    """Read one of the CSVs shipped in this package's ``reference/`` folder."""
    resource = resources.files("perl_pipeline.evaluation").joinpath("reference").joinpath(name)
    return pl.read_csv(io.BytesIO(resource.read_bytes()))


def load_reported() -> pl.DataFrame:
    """The paper's reported numbers (base-to-novel, cross-dataset, domain generalisation).

    Columns ``source, protocol, setting, method, dataset`` (a ``reported_as`` key, "average" or
    "target_average"), ``metric, value`` (percent)."""
    return _read_reference("reported_results.csv").with_columns(pl.col("value").cast(pl.Float64))


def load_reported_params() -> pl.DataFrame:
    """The trainable-parameter counts the paper gives for each method."""
    return _read_reference("reported_trainable_params.csv")


def load_reported_ablations() -> pl.DataFrame:
    """The paper's ablation and dynamics numbers (Tables 3-4, Fig. 3, Figs. 4-7)."""
    return _read_reference("reported_ablations.csv").with_columns(pl.col("value").cast(pl.Float64))
