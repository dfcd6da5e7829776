"""Tests of the results tables and Markdown reports against the paper's reported numbers."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
import yaml

from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.evaluation.metrics import (
    AVERAGE_HM_OF_MEANS,
    AVERAGE_MEAN_OF_HMS,
    TARGET_AVERAGE,
    harmonic_mean,
    hm_rounding_tolerance,
)
from perl_pipeline.evaluation.reference import load_reported
from perl_pipeline.evaluation.report import (
    Benchmark,
    all_classes_report,
    base_to_novel_report,
    cross_dataset_report,
    domain_generalization_report,
    paper_names,
)
from perl_pipeline.protocols import (
    ALL_BENCHMARKS,
    BASE_TO_NOVEL,
    CROSS_DATASET_TARGETS,
    DOMAIN_GENERALIZATION_TARGETS,
)
from tests.evaluation.test_metrics import make_runs
from tests.evaluation.test_reference import reported_value

BENCHMARKS_YAML = Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters_benchmarks.yml"
BENCHMARKS = paper_names(
    {
        name: BenchmarkSpec.from_params(
            yaml.safe_load(BENCHMARKS_YAML.read_text(encoding="utf-8"))[name]["benchmark"]
        )
        for name in ALL_BENCHMARKS
    }
)
"""How the paper names the 15 benchmarks, from their YAML blocks (as the reporting node gets them)."""

ROW_LABELS = (
    "PERL (reported)",
    "CLIP (reported)",
    "PERL (ours)",
    "CLIP zero-shot (ours, step 0)",
)
ALL_BENCHMARKS = (
    "imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 "
    "dtd eurosat ucf101 imagenet_v2 imagenet_sketch imagenet_a imagenet_r"
).split()


def _row(table: pl.DataFrame, benchmark: str) -> dict:
    return table.filter(pl.col("benchmark") == benchmark).row(0, named=True)


def _markdown_row(markdown: str, label: str, section: str = "") -> str:
    """The first table line of `markdown` (after `section`, if given) starting with `label`."""
    text = markdown[markdown.index(section) :] if section else markdown
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


# --------------------------------------------------------------------------- benchmark names


def test_benchmark_table_maps_every_contract_name_to_the_reported_names() -> None:
    assert list(BENCHMARKS) == ALL_BENCHMARKS
    reported_datasets = set(load_reported()["dataset"])
    assert {info.reported for info in BENCHMARKS.values()} <= reported_datasets
    assert len(BASE_TO_NOVEL) == 11
    assert len(CROSS_DATASET_TARGETS) == 10 and "imagenet" not in CROSS_DATASET_TARGETS
    assert len(DOMAIN_GENERALIZATION_TARGETS) == 4


# --------------------------------------------------------------------------- base-to-novel


def test_base_to_novel_report_with_two_benchmarks() -> None:
    runs = make_runs(benchmarks=("dtd", "imagenet"))
    table, markdown = base_to_novel_report(
        runs, label="DEMO: not comparable to the paper", benchmarks=BENCHMARKS
    )
    # paper order, then the two average rows
    assert table["benchmark"].to_list() == [
        "imagenet",
        "dtd",
        AVERAGE_MEAN_OF_HMS,
        AVERAGE_HM_OF_MEANS,
    ]
    for prefix in ("perl_reported_", "clip_reported_"):
        assert {f"{prefix}{m}" for m in ("base", "novel", "hm")} <= set(table.columns)
    assert "> **DEMO: not comparable to the paper**" in markdown
    assert "Benchmarks present (2/11): ImageNet, DTD." in markdown
    assert "Missing: Caltech101" in markdown
    assert "- Seeds: 3 (1, 2, 3)" in markdown
    for label in ROW_LABELS:
        assert f"| {label} |" in markdown

    unified = "unified_1epoch_16shot"
    perl_row = _markdown_row(markdown, "PERL (reported)", "Table 5")
    for dataset in ("imagenet", "dtd"):
        cell = " / ".join(
            f"{reported_value(unified, 'base_to_novel', 'PERL', dataset, m):.2f}"
            for m in ("base", "novel", "hm")
        )
        assert cell in perl_row  # e.g. "75.16 / 70.87 / 72.95"
        assert _row(table, dataset)["perl_reported_hm"] == reported_value(
            unified, "base_to_novel", "PERL", dataset, "hm"
        )

    ours = _row(table, "imagenet")
    ours_row = _markdown_row(markdown, "PERL (ours)", "Table 5")
    assert f"{ours['base']:.2f} ± {ours['base_std']:.2f}" in ours_row
    assert f"{ours['hm']:.2f} ± {ours['hm_std']:.2f}" in ours_row
    zeroshot_row = _markdown_row(markdown, "CLIP zero-shot (ours, step 0)", "Table 1")
    assert f"{ours['zeroshot_hm']:.2f} ± {ours['zeroshot_hm_std']:.2f}" in zeroshot_row
    average = _row(table, AVERAGE_MEAN_OF_HMS)
    assert f"{average['hm']:.2f} ± {average['hm_std']:.2f}" in _markdown_row(
        markdown, "PERL (ours)", "Table 1"
    )


def test_every_report_prints_the_setup_line() -> None:
    setup = "Few-shot draw: coop (the CoOp lineage's images); projector init: default."
    runs = make_runs(benchmarks=("imagenet", "dtd", "imagenet_v2"))
    for report in (base_to_novel_report, cross_dataset_report, domain_generalization_report):
        _, markdown = report(runs, benchmarks=BENCHMARKS, setup=setup)
        assert f"\n- {setup}\n" in markdown
        _, plain = report(runs, benchmarks=BENCHMARKS)
        assert "Few-shot draw" not in plain


def test_reported_hm_is_2bn_over_b_plus_n_or_flagged() -> None:
    table, markdown = base_to_novel_report(make_runs(benchmarks=BASE_TO_NOVEL), benchmarks=BENCHMARKS)
    flagged = markdown[markdown.index("### Consistency of the reported HMs") :]
    checked = 0
    for row in table.filter(pl.col("role") == "benchmark").iter_rows(named=True):
        for prefix, label in (("perl_reported_", "PERL"), ("clip_reported_", "CLIP")):
            base, novel, hm = (row[f"{prefix}{m}"] for m in ("base", "novel", "hm"))
            gap = abs(hm - harmonic_mean(base, novel))
            title = BENCHMARKS[row["benchmark"]].title
            if gap > hm_rounding_tolerance(base, novel):
                assert f"{label} (reported), {title}: printed HM {hm:.2f}" in flagged
            else:
                checked += 1
    assert checked >= 20  # all but the paper's two inconsistent PERL cells (DTD, EuroSAT)
    assert "EuroSAT: printed HM 69.62" in flagged


def test_reported_averages_over_all_eleven_datasets_match_the_paper() -> None:
    table, markdown = base_to_novel_report(make_runs(benchmarks=BASE_TO_NOVEL), benchmarks=BENCHMARKS)
    mean_of_hms, hm_of_means = _row(table, AVERAGE_MEAN_OF_HMS), _row(table, AVERAGE_HM_OF_MEANS)
    assert round(mean_of_hms["perl_reported_base"], 2) == 73.97
    assert round(mean_of_hms["perl_reported_novel"], 2) == 75.74
    assert round(mean_of_hms["perl_reported_hm"], 2) == 74.79  # the paper's convention
    assert round(mean_of_hms["clip_reported_novel"], 2) == 74.35
    assert round(mean_of_hms["clip_reported_hm"], 2) == 71.64
    # HM of the means, the CoOp convention: differs from the paper's printed 74.79
    assert hm_of_means["perl_reported_hm"] == pytest.approx(
        harmonic_mean(mean_of_hms["perl_reported_base"], mean_of_hms["perl_reported_novel"])
    )
    assert round(hm_of_means["perl_reported_hm"], 2) == 74.84
    # the published averages, each with its convention (Table 1 vs Table 6 for CLIP)
    published = markdown[markdown.index("### The paper's own averages") :]
    clip_table1 = _markdown_row(published, "CLIP")
    assert "Tables 1 and 5" in clip_table1 and "mean of the per-dataset HMs" in clip_table1
    assert "| 69.34 | 74.35 | 71.64 |" in clip_table1
    table6 = next(line for line in published.splitlines() if "Table 6 |" in line)
    assert table6.startswith("| CLIP |") and "HM of mean base and mean novel" in table6
    assert "| 69.34 | 74.22 | 71.70 |" in table6
    assert "| 73.97 | 75.74 | 74.79 |" in _markdown_row(published, "PERL")
    assert "Benchmarks present (11/11)" in markdown and "Missing" not in markdown


def test_base_to_novel_report_single_seed_has_no_plus_minus() -> None:
    _, markdown = base_to_novel_report(make_runs(benchmarks=("eurosat",), seeds=(7,)), benchmarks=BENCHMARKS)
    assert "- Seeds: 1 (7); our values are a single seed, so no std." in markdown
    assert "±" not in _markdown_row(markdown, "PERL (ours)")


def test_base_to_novel_report_lists_unknown_and_handles_nothing_present() -> None:
    runs = make_runs(benchmarks=("mystery",))
    table, markdown = base_to_novel_report(runs, benchmarks=BENCHMARKS)
    assert table.is_empty()
    assert "No benchmark of this protocol was evaluated." in markdown
    assert "Left out (not known to the report): mystery." in markdown
    assert "### The paper's own averages" in markdown


def test_results_table_writes_to_csv() -> None:
    table, _ = base_to_novel_report(
        make_runs(benchmarks=("dtd", "imagenet"), seeds=(1,)), benchmarks=BENCHMARKS
    )
    buffer = io.BytesIO()
    table.write_csv(buffer)
    back = pl.read_csv(io.BytesIO(buffer.getvalue()))
    assert back["benchmark"].to_list() == table["benchmark"].to_list()
    assert back.columns == table.columns


# --------------------------------------------------------------------------- transfer


def transfer_runs() -> pl.DataFrame:
    """One ImageNet-trained model evaluated on a few targets of both transfer protocols."""
    return pl.concat(
        [
            make_runs(
                benchmarks=("imagenet", "caltech101", "eurosat", "imagenet_a", "imagenet_r"),
                subsets=("all",),
            ),
            make_runs(benchmarks=("dtd",)),  # base-to-novel rows: not a transfer target
        ]
    )


def test_cross_dataset_report() -> None:
    table, markdown = cross_dataset_report(transfer_runs(), label="DEMO", benchmarks=BENCHMARKS)
    assert table["benchmark"].to_list() == ["imagenet", "caltech101", "eurosat", TARGET_AVERAGE]
    targets = table.filter(pl.col("role") == "target")
    average = _row(table, TARGET_AVERAGE)
    assert average["accuracy"] == pytest.approx(targets["accuracy"].mean())
    assert average["perl_reported_accuracy"] == pytest.approx((94.33 + 40.01) / 2)
    assert _row(table, "imagenet")["perl_reported_accuracy"] == 70.25
    assert table["clip_reported_accuracy"].is_null().all()  # Table 2 has no CLIP row

    assert "> **DEMO**" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| Method |"))
    assert header == ("| Method | ImageNet (source) | Caltech101 | EuroSAT | Target average (2) |")
    perl_row = _markdown_row(markdown, "PERL (reported)")
    assert perl_row == "| PERL (reported) | 70.25 | 94.33 | 40.01 | 67.17 |"
    assert _markdown_row(markdown, "CLIP (reported)") == "| CLIP (reported) | — | — | — | — |"
    assert "CLIP (reported): the paper reports no such row" in markdown
    ours = _row(table, "caltech101")
    assert f"{ours['accuracy']:.2f} ± {ours['accuracy_std']:.2f}" in _markdown_row(markdown, "PERL (ours)")
    assert "Over all 10 targets (Table 2): PERL 65.56." in markdown
    assert "Benchmarks present (3/11)" in markdown


def test_domain_generalization_report() -> None:
    table, markdown = domain_generalization_report(transfer_runs(), benchmarks=BENCHMARKS)
    assert table["benchmark"].to_list() == ["imagenet", "imagenet_a", "imagenet_r", TARGET_AVERAGE]
    average = _row(table, TARGET_AVERAGE)
    assert average["clip_reported_accuracy"] == pytest.approx((47.77 + 73.96) / 2)
    assert average["perl_reported_accuracy"] == pytest.approx((50.28 + 77.08) / 2)
    assert _markdown_row(markdown, "CLIP (reported)") == (
        f"| CLIP (reported) | 66.73 | 47.77 | 73.96 | {(47.77 + 73.96) / 2:.2f} |"
    )
    assert "ImageNet-A" in markdown and "Missing: ImageNet-V2, ImageNet-Sketch." in markdown
    assert "Over all 4 targets (Table 8): " in markdown
    assert "PERL 59.95" in markdown and "CLIP 57.18" in markdown
    zeroshot = _row(table, "imagenet_r")
    assert f"{zeroshot['zeroshot_accuracy']:.2f} ± {zeroshot['zeroshot_accuracy_std']:.2f}" in _markdown_row(
        markdown, "CLIP zero-shot (ours, step 0)"
    )


def test_transfer_report_without_targets() -> None:
    runs = make_runs(benchmarks=("imagenet",), subsets=("all",))
    table, markdown = domain_generalization_report(runs, benchmarks=BENCHMARKS)
    assert table["benchmark"].to_list() == ["imagenet"]
    assert "Target average" not in markdown
    assert "| ImageNet (source) |" in markdown


def test_reported_as_gives_the_papers_key_when_it_differs_from_the_name(benchmark_specs: dict) -> None:
    import dataclasses

    from perl_pipeline.evaluation.report import Benchmark

    flowers = benchmark_specs["oxford_flowers"]
    assert Benchmark.from_spec(flowers) == Benchmark("oxford_flowers", "Flowers102")
    renamed = dataclasses.replace(flowers, reported_as="flowers102")
    assert Benchmark.from_spec(renamed) == Benchmark("flowers102", "Flowers102")


MINE = {**BENCHMARKS, "mine": Benchmark("mine", "My images")}  # a benchmark of your own


def test_base_to_novel_report_shows_a_benchmark_of_your_own_outside_the_averages() -> None:
    def accuracy(benchmark: str, seed: int, subset: str, step: int) -> float:
        return {"dtd": 50.0, "eurosat": 60.0, "mine": 10.0}[benchmark] + step + seed

    runs = make_runs(benchmarks=("dtd", "mine", "eurosat"), accuracy=accuracy)
    table, markdown = base_to_novel_report(runs, benchmarks=MINE)
    assert table.filter(pl.col("role") == "benchmark")["benchmark"].to_list() == ["dtd", "eurosat", "mine"]
    assert _row(table, "mine")["perl_reported_hm"] is None  # no paper number for your own
    assert _row(table, "dtd")["perl_reported_hm"] is not None
    paper = table.filter(pl.col("benchmark").is_in(["dtd", "eurosat"]))["hm"].mean()
    assert _row(table, AVERAGE_MEAN_OF_HMS)["hm"] == pytest.approx(paper)  # beside the paper's: its grid
    assert "Benchmarks present (2/11)" in markdown
    assert "My images (yours, not averaged)" in _markdown_row(markdown, "Method")
    assert "My images (B / N / HM)" in markdown and "Left out" not in markdown


def test_all_classes_report_scores_each_benchmark_against_zero_shot() -> None:
    def accuracy(benchmark: str, seed: int, subset: str, step: int) -> float:
        return {"mine": 40.0, "yours": 60.0}[benchmark] + 2 * step + seed

    runs = make_runs(benchmarks=("mine", "yours"), subsets=("all",), accuracy=accuracy)
    names = {"mine": Benchmark("mine", "My images"), "yours": Benchmark("yours", "Yours")}
    table, markdown = all_classes_report(runs, benchmarks=names, label="DEMO")
    assert table["benchmark"].to_list() == ["mine", "yours", TARGET_AVERAGE]
    assert _row(table, "mine")["accuracy"] == pytest.approx(40 + 8 + 2)  # step 4, seeds 1..3
    assert _row(table, "mine")["zeroshot_accuracy"] == pytest.approx(40 + 2)
    assert _row(table, TARGET_AVERAGE)["accuracy"] == pytest.approx(60)
    assert "## All-class few-shot" in markdown and "> **DEMO**" in markdown
    assert _markdown_row(markdown, "Method") == "| Method | My images | Yours | Average (2) |"
    assert _markdown_row(markdown, "PERL (reported)") == "| PERL (reported) | — | — | — |"
    assert "not a protocol of the paper" in markdown
