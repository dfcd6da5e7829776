"""The full protocol's time on one GPU, projected from counted FLOPs and operator calls and measured
CPU rates.

The protocol's work is fixed by its counts (:func:`protocol_work`); each stage then takes

    GPU seconds = max(FLOPs / effective FLOP/s,  steps x operator calls per step x seconds per launch)
    seconds     = max(GPU seconds,  decodes / (decodes/s per core x host cores)
                                    + header reads / (header reads/s per core x host cores))

as data-loader workers overlap the host's JPEG work with the accelerator's. PERL trains at batch 4:
each step is a few thousand small operator calls whose launch, not their arithmetic, bounds a GPU,
and their count does not grow with the batch. FLOPs (:func:`count_flops`) and operator calls
(:func:`count_ops`) are counted on the real ViT-B/16 architecture, the per-core rates measured on
real-size JPEGs; the GPU's effective throughput and launch latency are stated assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from perl_pipeline.benchmarks.few_shot import subset_labels
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.protocols import BASE_TO_NOVEL, PROTOCOLS, SEEDS

SHOTS, VAL_SHOTS = 16, 4  # CoOp's draw: 16 training shots and min(16, 4) validation shots per class
PROTOCOL_BENCHMARKS = {name: p.benchmarks for name, p in PROTOCOLS.items()}
EVALUATED = [b for p in PROTOCOLS.values() for b in p.benchmarks]  # once per protocol that scores it
TRAINED = {p.subset: p.trained for p in PROTOCOLS.values()}  # class subset -> benchmarks trained on it


@dataclass(frozen=True)
class GpuTarget:
    """The machine projected to: one accelerator and the CPU cores that decode its images."""

    name: str = "one NVIDIA H100 or H200 (SXM, bf16)"
    peak_tflops: float = 989.0  # H100 SXM and H200: 989 TFLOP/s dense bf16 (NVIDIA's data sheets)
    utilisation: float = 0.35
    host_cores: int = 16
    launch_us: float = 10.0  # per operator call too small to fill the GPU (eager overhead; an assumption)

    @property
    def flops_per_s(self) -> float:
        """The assumed effective FLOP/s."""
        return self.peak_tflops * 1e12 * self.utilisation


@dataclass(frozen=True)
class ModelFlops:
    """FLOPs of one item through each part of PERL (a multiply-add counts 2)."""

    image_prefix: float
    image_refine: float
    image_train: float
    text_full: float
    text_refine: float
    text_train: float


@dataclass(frozen=True)
class ModelOps:
    """Operator calls (about one GPU kernel launch each) of PERL's repeated units."""

    train_step: int
    train_seeds_step: int
    eval_batch: int


@dataclass(frozen=True)
class StageWork:
    """One stage's work in the full protocol: FLOPs, ``steps`` sequences of ``ops`` operator calls
    each (optimiser steps, evaluation batches), and JPEG work."""

    stage: str
    flops: float = 0.0
    steps: int = 0
    ops: int = 0
    decodes: int = 0
    headers: int = 0


@dataclass(frozen=True)
class CheckRates:
    """Files per second on one core, per check (measured)."""

    decode: float
    header: float


def _runs(specs: Mapping[str, BenchmarkSpec], subsets: tuple[str, ...] = tuple(TRAINED)) -> list[int]:
    """Classes of each training run's subset (per seed), for the runs trained on ``subsets``."""
    return [len(subset_labels(subset, specs[b].num_classes)) for subset in subsets for b in TRAINED[subset]]


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
        "evaluation": sum(specs[b].split_sizes["test"] for b in EVALUATED),
        "reporting": len(PROTOCOL_BENCHMARKS),
    }


def optimiser_steps(
    specs: Mapping[str, BenchmarkSpec],
    *,
    batch_size: int = 4,
    seeds: int = len(SEEDS),
    seeds_together: bool = True,
    subsets: tuple[str, ...] = tuple(TRAINED),
) -> int:
    """Optimiser steps of the protocol's training on ``subsets``: one epoch of 16 shots per class
    (the last partial batch dropped) per run; with ``seeds_together`` one step carries every seed's
    batch (counted as one seed's operator calls: the seeds stacked in each tensor, an assumption
    about that mode)."""
    per_seed = sum(max(classes * SHOTS // batch_size, 1) for classes in _runs(specs, subsets))
    return per_seed * (1 if seeds_together else seeds)


def evaluation_batches(specs: Mapping[str, BenchmarkSpec], *, batch_size: int = 256) -> int:
    """Evaluation batches over every protocol's test sets (each shared by all seeds)."""
    return sum(math.ceil(specs[b].split_sizes["test"] / batch_size) for b in EVALUATED)


def protocol_work(
    specs: Mapping[str, BenchmarkSpec],
    flops: ModelFlops,
    ops: ModelOps | None = None,
    *,
    batch_size: int = 4,
    eval_batch_size: int = 256,
    seeds: int = len(SEEDS),
    seeds_together: bool = True,
) -> list[StageWork]:
    """The full protocol's work per stage, from the benchmarks' true counts: one epoch of 16 shots
    per class and seed, every test image scored once for all seeds (shared prefix). Seeds trained
    together share each step's operator calls (:func:`optimiser_steps`), not its FLOPs; without
    ``ops`` there is no launch floor. Training's two stages (base classes; ImageNet's 1000 classes)
    differ in cost, so one may be compute-bound while the other is launch-bound."""
    ops = ops or ModelOps(train_step=0, train_seeds_step=0, eval_batch=0)
    step_ops = ops.train_seeds_step if seeds_together and seeds > 1 else ops.train_step
    counts = protocol_counts(specs, seeds=seeds)
    train = sum(s.split_sizes.get("train", 0) for s in specs.values())

    def training(subset: str) -> StageWork:
        runs = _runs(specs, (subset,))
        return StageWork(
            f"training_{subset}",
            flops=sum(
                seeds
                * (
                    classes * SHOTS * (flops.image_prefix + flops.image_train)
                    + math.ceil(classes * SHOTS / batch_size) * classes * flops.text_train
                )
                for classes in runs
            ),
            steps=optimiser_steps(
                specs, batch_size=batch_size, seeds=seeds, seeds_together=seeds_together, subsets=(subset,)
            ),
            ops=step_ops,
            decodes=seeds * SHOTS * sum(runs),
        )

    evaluation = counts["evaluation"] * (flops.image_prefix + seeds * flops.image_refine) + sum(
        seeds * specs[b].num_classes * flops.text_refine for b in EVALUATED
    )
    return [
        StageWork("data_preparation", decodes=counts["data_preparation"] - train, headers=train),
        StageWork("few_shot_splits", decodes=counts["few_shot_splits"]),
        StageWork("text_features", flops=counts["text_features"] * flops.text_full),
        *(training(subset) for subset in TRAINED),
        StageWork(
            "evaluation",
            flops=evaluation,
            steps=evaluation_batches(specs, batch_size=eval_batch_size),
            ops=ops.eval_batch,
            decodes=counts["evaluation"],
        ),
    ]


def cpu_seconds(work: StageWork, rates: CheckRates, cores: int) -> float:
    """The stage's JPEG work (decodes and header reads) spread over ``cores``."""
    return (work.decodes / rates.decode + work.headers / rates.header) / cores


def project(work: list[StageWork], rates: CheckRates, target: GpuTarget) -> dict[str, float]:
    """Seconds per stage and in total (``total``): each stage the larger of its compute, its launch
    floor (steps x calls x latency) and its host CPU's JPEG work."""
    seconds = {
        w.stage: max(
            w.flops / target.flops_per_s,
            w.steps * w.ops * target.launch_us * 1e-6,
            cpu_seconds(w, rates, target.host_cores),
        )
        for w in work
    }
    return {**seconds, "total": sum(seconds.values())}


def _perl_for_counting(clip_model: str, split_layer: int | Sequence[int], steps: int, **sharing: bool):
    """PERL on ``clip_model``'s architecture with random weights, its image size and a tokenizer;
    each depth is capped at the model's depth - 1 (a shallower model keeps a block to refine)."""
    import open_clip

    from perl_pipeline.config import split_depths
    from perl_pipeline.models import PERL, image_size, load_clip

    clip = load_clip(clip_model, None)
    depth = len(clip.visual.transformer.resblocks)
    depths = sorted({min(j, depth - 1) for j in split_depths(split_layer)})
    model = PERL(clip, split_layer=depths, steps=steps, **sharing)
    return model, image_size(clip), open_clip.get_tokenizer(clip_model)


def count_flops(
    clip_model: str = "ViT-B-16-quickgelu",
    *,
    split_layer: int | Sequence[int] = 7,
    steps: int = 4,
    **sharing: bool,
) -> ModelFlops:
    """Count :class:`ModelFlops` on ``clip_model``'s architecture (random weights, CPU, one item);
    ``sharing``: share_projector, share_layers (docs/method.md §2.7)."""
    import torch

    from perl_pipeline.tools.bench.harness import count_work

    model, size, tokenizer = _perl_for_counting(clip_model, split_layer, steps, **sharing)
    tokens = tokenizer(["a photo of a great white shark."])

    def counted(fn) -> float:
        return count_work(fn)[0]

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
        text_full=counted(lambda: model.clip.encode_text(tokens)),
        text_refine=counted(lambda: model.refine_text(text)),
        text_train=counted(lambda: trained(model.refine_text, text)),
    )


def count_ops(
    clip_model: str = "ViT-B-16-quickgelu",
    *,
    split_layer: int | Sequence[int] = 7,
    steps: int = 4,
    batch_size: int = 2,
    classes: int = 2,
    seeds: int = len(SEEDS),
    **sharing: bool,
) -> ModelOps:
    """Count :class:`ModelOps` on ``clip_model``'s architecture (random weights, CPU).

    The real training step and evaluation run under an aten-level counter with bf16 autocast.
    Operator calls do not grow with the batch or the classes, so small ones give the full counts."""
    import torch

    from perl_pipeline.config import EvalConfig, TrainConfig
    from perl_pipeline.evaluation.evaluate import evaluate_seeds
    from perl_pipeline.models import PERL
    from perl_pipeline.tools.bench.harness import OperatorCalls
    from perl_pipeline.training.loop import training_step, training_step_together

    def counted(fn) -> int:
        with torch.autocast("cpu", dtype=torch.bfloat16), OperatorCalls() as counter:
            fn()
        return counter.ops

    torch.manual_seed(0)
    model, size, tokenizer = _perl_for_counting(clip_model, split_layer, steps, **sharing)
    with torch.no_grad():
        text = model.text_prefix(tokenizer([f"a photo of a class {c}." for c in range(classes)]))
    images = torch.randn(batch_size, 3, size, size)
    labels = torch.arange(batch_size) % classes
    model.train()
    optimiser = torch.optim.AdamW(list(model.trainable_parameters()), lr=1e-4, foreach=True)
    config = TrainConfig(batch_size=batch_size, num_workers=0)
    training_step(model, images, labels, text, optimiser, config)  # AdamW's state exists from here
    train_step = counted(lambda: training_step(model, images, labels, text, optimiser, config))

    others = [  # the other seeds' models on the same frozen CLIP, as `train_seeds` builds them
        PERL(model.clip, model.split_layer, model.steps, seed=seed, **sharing).train()
        for seed in range(1, seeds)
    ]
    together = [model, *others]
    optimisers = [optimiser] + [
        torch.optim.AdamW(list(m.trainable_parameters()), lr=1e-4, foreach=True) for m in others
    ]
    batches, targets = [images] * seeds, [labels] * seeds
    training_step_together(together, batches, targets, text, optimisers, config)
    train_seeds_step = counted(
        lambda: training_step_together(together, batches, targets, text, optimisers, config)
    )

    models = {seed: model for seed in range(seeds)}  # one model per seed, as evaluate_seeds is called
    half = classes // 2
    class_sets = {"base": range(half), "novel": range(half, classes), "all": range(classes)}
    evaluation = EvalConfig(batch_size=batch_size, num_workers=0)
    model.eval()

    def evaluated(batches: int) -> int:
        pairs = [(image, int(label)) for image, label in zip(images, labels, strict=True)] * batches
        return counted(
            lambda: evaluate_seeds(
                models, pairs, text, class_sets, evaluation, device=torch.device("cpu"), benchmark="count"
            )
        )

    with torch.no_grad():
        eval_batch = evaluated(2) - evaluated(1)
    return ModelOps(train_step=train_step, train_seeds_step=train_seeds_step, eval_batch=eval_batch)
