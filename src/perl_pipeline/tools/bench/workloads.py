"""What the benchmark times: its settings, inputs, the image-side and text-side workloads, and the rows
they produce."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import yaml
from torch import nn

from perl_pipeline.config import EvalConfig, TrainConfig, split_depths
from perl_pipeline.device import autocast
from perl_pipeline.models import PERL
from perl_pipeline.protocols import project_root
from perl_pipeline.tools.bench.harness import Timing, measure
from perl_pipeline.tools.sweep import parse_fixed
from perl_pipeline.training import training_step, training_step_together

logger = logging.getLogger(__name__)

TRAIN_CONFIG = TrainConfig()  # the training defaults: bf16 autocast on GPUs, anchor weight 1

TEMPLATE = "a photo of a {}, a type of pet."  # CoOp's OxfordPets prompt
PET_BREEDS = (
    "abyssinian", "american bulldog", "american pit bull terrier", "basset hound", "beagle",
    "bengal", "birman", "bombay", "boxer", "british shorthair", "chihuahua", "egyptian mau",
    "english cocker spaniel", "english setter", "german shorthaired", "great pyrenees", "havanese",
    "japanese chin", "keeshond", "leonberger", "maine coon", "miniature pinscher", "newfoundland",
    "persian", "pomeranian", "pug", "ragdoll", "russian blue", "saint bernard", "samoyed",
    "scottish terrier", "shiba inu", "siamese", "sphynx", "staffordshire bull terrier",
    "wheaten terrier", "yorkshire terrier",
)  # fmt: skip
MODIFIERS = (
    "black", "white", "long haired", "short haired", "young", "old", "spotted", "striped",
    "fluffy", "miniature", "giant", "sleeping", "wet", "muddy", "happy", "grumpy", "tiny",
    "brown and white", "golden", "grey", "curly haired", "show quality", "rescued", "playful",
    "well groomed", "three legged", "blue eyed",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures (resolved from the command line and the device)."""

    model: str
    device: str
    batch_sizes: tuple[int, ...]
    text_sizes: tuple[int, ...]
    warmup: int
    repeats: int
    budget_s: float
    split_layer: int
    steps: int
    train_classes: int
    threads: int
    seed: int
    seeds: int = 3
    train_batch: int = 4
    eval_images: int = 32


@dataclass(frozen=True)
class ImageRow:
    """One image-side measurement: a workload at a batch size."""

    workload: str
    batch: int
    seconds: float
    repeats: int
    images_per_s: float
    ms_per_image: float
    peak_memory_mb: float
    times: tuple[float, ...]
    flops: float  # of one call
    ops: int  # operator calls of one call (about one GPU kernel each)


@dataclass(frozen=True)
class TextRow:
    """One text-side measurement: PERL text features for `prompts` prompts, cut or not."""

    prompts: int
    cut: bool
    tokens: int
    seconds: float
    repeats: int
    prompts_per_s: float
    peak_memory_mb: float
    times: tuple[float, ...]
    flops: float  # of one call
    ops: int  # operator calls of one call (about one GPU kernel each)


@dataclass(frozen=True)
class SeedsRow:
    """A training step of `seeds` seeds, `batch` images each: one seed's step, or all seeds together."""

    workload: str
    seeds: int
    batch: int
    seconds: float
    repeats: int
    images_per_s: float  # all the step's images (every seed's) per second
    peak_memory_mb: float
    times: tuple[float, ...]
    flops: float  # of one call
    ops: int  # operator calls of one call (about one GPU kernel each)


@dataclass(frozen=True)
class EvalRow:
    """Evaluation throughput over `images` JPEG files: decoding alone, or the whole evaluation."""

    workload: str
    decode: str  # where JPEGs are decoded: cpu (data-loader workers) or gpu
    images: int
    workers: int
    seconds: float
    repeats: int
    images_per_s: float
    times: tuple[float, ...]


@dataclass(frozen=True)
class LoopRow:
    """PERL inference (no grad) of one of Table 4's variants, next to zero-shot at the same batch."""

    variant: str
    split_layer: int | tuple[int, ...]
    share_projector: bool
    share_layers: bool
    parameters: int
    batch: int
    seconds: float
    repeats: int
    ms_per_image: float
    vs_zero_shot: float
    flops: float  # of one call


WORKLOADS = ("zero_shot", "perl_inference", "perl_inference_full", "perl_train_step")
WORKLOAD_LABELS = {
    "zero_shot": "zero-shot CLIP",
    "perl_inference": "PERL inference",  # the last block at the read-out only (the default)
    "perl_inference_full": "PERL, full last",  # the last block on every token (the paper's count)
    "perl_train_step": "PERL train step",
}
SEEDS_WORKLOADS = ("train_one_seed", "train_seeds_together")


def table4_loops(root: Path | None = None) -> dict[str, dict]:
    """Table 4's reasoning loops (docs/method.md §2.7) at ViT-B/16's depths (L = 12): the rows of
    ``paper.table4`` in conf/base/parameters_paper.yml over conf/base/parameters.yml's ``perl``."""
    conf = (root or project_root()) / "conf" / "base"
    default = yaml.safe_load((conf / "parameters.yml").read_text())["perl"]["split_layer"]
    rows = yaml.safe_load((conf / "parameters_paper.yml").read_text())["paper"]["table4"]["rows"]
    loops = {}
    for row in rows:
        settings = {key.removeprefix("perl."): value for key, value in map(parse_fixed, row["set"])}
        loops[row["name"]] = {"split_layer": default, **settings}
    return loops


LOOP_VARIANTS = table4_loops()
EVAL_WORKLOADS = ("decode_only", "evaluate", "evaluate_jacobian", "zero_shot_evaluate", "predict")


# -- inputs ---------------------------------------------------------------------------------------


def class_prompts(count: int) -> list[str]:
    """`count` distinct CoOp-style prompts over pet-like class names of one to six words."""
    names = list(PET_BREEDS) + [f"{mod} {breed}" for mod in MODIFIERS for breed in PET_BREEDS]
    if count > len(names):
        raise ValueError(f"at most {len(names)} distinct class prompts, asked for {count}")
    return [TEMPLATE.format(name) for name in names[:count]]


def random_images(clip: nn.Module, batch: int, seed: int, device: torch.device) -> torch.Tensor:
    """A batch of normalised-image-like noise at the backbone's input size."""
    size = clip.visual.image_size
    height, width = size if isinstance(size, tuple) else (size, size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator).to(device)


def cut_length(model: PERL, tokens: torch.Tensor) -> int:
    """Tokens left by the EOS cut: up to and including the longest prompt's EOS."""
    return int(model.eos_index(tokens).max()) + 1


# -- workloads --------------------------------------------------------------------------------


def image_workloads(
    model: PERL,
    images: torch.Tensor,
    labels: torch.Tensor,
    fixed_text: torch.Tensor,
    optimizer: torch.optim.Optimizer,
) -> dict[str, Callable[[], object]]:
    """The image-side calls to time, keyed by WORKLOADS."""
    device = images.device

    def zero_shot() -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return model.clip.encode_image(images)

    def perl_inference() -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return model.encode_image(images)

    def perl_inference_full() -> torch.Tensor:
        model.last_block_readout_only = False
        try:
            with torch.no_grad(), autocast(device):
                return model.encode_image(images)
        finally:
            model.last_block_readout_only = True

    def perl_train_step() -> torch.Tensor:
        return training_step(model, images, labels, fixed_text, optimizer, TRAIN_CONFIG).total

    return {
        "zero_shot": zero_shot,
        "perl_inference": perl_inference,
        "perl_inference_full": perl_inference_full,
        "perl_train_step": perl_train_step,
    }


def text_features(model: PERL, tokens: torch.Tensor, cut: bool = True) -> torch.Tensor:
    """PERL text features for every step, no grad: text_prefix (cut or not), then refine_text."""
    with torch.no_grad(), autocast(tokens.device):
        return model.refine_text(model.text_prefix(tokens, cut=cut))


# -- the run ----------------------------------------------------------------------------------


def bench_images(
    model: PERL, settings: Settings, device: torch.device, tokenizer: Callable
) -> list[ImageRow]:
    """Zero-shot, PERL inference (with and without the last-block shortcut) and a PERL training
    step at every batch size."""
    tokens = tokenizer(class_prompts(settings.train_classes)).to(device)
    fixed_text = text_features(model, tokens).float()  # [K + 1, C, D], precomputed once
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    rows = []
    for batch in settings.batch_sizes:
        images = random_images(model.clip, batch, settings.seed, device)
        generator = torch.Generator().manual_seed(settings.seed)
        labels = torch.randint(settings.train_classes, (batch,), generator=generator).to(device)
        workloads = image_workloads(model, images, labels, fixed_text, optimizer)
        logger.info("timing %s at batch %d", ", ".join(WORKLOAD_LABELS.values()), batch)
        timings = measure(
            workloads,
            device,
            *_repeat_settings(settings),
            before=lambda name: model.train(name == "perl_train_step"),
            count=True,
        )
        for name in WORKLOADS:
            timing = timings[name]
            rows.append(
                ImageRow(
                    workload=name,
                    batch=batch,
                    images_per_s=batch / timing.seconds,
                    ms_per_image=1000 * timing.seconds / batch,
                    **_timed(timing),
                )
            )
    model.eval()
    return rows


def bench_text(model: PERL, settings: Settings, device: torch.device, tokenizer: Callable) -> list[TextRow]:
    """PERL text features with and without the EOS cut, at every prompt count."""
    rows = []
    for count in settings.text_sizes:
        tokens = tokenizer(class_prompts(count)).to(device)
        logger.info("timing PERL text features for %d prompts, uncut and cut", count)
        calls = {cut: partial(text_features, model, tokens, cut) for cut in (False, True)}
        timings = measure(calls, device, *_repeat_settings(settings), count=True)
        for cut, timing in timings.items():
            rows.append(
                TextRow(
                    prompts=count,
                    cut=cut,
                    tokens=cut_length(model, tokens) if cut else tokens.shape[1],
                    prompts_per_s=count / timing.seconds,
                    **_timed(timing),
                )
            )
    return rows


def loop_variant(name: str, blocks: int) -> dict:
    """The settings of Table 4's variant `name` on a backbone of `blocks` blocks: each depth scaled
    to J·L/12, rounded down, repeats dropped (the paper's depths when L = 12)."""
    settings = LOOP_VARIANTS[name]
    depths = sorted({j * blocks // 12 for j in split_depths(settings["split_layer"])})
    return {**settings, "split_layer": depths[0] if len(depths) == 1 else tuple(depths)}


def bench_loops(model: PERL, settings: Settings, device: torch.device) -> list[LoopRow]:
    """Each of Table 4's variants' PERL inference at the smallest batch, with zero-shot timed in
    the same measurement."""
    batch = min(settings.batch_sizes)
    images = random_images(model.clip, batch, settings.seed, device)
    blocks = len(model.clip.visual.transformer.resblocks)
    variants = {
        name: PERL(model.clip, steps=settings.steps, seed=settings.seed, **loop_variant(name, blocks)).to(
            device
        )
        for name in LOOP_VARIANTS
    }

    def encode(encoder: Callable) -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return encoder(images)

    calls = {"zero_shot": partial(encode, model.clip.encode_image)}
    calls |= {name: partial(encode, variant.encode_image) for name, variant in variants.items()}
    logger.info("timing PERL inference of Table 4's %d reasoning loops at batch %d", len(variants), batch)
    timings = measure(calls, device, *_repeat_settings(settings), count=True)
    zero_shot = timings["zero_shot"].seconds
    return [
        LoopRow(
            variant=name,
            split_layer=variant.split_layer,
            share_projector=variant.share_projector,
            share_layers=variant.share_layers,
            parameters=sum(p.numel() for p in variant.trainable_parameters()),
            batch=batch,
            seconds=timings[name].seconds,
            repeats=timings[name].repeats,
            ms_per_image=1000 * timings[name].seconds / batch,
            vs_zero_shot=timings[name].seconds / zero_shot,
            flops=timings[name].flops,
        )
        for name, variant in variants.items()
    ]


def _timed(timing: Timing) -> dict:
    """A row's fields from its measurement."""
    fields = ("seconds", "repeats", "peak_memory_mb", "times", "flops", "ops")
    return {name: getattr(timing, name) for name in fields}


def _repeat_settings(settings: Settings) -> tuple[int, int, float]:
    return settings.warmup, settings.repeats, settings.budget_s


def bench_seeds(model: PERL, settings: Settings, device: torch.device, tokenizer: Callable) -> list[SeedsRow]:
    """A training step as the loop runs it (class prompts refined every step) for one seed, and for
    `settings.seeds` seeds together (`training_step_together`), `settings.train_batch` images each."""
    tokens = tokenizer(class_prompts(settings.train_classes)).to(device)
    with torch.no_grad():
        prefix = model.text_prefix(tokens)
    models = [model] + [
        PERL(model.clip, settings.split_layer, settings.steps, seed=settings.seed + k).to(device)
        for k in range(1, settings.seeds)
    ]
    optimisers = [torch.optim.AdamW(m.trainable_parameters(), lr=1e-4) for m in models]
    batch = settings.train_batch
    images = [random_images(model.clip, batch, settings.seed + k, device) for k in range(settings.seeds)]
    generator = torch.Generator().manual_seed(settings.seed)
    labels = [torch.randint(settings.train_classes, (batch,), generator=generator).to(device) for _ in models]
    calls = {
        "train_one_seed": lambda: (
            training_step(model, images[0], labels[0], prefix, optimisers[0], TRAIN_CONFIG).total
        ),
        "train_seeds_together": lambda: training_step_together(
            models, images, labels, prefix, optimisers, TRAIN_CONFIG
        ),
    }
    logger.info("timing a training step of 1 seed and of %d seeds together", settings.seeds)
    for m in models:
        m.train()
    timings = measure(calls, device, *_repeat_settings(settings), count=True)
    for m in models:
        m.eval()
    return [
        SeedsRow(
            workload=name,
            seeds=seeds,
            batch=batch,
            images_per_s=seeds * batch / timing.seconds,
            **_timed(timing),
        )
        for (name, timing), seeds in zip(timings.items(), (1, settings.seeds), strict=True)
    ]


def bench_evaluation(
    model: PERL, settings: Settings, device: torch.device, tokenizer: Callable, folder: Path
) -> list[EvalRow]:
    """Evaluation of `settings.seeds` seeds over `settings.eval_images` photo-sized JPEGs written to
    `folder`, next to decoding them alone (the data path's ceiling); CPU decoding by data-loader
    workers and, on CUDA, decoding on the GPU; and the evaluation with the input-Jacobian norm of
    every image (docs/method.md §6.10), whose extra time per image, step and seed is its cost."""
    from perl_pipeline.benchmarks.images import ImageFolderTable, test_transform
    from perl_pipeline.evaluation.evaluate import EvalBatches, evaluate_seeds
    from perl_pipeline.models import image_size

    names = write_photos(folder, settings.eval_images, settings.seed)
    table = ImageFolderTable(
        folder, names, [k % 10 for k in range(len(names))], test_transform(image_size(model.clip))
    )
    tokens = tokenizer(class_prompts(10)).to(device)
    with torch.no_grad():
        prefix = model.text_prefix(tokens)
    models = {
        k: PERL(model.clip, settings.split_layer, settings.steps, seed=k).to(device)
        for k in range(settings.seeds)
    }
    zero_shot = {0: PERL(model.clip, settings.split_layer, 0, modalities=()).to(device)}
    classifier = _classifier(models[0], settings)
    batch = max(settings.batch_sizes)
    rows = []
    for decode in ("cpu", "gpu") if device.type == "cuda" else ("cpu",):
        config = EvalConfig(batch_size=batch, gpu_decode=decode == "gpu")

        def decode_only(config=config) -> None:
            for images, _ in EvalBatches(table, config, device, model.clip):
                del images

        def evaluate(config=config, models=models) -> None:
            evaluate_seeds(
                models, table, prefix, {"all": range(10)}, config, device=device, benchmark="bench"
            )

        def predict(config=config) -> None:  # python -m perl_pipeline.predict's work (PIL decoding)
            from perl_pipeline.predict import predict_files

            files = [folder / name for name in names]
            workers = config.resolved_workers()
            predict_files(
                classifier, files, batch_size=batch, num_workers=workers, device=device, progress=False
            )

        workloads = {"decode_only": decode_only, "evaluate": evaluate}
        jacobian = config.model_copy(update={"jacobian_images": len(names)})
        workloads["evaluate_jacobian"] = partial(evaluate, config=jacobian)
        workloads["zero_shot_evaluate"] = partial(evaluate, models=zero_shot)
        if decode == "cpu":
            workloads["predict"] = predict

        logger.info(
            "timing evaluation of %d seeds over %d JPEGs, %s decoding", settings.seeds, len(names), decode
        )
        timings = measure(workloads, device, *_repeat_settings(settings))
        for name, timing in timings.items():
            rows.append(
                EvalRow(
                    workload=name,
                    decode=decode,
                    images=len(names),
                    workers=config.resolved_workers(),
                    seconds=timing.seconds,
                    repeats=timing.repeats,
                    images_per_s=len(names) / timing.seconds,
                    times=timing.times,
                )
            )
    return rows


def _classifier(model: PERL, settings: Settings):
    """An adapter classifier over 10 pet classes on `model` (what predict loads from a file)."""
    import open_clip

    from perl_pipeline.models import AdapterClassifier, make_adapter

    adapter = make_adapter(
        model.projector_state_dict(),
        backbone={"model_name": settings.model, "weights": f"random:{settings.seed}"},
        perl={
            "split_layer": model.split_layer,
            "steps": model.steps,
            "rank": model.rank,
            "modalities": model.modalities,
            "share_projector": model.share_projector,
            "share_layers": model.share_layers,
            "projector_init": model.projector_init,
        },
        template=TEMPLATE,
        classnames=PET_BREEDS[:10],
    )
    return AdapterClassifier(model, adapter, open_clip.get_tokenizer(settings.model)).eval()


def write_photos(folder: Path, count: int, seed: int) -> list[str]:
    """`count` JPEGs of 500 x 375 pixels (the size of a typical benchmark photo), quality 90."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for k in range(count):
        coarse = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # smooth colour fields, as photos
        image = Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)
        names.append(f"photo_{k:05d}.jpg")
        image.save(folder / names[-1], quality=90)
    return names
