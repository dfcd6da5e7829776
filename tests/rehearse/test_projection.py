"""The projection's arithmetic on known rates, and its counts of the true protocol."""

from __future__ import annotations

import math

import pytest

from perl_pipeline.rehearse.projection import (
    CheckRates,
    GpuTarget,
    ModelFlops,
    StageWork,
    count_flops,
    project,
    protocol_counts,
    protocol_work,
)

TARGET = GpuTarget(name="test", peak_tflops=10.0, utilisation=0.5, host_cores=2)  # 5e12 FLOP/s
RATES = CheckRates(decode=100.0, header=1000.0)


def test_a_stage_takes_the_larger_of_compute_and_jpeg_work():
    compute_bound = StageWork("evaluation", flops=50e12, decodes=200)  # 10 s of compute, 1 s of decoding
    cpu_bound = StageWork("data_preparation", decodes=1000, headers=20_000)  # (10 + 20) s / 2 cores
    seconds = project([compute_bound, cpu_bound], RATES, TARGET)
    assert seconds["evaluation"] == pytest.approx(10.0)
    assert seconds["data_preparation"] == pytest.approx(15.0)
    assert seconds["total"] == pytest.approx(25.0)


def test_the_true_protocol_counts(benchmark_specs):
    counts = protocol_counts(benchmark_specs)
    files = sum(n for s in benchmark_specs.values() for n in s.split_sizes.values())
    assert counts["data_preparation"] == counts["replica"] == files
    assert 1_600_000 < files < 1_700_000  # "about 1.67 million files"
    # 4591 class prompts: 11 base-to-novel benchmarks and the 4 ImageNet variants
    assert counts["text_features"] == 4591
    # one epoch of 16 shots per class and seed: the base half of 11 benchmarks, ImageNet's 1000
    base = sum(
        math.ceil(benchmark_specs[b].num_classes / 2)
        for b in benchmark_specs
        if not b.startswith("imagenet_")
    )
    assert counts["training"] == 3 * 16 * (base + 1000)
    tests = {b: s.split_sizes["test"] for b, s in benchmark_specs.items()}
    b2n = sum(tests[b] for b in benchmark_specs if not b.startswith("imagenet_"))
    dg = tests["imagenet"] + sum(tests[b] for b in tests if b.startswith("imagenet_"))
    assert counts["evaluation"] == 2 * b2n + dg  # base-to-novel and cross-dataset score the same 11


def test_protocol_work_is_the_counts_times_the_flops(benchmark_specs):
    one = ModelFlops(*(1.0,) * 6)
    counts = protocol_counts(benchmark_specs)
    work = {w.stage: w for w in protocol_work(benchmark_specs, one)}
    train = sum(s.split_sizes.get("train", 0) for s in benchmark_specs.values())
    assert (
        work["data_preparation"].headers
        == train
        == 1_281_167 + 4128 + 2944 + 6509 + 4093 + 50500 + 3334 + 15880 + 2820 + 13500 + 7639
    )
    assert work["data_preparation"].decodes == counts["data_preparation"] - train
    assert work["text_features"].flops == 4591
    assert work["evaluation"].decodes == counts["evaluation"]
    # ImageNet's all-class run alone: 16,000 images (prefix + refinement) and 4,000 steps x 1000 prompts
    assert work["training"].flops > 3 * (2 * 16_000 + 4000 * 1000)


def test_counted_flops_follow_the_cost_model():
    """Refinement runs blocks[J:L] once per step 0..K: K = 4 costs about 5 times K = 0."""
    four, zero = (
        count_flops("PERL-Tiny-ViT", split_layer=2, steps=4),
        count_flops("PERL-Tiny-ViT", split_layer=2, steps=0),
    )
    assert four.image_prefix == zero.image_prefix > 0
    assert 5.0 <= four.image_refine / zero.image_refine < 6.0  # thought tokens lengthen the sequence a little
    assert four.image_train > 1.5 * four.image_refine  # backward through the refinement
    assert four.text_train > four.text_refine > 0
