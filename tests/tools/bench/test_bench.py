"""The benchmark's main path, on the tiny config: every figure is there and the ratios add up.

No timing thresholds here: the figures belong to the benchmark run, not to a timed test.
"""

from __future__ import annotations

import json
import math

import pytest

from perl_pipeline.tools import bench

BATCHES = (1, 2)
PROMPTS = (4, 8)


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("bench") / "figures.json"
    argv = ["--quick", "--model", "PERL-Tiny-ViT", "--split-layer", "2", "--steps", "3"]
    argv += ["--device", "cpu", "--batch-sizes", *map(str, BATCHES)]
    argv += ["--text-sizes", *map(str, PROMPTS), "--json", str(path)]
    assert bench.main(argv) == 0
    return json.loads(path.read_text())


def _positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_header_names_the_run(figures):
    header = figures["header"]
    assert header["device"] == "cpu" and header["dtype"] == "float32"
    assert header["device_name"] and header["torch"] and header["model"] == "PERL-Tiny-ViT"
    assert header["blocks"] == 4
    assert header["theoretical_ratio"] == pytest.approx((2 + 4 * (4 - 2)) / 4)
    assert header["theoretical_ratio_last_block"] == pytest.approx((2 + 4 * (4 - 2 - 5 / 6)) / 4)


def test_image_work_follows_the_design(figures):
    """Counted, not timed: the shortcut does less than the full last block, PERL more than zero-shot
    by about the block count of docs/method.md §5 (the thoughts add tokens, the patch embedding
    runs once), and a training step more than inference."""
    rows = {(row["workload"], row["batch"]): row for row in figures["image"]}
    assert set(rows) == {(w, b) for w in bench.WORKLOADS for b in BATCHES}
    theory = figures["header"]["theoretical_ratio"]
    for batch in BATCHES:
        flops = {w: rows[w, batch]["flops"] for w in bench.WORKLOADS}
        assert 0 < flops["zero_shot"] < flops["perl_inference"] < flops["perl_inference_full"]
        assert 0.9 * theory < flops["perl_inference_full"] / flops["zero_shot"] < 1.4 * theory
        assert flops["perl_train_step"] > flops["perl_inference"]
        assert rows["perl_inference", batch]["ops"] > rows["zero_shot", batch]["ops"] > 0
    for (_, batch), row in rows.items():  # a larger batch: proportionally more FLOPs
        small = rows[row["workload"], BATCHES[0]]
        assert row["flops"] == pytest.approx(small["flops"] * batch / BATCHES[0], rel=0.05)
        assert row["repeats"] == len(row["times"]) >= 1 and all(_positive(t) for t in row["times"])
        assert row["images_per_s"] == pytest.approx(batch / row["seconds"])
        assert row["ms_per_image"] == pytest.approx(1000 * row["seconds"] / batch)


def test_text_work_follows_the_design(figures):
    """The EOS cut keeps the longest prompt's tokens and does proportionally less work."""
    rows = {(row["prompts"], row["cut"]): row for row in figures["text"]}
    assert set(rows) == {(n, cut) for n in PROMPTS for cut in (False, True)}
    for prompts in PROMPTS:
        cut, uncut = rows[prompts, True], rows[prompts, False]
        assert uncut["tokens"] == 77  # the tokenizer's context length
        assert 8 < cut["tokens"] < 77  # cut after the longest prompt's EOS
        assert cut["flops"] < uncut["flops"] * (cut["tokens"] + 4) / 77  # + the thoughts' tokens
        for row in (cut, uncut):
            assert row["prompts_per_s"] == pytest.approx(prompts / row["seconds"])
            assert row["repeats"] == len(row["times"]) >= 1 and all(_positive(t) for t in row["times"])


def test_seeds_together_do_every_seeds_work_in_fewer_calls(figures):
    seeds = {row["workload"]: row for row in figures["seeds"]}
    one, together = seeds["train_one_seed"], seeds["train_seeds_together"]
    assert together["flops"] == pytest.approx(3 * one["flops"], rel=0.05)  # the same arithmetic
    assert together["ops"] < 2 * one["ops"]  # one pass, not three: fewer launches on a GPU


def test_ratios_are_computed_from_the_figures(figures):
    image = {(row["workload"], row["batch"]): row["seconds"] for row in figures["image"]}
    text = {(row["prompts"], row["cut"]): row["seconds"] for row in figures["text"]}
    ratios = figures["ratios"]
    for batch in BATCHES:
        zero_shot = image["zero_shot", batch]
        inference = ratios["inference_vs_zero_shot"][str(batch)]
        train = ratios["train_step_vs_zero_shot"][str(batch)]
        assert inference == pytest.approx(image["perl_inference", batch] / zero_shot)
        full = ratios["inference_full_last_block_vs_zero_shot"][str(batch)]
        assert full == pytest.approx(image["perl_inference_full", batch] / zero_shot)
        assert train == pytest.approx(image["perl_train_step", batch] / zero_shot)
    for prompts in PROMPTS:
        speedup = ratios["text_uncut_vs_cut"][str(prompts)]
        assert speedup == pytest.approx(text[prompts, False] / text[prompts, True])
    seeds = {row["workload"]: row for row in figures["seeds"]}
    assert set(seeds) == set(bench.SEEDS_WORKLOADS)
    one, together = seeds["train_one_seed"], seeds["train_seeds_together"]
    assert (one["seeds"], together["seeds"], one["batch"], together["batch"]) == (1, 3, 4, 4)
    assert together["images_per_s"] == pytest.approx(12 / together["seconds"])
    assert ratios["seeds_together_vs_one_at_a_time"] == pytest.approx(
        together["images_per_s"] / one["images_per_s"]
    )
    evaluation = {(row["workload"], row["decode"]): row for row in figures["evaluation"]}
    assert set(evaluation) == {(w, "cpu") for w in bench.EVAL_WORKLOADS}  # no CUDA: no GPU decoding
    assert all(row["images"] == 4 and _positive(row["images_per_s"]) for row in evaluation.values())
    assert ratios["evaluation_vs_decode_only"]["cpu"] == pytest.approx(
        evaluation["evaluate", "cpu"]["images_per_s"] / evaluation["decode_only", "cpu"]["images_per_s"]
    )
    per_image = {w: evaluation[w, "cpu"]["seconds"] / 4 for w in ("evaluate", "evaluate_jacobian")}
    jacobian = (per_image["evaluate_jacobian"] - per_image["evaluate"]) / (4 * 3)  # K + 1 = 4 steps, 3 seeds
    assert ratios["jacobian_s_per_image_step"]["cpu"] == pytest.approx(jacobian)
    assert ratios["predict_vs_zero_shot_evaluation"] == pytest.approx(
        evaluation["predict", "cpu"]["images_per_s"] / evaluation["zero_shot_evaluate", "cpu"]["images_per_s"]
    )


def test_table_4_loops_are_timed_with_their_settings_and_counts(figures):
    """Each reasoning loop of docs/method.md §2.7 on the 4-block model (depths scaled from L = 12),
    its parameter count from the model and its work in the FLOPs: one prefix at J_1, then K + 1
    passes over blocks[J_1:L]."""
    from perl_pipeline.models import count_projector_parameters

    rows = {row["variant"]: row for row in figures["loops"]}
    assert list(rows) == list(bench.table4_loops())
    depths = {name: row["split_layer"] for name, row in rows.items()}
    assert depths == {
        "PERL-Early": 0,
        "PERL-Deep": [1, 2, 3],
        "PERL-Shared": 2,
        "PERL-Step": 2,
        "PERL-Layer": [2, 3],
        "PERL-LayerStep": [2, 3],
    }
    widths = {"image": 96, "text": 64}
    for row in rows.values():
        sharing = {key: row[key] for key in ("share_projector", "share_layers")}
        assert row["parameters"] == count_projector_parameters(widths, row["split_layer"], 3, **sharing)
        assert row["batch"] == BATCHES[0] and _positive(row["vs_zero_shot"]) and _positive(row["flops"])
    flops = {name: row["flops"] for name, row in rows.items()}
    assert flops["PERL-Early"] > flops["PERL-Deep"] > flops["PERL-Shared"]  # the first depth sets the work
    assert flops["PERL-Shared"] < flops["PERL-Layer"] < 1.2 * flops["PERL-Shared"]  # and thoughts, a little
    assert flops["PERL-Step"] == pytest.approx(flops["PERL-Shared"], rel=0.01)
    assert flops["PERL-LayerStep"] == pytest.approx(flops["PERL-Layer"], rel=0.01)
    assert "PERL-LayerStep" in bench.format_report(figures)


def test_targets_follow_the_ratios(figures):
    targets = figures["targets"]
    assert len(targets) == len(BATCHES) + len(PROMPTS) + 1
    for target in targets:
        assert _positive(target["value"])
        if "seeds" in target["name"]:
            assert target["threshold"] == bench.SEEDS_SPEEDUP_TARGET["cpu"]
            assert target["passed"] == (target["value"] >= target["threshold"])
        elif "inference" in target["name"]:
            assert target["threshold"] == bench.INFERENCE_RATIO_TARGET
            assert target["passed"] == (target["value"] <= target["threshold"])
        else:
            assert target["threshold"] == bench.TEXT_SPEEDUP_TARGET
            assert target["passed"] == (target["value"] >= target["threshold"])


def test_report_lists_every_figure(figures):
    report = bench.format_report(figures)
    assert "theory 2.50" in report and "theory 1.67" in report  # full last block, read-out only
    assert "3 seeds together" in report and "decode only (ceiling)" in report
    assert report.count("PASS") + report.count("FAIL") == len(figures["targets"])


def test_prompts_are_distinct_and_coop_style():
    prompts = bench.class_prompts(1000)
    assert len(set(prompts)) == 1000
    assert all(p.startswith("a photo of a ") and p.endswith(", a type of pet.") for p in prompts)
    with pytest.raises(ValueError):
        bench.class_prompts(10_000)
