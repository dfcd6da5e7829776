"""What the benchmark times: its settings, inputs, the image-side and text-side workloads, and the rows
they produce."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from perl_pipeline.bench.harness import measure
from perl_pipeline.config import TrainConfig
from perl_pipeline.device import autocast
from perl_pipeline.models import PERL
from perl_pipeline.training import training_step

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


WORKLOADS = ("zero_shot", "perl_inference", "perl_train_step")
WORKLOAD_LABELS = {
    "zero_shot": "zero-shot CLIP",
    "perl_inference": "PERL inference",
    "perl_train_step": "PERL train step",
}


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
    """The three image-side calls to time, keyed by WORKLOADS."""
    device = images.device

    def zero_shot() -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return model.clip.encode_image(images)

    def perl_inference() -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return model.encode_image(images)

    def perl_train_step() -> torch.Tensor:
        return training_step(model, images, labels, fixed_text, optimizer, TRAIN_CONFIG).total

    return {
        "zero_shot": zero_shot,
        "perl_inference": perl_inference,
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
    """Zero-shot, PERL inference and PERL training step at every batch size."""
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
        )
        for name in WORKLOADS:
            timing = timings[name]
            rows.append(
                ImageRow(
                    workload=name,
                    batch=batch,
                    seconds=timing.seconds,
                    repeats=timing.repeats,
                    images_per_s=batch / timing.seconds,
                    ms_per_image=1000 * timing.seconds / batch,
                    peak_memory_mb=timing.peak_memory_mb,
                    times=timing.times,
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
        timings = measure(calls, device, *_repeat_settings(settings))
        for cut, timing in timings.items():
            rows.append(
                TextRow(
                    prompts=count,
                    cut=cut,
                    tokens=cut_length(model, tokens) if cut else tokens.shape[1],
                    seconds=timing.seconds,
                    repeats=timing.repeats,
                    prompts_per_s=count / timing.seconds,
                    peak_memory_mb=timing.peak_memory_mb,
                    times=timing.times,
                )
            )
    return rows


def _repeat_settings(settings: Settings) -> tuple[int, int, float]:
    return settings.warmup, settings.repeats, settings.budget_s
