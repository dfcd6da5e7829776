"""Tests of the protocol metrics (docs/method.md §6.7) on small hand-made evaluation tables."""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable

import polars as pl
import pytest

from perl_pipeline.evaluation.evaluate import RUN_SCHEMA
from perl_pipeline.evaluation.metrics import (
    AVERAGE_HM_OF_MEANS,
    AVERAGE_MEAN_OF_HMS,
    B2N_METRICS,
    DYNAMICS_COLUMNS,
    GROUPS,
    RUN_COLUMNS,
    TARGET_AVERAGE,
    harmonic_mean,
    hm_rounding_tolerance,
    per_step_table,
    summarize_base_to_novel,
    summarize_transfer,
)

Accuracy = Callable[[str, int, str, int], float]


def default_accuracy(benchmark: str, seed: int, subset: str, step: int) -> float:
    """A deterministic accuracy that depends on every key (so means and stds are non-trivial)."""
    offset = sum(map(ord, benchmark)) % 17 + (3.0 if subset == "novel" else 0.0)
    return 40.0 + offset + 2.0 * step + 0.5 * seed * (1 + step % 2)


def make_runs(
    benchmarks: Iterable[str] = ("imagenet", "caltech101"),
    seeds: Iterable[int] = (1, 2, 3),
    subsets: Iterable[str] = ("base", "novel"),
    steps: int = 4,
    accuracy: Accuracy = default_accuracy,
) -> pl.DataFrame:
    """A per-run evaluation table following the data contract, one row per key."""
    rows = [
        {
            "benchmark": benchmark,
            "seed": seed,
            "subset": subset,
            "step": step,
            "accuracy": accuracy(benchmark, seed, subset, step),
            "n_images": 100,
            "image_alignment": 1.0 - 0.01 * step * seed,
            "text_alignment": 1.0 - 0.02 * step,
            **dynamics(seed, step),
        }
        for benchmark, seed, subset, step in itertools.product(benchmarks, seeds, subsets, range(steps + 1))
    ]
    return pl.DataFrame(rows, schema=dict.fromkeys(RUN_COLUMNS)).cast(RUN_SCHEMA)


def dynamics(seed: int, step: int) -> dict[str, float | int | None]:
    """Dynamics columns that depend on seed and step (the cw group empty: its KL null)."""
    counts = {"cc": 50, "wc": 10 + step, "cw": 0, "ww": 40 - step}
    values = {
        "confidence": 60.0 + step + seed,
        "brier": 0.4 - 0.01 * step * seed,
        "jacobian_norm": 17.0 - 0.1 * step,
    }
    for g, n in counts.items():
        values[f"n_{g}"] = n
        for i, q in enumerate(("kl_q1", "kl_median", "kl_q3")):
            values[f"{q}_{g}"] = None if n == 0 else 0.01 * step * (i + 1) * seed
    return values


def final_step_runs(values: dict[tuple[str, int, str], float], steps: int = 4) -> pl.DataFrame:
    """Runs whose accuracy at the last step is `values[(benchmark, seed, subset)]` (step 0: -10)."""
    benchmarks = list(dict.fromkeys(k[0] for k in values))
    seeds = sorted({k[1] for k in values})
    subsets = list(dict.fromkeys(k[2] for k in values))

    def accuracy(benchmark: str, seed: int, subset: str, step: int) -> float:
        return values[(benchmark, seed, subset)] - 10.0 * (steps - step) / steps

    return make_runs(benchmarks, seeds, subsets, steps, accuracy)


# Hand-made example: A is lopsided (high base, low novel), B the other way round, so the mean of
# the per-dataset HMs and the HM of the mean base / mean novel clearly differ.
EXAMPLE = {
    ("a", 1, "base"): 88.0,
    ("a", 1, "novel"): 30.0,
    ("a", 2, "base"): 92.0,
    ("a", 2, "novel"): 34.0,
    ("b", 1, "base"): 48.0,
    ("b", 1, "novel"): 70.0,
    ("b", 2, "base"): 52.0,
    ("b", 2, "novel"): 74.0,
}


def _row(table: pl.DataFrame, benchmark: str) -> dict:
    return table.filter(pl.col("benchmark") == benchmark).row(0, named=True)


def test_modules_import_without_torch() -> None:
    code = (
        "import sys; import perl_pipeline.evaluation.metrics, perl_pipeline.evaluation.report, "
        "perl_pipeline.evaluation.plots; assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- HM arithmetic


def test_harmonic_mean_arithmetic() -> None:
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(70.0, 70.0) == pytest.approx(70.0)
    assert harmonic_mean(100.0, 0.0) == 0.0
    assert harmonic_mean(0.0, 0.0) == 0.0
    # the paper's PERL ImageNet cell: 75.16 / 70.87 / 72.95
    assert round(harmonic_mean(75.16, 70.87), 2) == 72.95
    with pytest.raises(ValueError):
        harmonic_mean(-1.0, 50.0)


def test_hm_rounding_tolerance() -> None:
    # B = N: dHM/dB + dHM/dN = 1, so the bound is 0.005 (HM) + 0.005 (inputs).
    assert hm_rounding_tolerance(70.0, 70.0) == pytest.approx(0.01)
    assert hm_rounding_tolerance(90.0, 10.0) > 0.01
    assert hm_rounding_tolerance(70.0, 70.0, decimals=1) == pytest.approx(0.1)


# --------------------------------------------------------------------------- base-to-novel


def test_base_to_novel_per_benchmark_means_stds_and_hm() -> None:
    table = summarize_base_to_novel(final_step_runs(EXAMPLE))
    a = _row(table, "a")
    assert (a["role"], a["n_seeds"], a["final_step"]) == ("benchmark", 2, 4)
    assert a["base"] == pytest.approx(90.0)
    assert a["novel"] == pytest.approx(32.0)
    assert a["base_std"] == pytest.approx(statistics.stdev([88.0, 92.0]))
    assert a["novel_std"] == pytest.approx(statistics.stdev([30.0, 34.0]))
    # per-dataset HM = 2BN/(B+N) of the seed means; its std is the spread of per-seed HMs
    assert a["hm"] == pytest.approx(harmonic_mean(90.0, 32.0))
    per_seed = [harmonic_mean(88.0, 30.0), harmonic_mean(92.0, 34.0)]
    assert a["hm_std"] == pytest.approx(statistics.stdev(per_seed))
    assert a["hm_per_seed_mean"] == pytest.approx(statistics.mean(per_seed))
    assert a["hm_per_seed_mean"] < a["hm"]
    # zero-shot = step 0 (10 points lower in this example)
    assert a["zeroshot_base"] == pytest.approx(80.0)
    assert a["zeroshot_hm"] == pytest.approx(harmonic_mean(80.0, 22.0))
    # alignment at the final step: 1 - 0.01 * step * seed and 1 - 0.02 * step
    assert a["image_alignment_base"] == pytest.approx(1.0 - 0.04 * 1.5)
    assert a["image_alignment_base_std"] == pytest.approx(statistics.stdev([0.96, 0.92]))
    assert a["text_alignment_novel"] == pytest.approx(0.92)


def test_both_average_conventions_on_hand_made_example() -> None:
    table = summarize_base_to_novel(final_step_runs(EXAMPLE))
    assert table["benchmark"].to_list() == ["a", "b", AVERAGE_MEAN_OF_HMS, AVERAGE_HM_OF_MEANS]
    mean_of_hms, hm_of_means = _row(table, AVERAGE_MEAN_OF_HMS), _row(table, AVERAGE_HM_OF_MEANS)
    hm_a, hm_b = harmonic_mean(90.0, 32.0), harmonic_mean(50.0, 72.0)
    assert mean_of_hms["hm"] == pytest.approx((hm_a + hm_b) / 2)  # ≈ 53.11 (PERL paper)
    assert hm_of_means["hm"] == pytest.approx(harmonic_mean(70.0, 52.0))  # ≈ 59.67 (CoOp)
    assert hm_of_means["hm"] - mean_of_hms["hm"] > 6.0
    for row in (mean_of_hms, hm_of_means):
        assert row["role"] == "average"
        assert row["base"] == pytest.approx(70.0)
        assert row["novel"] == pytest.approx(52.0)
        assert row["n_seeds"] == 2
        # std over seeds of the per-seed average base: seed 1 = 68, seed 2 = 72
        assert row["base_std"] == pytest.approx(statistics.stdev([68.0, 72.0]))
    seed_mean_of_hms = [
        (harmonic_mean(88.0, 30.0) + harmonic_mean(48.0, 70.0)) / 2,
        (harmonic_mean(92.0, 34.0) + harmonic_mean(52.0, 74.0)) / 2,
    ]
    assert mean_of_hms["hm_std"] == pytest.approx(statistics.stdev(seed_mean_of_hms))
    seed_hm_of_means = [harmonic_mean(68.0, 50.0), harmonic_mean(72.0, 54.0)]
    assert hm_of_means["hm_std"] == pytest.approx(statistics.stdev(seed_hm_of_means))
    assert hm_of_means["zeroshot_hm"] == pytest.approx(harmonic_mean(60.0, 42.0))


def test_base_to_novel_column_layout() -> None:
    table = summarize_base_to_novel(make_runs())
    metric_columns = [c for m in B2N_METRICS for c in (m, f"{m}_std")]
    assert table.columns == [
        "benchmark",
        "role",
        "final_step",
        "n_seeds",
        *metric_columns,
        "hm_per_seed_mean",
        "zeroshot_hm_per_seed_mean",
    ]


def test_base_to_novel_final_step_override() -> None:
    runs = make_runs(steps=4)
    table = summarize_base_to_novel(runs, final_step=2)
    expected = statistics.mean(default_accuracy("imagenet", s, "base", 2) for s in (1, 2, 3))
    assert _row(table, "imagenet")["base"] == pytest.approx(expected)
    assert table["final_step"].unique().to_list() == [2]
    with pytest.raises(ValueError, match="step 7"):
        summarize_base_to_novel(runs, final_step=7)


def test_base_to_novel_with_a_single_benchmark_present() -> None:
    table = summarize_base_to_novel(make_runs(benchmarks=("dtd",)))
    dtd = _row(table, "dtd")
    for average in (AVERAGE_MEAN_OF_HMS, AVERAGE_HM_OF_MEANS):
        row = _row(table, average)
        for metric in ("base", "novel", "hm", "zeroshot_hm", "text_alignment_base"):
            assert row[metric] == pytest.approx(dtd[metric])


def test_base_to_novel_single_seed_has_no_std() -> None:
    table = summarize_base_to_novel(make_runs(seeds=(1,)))
    assert table["n_seeds"].to_list() == [1, 1, 1, 1]
    assert table["base_std"].is_null().all()
    assert table["hm_std"].is_null().all()


def test_base_to_novel_seeds_differing_across_benchmarks(caplog) -> None:
    runs = pl.concat([make_runs(benchmarks=("imagenet",)), make_runs(benchmarks=("dtd",), seeds=(1, 2))])
    with caplog.at_level(logging.WARNING):
        table = summarize_base_to_novel(runs)
    assert _row(table, "imagenet")["n_seeds"] == 3
    assert _row(table, "dtd")["n_seeds"] == 2
    assert _row(table, AVERAGE_MEAN_OF_HMS)["n_seeds"] == 2  # the seeds both benchmarks have
    assert "common" in caplog.text


def test_base_to_novel_drops_seeds_without_novel_half(caplog) -> None:
    runs = make_runs().filter(
        ~((pl.col("benchmark") == "imagenet") & (pl.col("seed") == 3) & (pl.col("subset") == "novel"))
    )
    with caplog.at_level(logging.WARNING):
        table = summarize_base_to_novel(runs)
    assert _row(table, "imagenet")["n_seeds"] == 2
    assert "lack their base or novel half" in caplog.text


def test_base_to_novel_ignores_transfer_rows_and_handles_empty_input() -> None:
    runs = pl.concat([make_runs(), make_runs(benchmarks=("imagenet_a",), subsets=("all",))])
    assert "imagenet_a" not in summarize_base_to_novel(runs)["benchmark"].to_list()
    empty = summarize_base_to_novel(make_runs().clear())
    assert empty.is_empty()
    assert empty.columns == summarize_base_to_novel(make_runs()).columns


def test_contract_violations_raise() -> None:
    runs = make_runs()
    with pytest.raises(ValueError, match="lacks columns"):
        summarize_base_to_novel(runs.drop("text_alignment"))
    with pytest.raises(ValueError, match="duplicate"):
        summarize_base_to_novel(pl.concat([runs, runs.head(1)]))
    with pytest.raises(ValueError, match="step 0"):
        summarize_base_to_novel(runs.filter(~((pl.col("step") == 0) & (pl.col("seed") == 2))))
    assert set(RUN_COLUMNS) == set(runs.columns)


# --------------------------------------------------------------------------- transfer


def test_transfer_average_excludes_the_source() -> None:
    runs = make_runs(benchmarks=("caltech101", "imagenet", "dtd"), subsets=("all",))
    table = summarize_transfer(runs, source="imagenet")
    assert table["benchmark"].to_list() == ["imagenet", "caltech101", "dtd", TARGET_AVERAGE]
    assert table["role"].to_list() == ["source", "target", "target", "average"]
    targets = table.filter(pl.col("role") == "target")
    average = _row(table, TARGET_AVERAGE)
    assert average["accuracy"] == pytest.approx(targets["accuracy"].mean())
    assert average["zeroshot_accuracy"] == pytest.approx(targets["zeroshot_accuracy"].mean())
    with_source = statistics.mean(table.filter(pl.col("role") != "average")["accuracy"])
    assert average["accuracy"] != pytest.approx(with_source)
    # std over seeds of the per-seed target mean
    per_seed = [
        statistics.mean(default_accuracy(b, s, "all", 4) for b in ("caltech101", "dtd")) for s in (1, 2, 3)
    ]
    assert average["accuracy_std"] == pytest.approx(statistics.stdev(per_seed))
    imagenet = _row(table, "imagenet")
    expected = [default_accuracy("imagenet", s, "all", 4) for s in (1, 2, 3)]
    assert imagenet["accuracy"] == pytest.approx(statistics.mean(expected))
    assert imagenet["accuracy_std"] == pytest.approx(statistics.stdev(expected))


def test_transfer_without_source_and_with_base_novel_rows() -> None:
    runs = pl.concat(
        [
            make_runs(benchmarks=("imagenet_v2", "imagenet_r"), subsets=("all",)),
            make_runs(benchmarks=("imagenet",), subsets=("base", "novel")),
        ]
    )
    table = summarize_transfer(runs)
    assert table["benchmark"].to_list() == ["imagenet_v2", "imagenet_r", TARGET_AVERAGE]
    assert summarize_transfer(runs.clear()).is_empty()


# --------------------------------------------------------------------------- per-step table


def test_per_step_table_shape_and_values() -> None:
    runs = pl.concat(
        [
            make_runs(benchmarks=("dtd", "eurosat"), steps=3),
            make_runs(benchmarks=("imagenet_a",), subsets=("all",), steps=3),
        ]
    )
    table = per_step_table(runs)
    assert table.shape == (2 * 2 * 4 + 1 * 1 * 4, 11 + 2 * 15 + 4)
    assert table.columns[:11] == [
        "benchmark",
        "subset",
        "step",
        "n_seeds",
        "accuracy",
        "accuracy_std",
        "image_alignment",
        "image_alignment_std",
        "text_alignment",
        "text_alignment_std",
        "n_images",
    ]
    assert table.select("benchmark", "subset").unique(maintain_order=True).rows() == [
        ("dtd", "base"),
        ("dtd", "novel"),
        ("eurosat", "base"),
        ("eurosat", "novel"),
        ("imagenet_a", "all"),
    ]
    row = table.filter(
        (pl.col("benchmark") == "dtd") & (pl.col("subset") == "novel") & (pl.col("step") == 1)
    ).row(0, named=True)
    values = [default_accuracy("dtd", s, "novel", 1) for s in (1, 2, 3)]
    assert row["accuracy"] == pytest.approx(statistics.mean(values))
    assert row["accuracy_std"] == pytest.approx(statistics.stdev(values))
    step0 = table.filter(pl.col("step") == 0)
    assert step0["image_alignment"].to_list() == pytest.approx([1.0] * step0.height)
    assert not math.isnan(row["image_alignment_std"])


def test_per_step_table_carries_the_dynamics() -> None:
    table = per_step_table(make_runs(benchmarks=("dtd",), steps=3))
    plain = [c for c in DYNAMICS_COLUMNS if not c.startswith("n_")]
    assert table.columns[11:] == [
        *(c for m in plain for c in (m, f"{m}_std")),
        *(f"n_{g}" for g in GROUPS),
    ]
    row = table.filter((pl.col("subset") == "novel") & (pl.col("step") == 2)).row(0, named=True)
    for column in ("confidence", "brier", "jacobian_norm", "kl_median_wc", "kl_q3_cc"):
        values = [dynamics(s, 2)[column] for s in (1, 2, 3)]
        assert row[column] == pytest.approx(statistics.mean(values))
        assert row[f"{column}_std"] == pytest.approx(statistics.stdev(values))
    assert (row["n_cc"], row["n_wc"], row["n_cw"], row["n_ww"]) == (50.0, 12.0, 0.0, 38.0)
    assert row["kl_median_cw"] is None and row["kl_median_cw_std"] is None  # empty group
