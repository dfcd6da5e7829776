"""The reporting node takes its titles from the benchmarks' YAML blocks, the catalog doing the I/O."""

from __future__ import annotations

import copy

import pytest

from perl_pipeline.evaluation.report import protocol_report, setup_line
from perl_pipeline.pipelines.reporting.nodes import write_report
from perl_pipeline.pipelines.reporting.pipeline import create_pipeline
from tests.evaluation.test_metrics import make_runs


def test_the_node_reads_each_benchmarks_block_unnamespaced() -> None:
    nodes = create_pipeline("base_to_novel", ["dtd", "eurosat"], "dtd.training_record_base_seed_1").nodes
    (node,) = [n for n in nodes if n.name == "base_to_novel.write_report"]
    (gather,) = [n for n in nodes if n.name == "base_to_novel.collect_trajectories"]
    assert gather.inputs == ["dtd.trajectories_base_to_novel", "eurosat.trajectories_base_to_novel"]
    assert gather.outputs == ["base_to_novel.trajectories"]
    assert node.inputs[-2:] == ["params:dtd.benchmark", "params:eurosat.benchmark"]
    assert node.inputs[:2] == ["params:report_label", "dtd.training_record_base_seed_1"]


def test_titles_come_from_the_benchmark_blocks(benchmark_params: dict) -> None:
    blocks = [copy.deepcopy(benchmark_params[b]["benchmark"]) for b in ("dtd", "eurosat")]
    blocks[0]["title"] = "Textures (DTD)"
    runs = [make_runs(benchmarks=(b,), steps=2) for b in ("dtd", "eurosat")]
    table, markdown, metrics, _, figures = write_report(
        "DEMO",
        {"trainable_parameters": 802},
        protocol="base_to_novel",
        benchmarks=("dtd", "eurosat"),
        runs_dtd=runs[0],
        runs_eurosat=runs[1],
        benchmark_dtd=blocks[0],
        benchmark_eurosat=blocks[1],
    )
    assert "Benchmarks present (2/11): Textures (DTD), EuroSAT." in markdown
    assert "| Method | Textures (DTD) (B / N / HM) | EuroSAT (B / N / HM) |" in markdown
    legend = [t.get_text() for t in figures["accuracy_per_step.png"].legends[0].get_texts()]
    assert legend[:2] == ["Textures (DTD)", "EuroSAT"]
    assert set(metrics) >= {"dtd", "eurosat"}
    # what an ablation row reads from DVC's records of an experiment (perl_pipeline.tools.sweep)
    assert metrics["trainable_parameters"] == 802
    average = metrics["average (mean of HMs)"]
    assert {"base", "novel", "hm", "zeroshot_base", "zeroshot_novel", "image_alignment_base"} <= set(average)
    assert table["perl_reported_hm"].drop_nulls().len() >= 2  # the paper's numbers found by name


def test_a_missing_block_is_an_error_naming_the_benchmarks(benchmark_params: dict) -> None:
    with pytest.raises(ValueError, match=r"base_to_novel.*\['dtd', 'eurosat'\]"):
        protocol_report(
            "base_to_novel",
            {b: make_runs(benchmarks=(b,)) for b in ("dtd", "eurosat")},
            {"dtd": benchmark_params["dtd"]["benchmark"]},
            {"trainable_parameters": 802},
        )


def test_the_report_names_the_draw_and_the_init_of_its_training_record(benchmark_params: dict) -> None:
    record = {"trainable_parameters": 802, "few_shot_draw": "coop", "projector_init": "zero_out"}
    _, markdown, *_ = write_report(
        "",
        record,
        protocol="base_to_novel",
        benchmarks=("dtd",),
        runs_dtd=make_runs(benchmarks=("dtd",), steps=2),
        benchmark_dtd=benchmark_params["dtd"]["benchmark"],
    )
    assert "- Few-shot draw: coop (the CoOp lineage's images); projector init: zero_out." in markdown
    assert setup_line({"few_shot_draw": "sorted", "projector_init": "default"}) == (
        "Few-shot draw: sorted (paths sorted per class); projector init: default."
    )
    assert setup_line({"trainable_parameters": 802}) == ""  # a record naming neither adds no line


def test_a_report_over_your_own_benchmark_alone_has_no_average_to_place(benchmark_params: dict) -> None:
    block = {**copy.deepcopy(benchmark_params["dtd"]["benchmark"]), "name": "my_images", "title": "Mine"}
    table, _, metrics, _, figures = write_report(
        "",
        {"trainable_parameters": 802},
        protocol="base_to_novel",
        benchmarks=("my_images",),
        runs_my_images=make_runs(benchmarks=("my_images",), steps=2),
        benchmark_my_images=block,
    )
    assert "my_images" in metrics and "params_vs_hm.png" not in figures  # no paper average: no HM to place
    assert "accuracy_per_step.png" in figures
