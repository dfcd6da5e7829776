"""The projection's arithmetic on known rates, and its counts of the true protocol."""

from __future__ import annotations

import math

import pytest

from perl_pipeline.tools.rehearse.projection import (
    CheckRates,
    GpuTarget,
    ModelFlops,
    ModelOps,
    StageWork,
    count_flops,
    count_ops,
    evaluation_batches,
    optimiser_steps,
    project,
    protocol_counts,
    protocol_work,
)

# 5e12 FLOP/s, 10 us per operator call
TARGET = GpuTarget(name="test", peak_tflops=10.0, utilisation=0.5, host_cores=2, launch_us=10.0)
RATES = CheckRates(decode=100.0, header=1000.0)


def test_a_stage_takes_the_larger_of_compute_and_jpeg_work():
    compute_bound = StageWork("evaluation", flops=50e12, decodes=200)  # 10 s of compute, 1 s of decoding
    cpu_bound = StageWork("data_preparation", decodes=1000, headers=20_000)  # (10 + 20) s / 2 cores
    seconds = project([compute_bound, cpu_bound], RATES, TARGET)
    assert seconds["evaluation"] == pytest.approx(10.0)
    assert seconds["data_preparation"] == pytest.approx(15.0)
    assert seconds["total"] == pytest.approx(25.0)


def test_the_gpu_takes_the_larger_of_compute_and_its_launch_floor():
    # 1 s of compute, 1000 steps x 500 calls x 10 us = 5 s of launches: latency-bound
    latency_bound = StageWork("training", flops=5e12, steps=1000, ops=500)
    # 10 s of compute, 10 batches x 1000 calls x 10 us = 0.1 s of launches: compute-bound
    compute_bound = StageWork("evaluation", flops=50e12, steps=10, ops=1000)
    seconds = project([latency_bound, compute_bound], RATES, TARGET)
    assert seconds["training"] == pytest.approx(5.0)
    assert seconds["evaluation"] == pytest.approx(10.0)
    # the host's JPEG work still wins when it is the larger: 2000 decodes / 100/s / 2 cores = 10 s
    assert project([StageWork("training", steps=1000, ops=500, decodes=2000)], RATES, TARGET)["training"] == (
        pytest.approx(10.0)
    )


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
    # ImageNet's all-class run: 16,000 images (prefix + refinement) and 4,000 steps x 1000 prompts
    assert work["training_all"].flops == 3 * (2 * 16_000 + 4000 * 1000)
    assert work["training_base"].decodes + work["training_all"].decodes == counts["training"]


def test_steps_and_batches_of_the_true_protocol(benchmark_specs):
    # batch 4: 16 shots x 1098 base classes of the 11 benchmarks / 4, and ImageNet's 16,000 / 4
    assert optimiser_steps(benchmark_specs) == 4392 + 4000
    assert optimiser_steps(benchmark_specs, seeds_together=False) == 3 * (4392 + 4000)
    evaluated = protocol_counts(benchmark_specs)["evaluation"]  # 29 test sets over the three protocols
    assert evaluation_batches(benchmark_specs, batch_size=1) == evaluated
    assert evaluated / 256 < evaluation_batches(benchmark_specs) < evaluated / 256 + 29  # partial batches
    one, ops = ModelFlops(*(1.0,) * 6), ModelOps(train_step=3000, train_seeds_step=4000, eval_batch=2000)
    together, apart = (
        {w.stage: w for w in protocol_work(benchmark_specs, one, ops, seeds_together=t)}
        for t in (True, False)
    )
    for subset, steps in (("base", 4392), ("all", 4000)):
        stage = f"training_{subset}"
        assert together[stage].flops == apart[stage].flops  # the same arithmetic, fewer launches
        assert (together[stage].steps, together[stage].ops) == (steps, 4000)
        assert (apart[stage].steps, apart[stage].ops) == (3 * steps, 3000)
    assert together["evaluation"].ops == 2000


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


def test_counted_flops_of_several_depths_follow_the_first():
    """docs/method.md §2.7: the prefix stops at J_1 and the K + 1 passes run blocks[J_1:L]; depths
    past the model are capped (ViT-B/16's [3, 7, 11] on 4 blocks: [3])."""
    one = count_flops("PERL-Tiny-ViT", split_layer=1, steps=2)
    deep = count_flops("PERL-Tiny-ViT", split_layer=[1, 2, 3], steps=2, share_layers=False)
    assert deep.image_prefix == one.image_prefix
    assert one.image_refine < deep.image_refine < 1.2 * one.image_refine  # 3 thoughts a step, not 1
    assert count_flops("PERL-Tiny-ViT", split_layer=[3, 7, 11], steps=2) == count_flops(
        "PERL-Tiny-ViT", split_layer=3, steps=2
    )


def test_counted_ops_do_not_grow_with_the_batch():
    """The launch floor's premise: a bigger batch or more classes make bigger tensors, not more calls."""
    small = count_ops("PERL-Tiny-ViT", split_layer=1, steps=1, batch_size=2, classes=2, seeds=2)
    large = count_ops("PERL-Tiny-ViT", split_layer=1, steps=1, batch_size=5, classes=4, seeds=2)
    assert small == large
    assert small.train_step > 200 and small.eval_batch > 100  # forward, backward and AdamW of a real step
    # two seeds together: one pass through the frozen blocks, a projector, loss and AdamW step each
    assert small.train_step < small.train_seeds_step < 2 * small.train_step
