"""The paper's reported numbers ship with the package and load as tables."""

from __future__ import annotations

import polars as pl

from perl_pipeline.evaluation.reference import load_reported, load_reported_params


def reported_value(protocol: str, setting: str, method: str, dataset: str, metric: str) -> float:
    return (
        load_reported()
        .filter(
            (pl.col("protocol") == protocol)
            & (pl.col("setting") == setting)
            & (pl.col("method") == method)
            & (pl.col("dataset") == dataset)
            & (pl.col("metric") == metric)
        )["value"]
        .item()
    )


def test_reference_data_ships_with_the_package() -> None:
    reported = load_reported()
    assert reported.columns == [
        "source",
        "protocol",
        "setting",
        "method",
        "dataset",
        "metric",
        "value",
    ]
    assert reported["source"].str.contains("PERL paper").all()
    assert set(reported["setting"]) == {"base_to_novel", "cross_dataset", "domain_generalization"}
    # the paper's headline numbers
    unified = "unified_1epoch_16shot"
    assert reported_value(unified, "base_to_novel", "PERL", "average", "base") == 73.97
    assert reported_value(unified, "base_to_novel", "PERL", "average", "novel") == 75.74
    assert reported_value(unified, "base_to_novel", "PERL", "average", "hm_mean_of_datasets") == (74.79)
    assert reported_value(unified, "cross_dataset", "PERL", "target_average", "accuracy") == 65.56
    default = "baselines_default_settings"
    dg = reported_value(default, "domain_generalization", "PERL", "target_average", "accuracy")
    assert dg == 59.95
    params = load_reported_params()
    assert params.filter(pl.col("method") == "PERL")["trainable_params_numeric"].item() == 6402
