"""The full protocol's time on one GPU, projected from counted FLOPs and measured CPU rates.

The real protocol's work is fixed by its counts (:func:`protocol_work`): which files data
preparation header-reads and decodes, how many shots are drawn, how many prompts are encoded, how
many images each training run sees and each evaluation scores. Each stage's time is then

    seconds = max(FLOPs / effective GPU FLOP/s,  decodes / (decodes/s per core x host cores)
                                                 + header reads / (header reads/s per core x host cores))

the larger of the accelerator's compute and the host CPU's JPEG work (data-loader workers overlap
the two). The FLOPs per item are counted (``torch.utils.flop_counter``) on the real ViT-B/16
architecture (:func:`count_flops`); the per-core rates are measured by the rehearsal on real-size
JPEGs; the GPU's effective throughput is an assumption, stated with the projection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from perl_pipeline.benchmarks.few_shot import subset_labels
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.protocols import (
    BASE_TO_NOVEL,
    CROSS_DATASET_TARGETS,
    DOMAIN_GENERALIZATION_TARGETS,
    SEEDS,
    SOURCE,
)

SHOTS, VAL_SHOTS = 16, 4  # CoOp's draw: 16 training shots and min(16, 4) validation shots per class
PROTOCOL_BENCHMARKS = {
    "base_to_novel": BASE_TO_NOVEL,
    "cross_dataset": (SOURCE, *CROSS_DATASET_TARGETS),
    "domain_generalization": (SOURCE, *DOMAIN_GENERALIZATION_TARGETS),
}
"""The benchmarks each protocol evaluates (pipeline_registry composes the same grid)."""
TRAINED = {"base": BASE_TO_NOVEL, "all": (SOURCE,)}
"""Class subset -> the benchmarks whose projectors are trained on it (per seed)."""


@dataclass(frozen=True)
class GpuTarget:
    """The machine projected to: one accelerator and the CPU cores that decode its images.

    Attributes:
        name: What it is.
        peak_tflops: The accelerator's dense bf16 peak (spec sheet).
        utilisation: The share of the peak a run is assumed to reach (an assumption).
        host_cores: CPU cores decoding JPEGs for it.
    """

    name: str = "one NVIDIA H100 or H200 (SXM, bf16)"
    peak_tflops: float = 989.0  # H100 SXM and H200: 989 TFLOP/s dense bf16 (NVIDIA's data sheets)
    utilisation: float = 0.35
    host_cores: int = 16

    @property
    def flops_per_s(self) -> float:
        """The assumed effective FLOP/s."""
        return self.peak_tflops * 1e12 * self.utilisation


@dataclass(frozen=True)
class ModelFlops:
    """FLOPs of one item through each part of PERL (a multiply-add counts 2).

    Attributes:
        image_prefix: One image through the embeddings and blocks[0:J].
        image_refine: One prefix through blocks[J:L] for steps 0..K (inference).
        image_train: One prefix refined with gradients (forward and backward).
        text_full: One prompt through the whole text tower (zero-shot features).
        text_refine: One prompt prefix refined, steps 0..K.
        text_train: One prompt prefix refined with gradients.
    """

    image_prefix: float
    image_refine: float
    image_train: float
    text_full: float
    text_refine: float
    text_train: float


@dataclass(frozen=True)
class StageWork:
    """One stage's work in the full protocol."""

    stage: str
    flops: float = 0.0
    decodes: int = 0
    headers: int = 0


@dataclass(frozen=True)
class CheckRates:
    """Files per second on one core, per check (measured)."""

    decode: float
    header: float


def _runs(specs: Mapping[str, BenchmarkSpec]) -> list[int]:
    """Classes of each training run's subset (per seed)."""
    return [
        len(subset_labels(subset, specs[b].num_classes)) for subset, names in TRAINED.items() for b in names
    ]


def protocol_counts(specs: Mapping[str, BenchmarkSpec], *, seeds: int = len(SEEDS)) -> dict[str, int]:
    """The full protocol's items per rehearsal stage (the units of :data:`~.run.UNITS`)."""
    files = sum(n for s in specs.values() for n in s.split_sizes.values())
    return {
        "replica": files,
        "data_preparation": files,
        "few_shot_splits": sum(
            seeds * specs[b].num_classes * (SHOTS + (VAL_SHOTS if "val" in specs[b].split_sizes else 0))
            for b in BASE_TO_NOVEL
        ),
        "text_features": sum(s.num_classes for s in specs.values()),
        "training": sum(seeds * classes * SHOTS for classes in _runs(specs)),
        "evaluation": sum(
            specs[b].split_sizes["test"] for names in PROTOCOL_BENCHMARKS.values() for b in names
        ),
        "reporting": len(PROTOCOL_BENCHMARKS),
    }


def protocol_work(
    specs: Mapping[str, BenchmarkSpec], flops: ModelFlops, *, batch_size: int = 4, seeds: int = len(SEEDS)
) -> list[StageWork]:
    """The full protocol's work per stage, from the benchmarks' true counts: one epoch of 16 shots
    per class and seed, every test image scored once for all seeds (shared prefix)."""
    counts = protocol_counts(specs, seeds=seeds)
    train = sum(s.split_sizes.get("train", 0) for s in specs.values())
    training = sum(
        seeds
        * (
            classes * SHOTS * (flops.image_prefix + flops.image_train)
            + math.ceil(classes * SHOTS / batch_size) * classes * flops.text_train
        )
        for classes in _runs(specs)
    )
    evaluated = [b for names in PROTOCOL_BENCHMARKS.values() for b in names]
    evaluation = counts["evaluation"] * (flops.image_prefix + seeds * flops.image_refine) + sum(
        seeds * specs[b].num_classes * flops.text_refine for b in evaluated
    )
    return [
        StageWork("data_preparation", decodes=counts["data_preparation"] - train, headers=train),
        StageWork("few_shot_splits", decodes=counts["few_shot_splits"]),
        StageWork("text_features", flops=counts["text_features"] * flops.text_full),
        StageWork("training", flops=training, decodes=counts["training"]),
        StageWork("evaluation", flops=evaluation, decodes=counts["evaluation"]),
    ]


def cpu_seconds(work: StageWork, rates: CheckRates, cores: int) -> float:
    """The stage's JPEG work (decodes and header reads) spread over ``cores``."""
    return (work.decodes / rates.decode + work.headers / rates.header) / cores


def stage_seconds(work: StageWork, rates: CheckRates, target: GpuTarget) -> float:
    """The larger of the stage's GPU compute and its host CPU's JPEG work."""
    return max(work.flops / target.flops_per_s, cpu_seconds(work, rates, target.host_cores))


def project(work: list[StageWork], rates: CheckRates, target: GpuTarget) -> dict[str, float]:
    """Seconds per stage and in total (``total``)."""
    seconds = {w.stage: stage_seconds(w, rates, target) for w in work}
    return {**seconds, "total": sum(seconds.values())}


def count_flops(
    clip_model: str = "ViT-B-16-quickgelu", *, split_layer: int = 7, steps: int = 4
) -> ModelFlops:
    """Count :class:`ModelFlops` on ``clip_model``'s architecture (random weights, CPU, one item);
    ``split_layer`` is capped at the model's depth - 1."""
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from perl_pipeline.benchmarks.images import image_size
    from perl_pipeline.models import PERL, load_clip

    clip = load_clip(clip_model, None)
    depth = len(clip.visual.transformer.resblocks)  # a shallower model keeps a block to refine
    model = PERL(clip, split_layer=min(split_layer, depth - 1), steps=steps)
    size = image_size(clip)
    tokens = open_clip.get_tokenizer(clip_model)(["a photo of a great white shark."])

    def counted(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    def trained(refine, prefix) -> None:
        """Forward, and backward when there is a projector to train (K > 0)."""
        out = refine(prefix)
        if out.requires_grad:
            out.sum().backward()

    with torch.no_grad():
        image = model.image_prefix(torch.zeros(1, 3, size, size))
        text = model.text_prefix(tokens)
    return ModelFlops(
        image_prefix=counted(lambda: model.image_prefix(torch.zeros(1, 3, size, size))),
        image_refine=counted(lambda: model.refine_image(image)),
        image_train=counted(lambda: trained(model.refine_image, image)),
        text_full=counted(lambda: clip.encode_text(tokens)),
        text_refine=counted(lambda: model.refine_text(text)),
        text_train=counted(lambda: trained(model.refine_text, text)),
    )
