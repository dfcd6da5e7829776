"""One training run of PERL's projectors (docs/method.md §3), seeded end to end."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from perl_pipeline.config import PerlConfig, TrainConfig
from perl_pipeline.device import autocast
from perl_pipeline.models import PERL, PerlLoss, TextPrefix, perl_loss

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run did: per-step losses, number of optimiser steps, wall time."""

    loss: list[float] = field(default_factory=list)
    ce: list[float] = field(default_factory=list)
    anchor: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def projector_recipe(
    backbone: dict,
    perl: PerlConfig,
    training: TrainConfig,
    *,
    subset: str,
    seed: int,
    few_shot: str,
    text_features: str,
) -> dict:
    """Everything that determines one seed's trained projectors.

    Args:
        backbone: `models.backbone_identity` of the frozen CLIP.
        few_shot / text_features: the identities of the draw and of the text features trained on.
    """
    settings = dataclasses.asdict(training)
    settings.pop("log_every")  # how often to log changes no weight
    return {
        "backbone": backbone,
        "perl": dataclasses.asdict(perl),
        "training": settings,
        "subset": subset,
        "seed": int(seed),
        "few_shot": few_shot,
        "text_features": text_features,
    }


def training_step(
    model: PERL,
    batch: torch.Tensor,
    labels: torch.Tensor,
    text: torch.Tensor | TextPrefix,
    optimiser: torch.optim.Optimizer,
    config: TrainConfig,
) -> PerlLoss:
    """One optimiser step on a batch: the loss of docs/method.md §3, backward, AdamW step.

    The frozen image prefix S_v runs without a graph; the refinement runs with one, so only
    the projectors get gradients.

    Args:
        model: PERL in train mode, on the device of `batch`.
        batch: images [B, 3, H, W].
        labels: [B] indices into the classes of `text`.
        text: the class text prefix (refined in this step, so φ_t trains), or fixed text
            embeddings [K + 1, C, D] when the text tower has no projector.
        optimiser: over `model.trainable_parameters()`.
        config: precision (autocast) and the anchor weight λ.

    Returns:
        The step's loss and its parts (still attached to the graph).
    """
    with autocast(batch.device, config.precision):
        with torch.no_grad():
            image_prefix = model.image_prefix(batch)  # S_v, frozen: no graph
        image_steps = model.refine_image(image_prefix)  # [K + 1, B, D]
        text_steps = model.refine_text(text) if isinstance(text, TextPrefix) else text
        loss = perl_loss(image_steps, text_steps, labels, model.logit_scale, config.anchor_weight)
    optimiser.zero_grad(set_to_none=True)
    loss.total.backward()
    optimiser.step()
    return loss


def train_projectors(
    model: PERL,
    images: Dataset,
    text_prefix: TextPrefix,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
) -> TrainResult:
    """Train the projectors of `model` in place on (image, label) pairs.

    Args:
        model: PERL with freshly initialised projectors (its seed fixes the init).
        images: training pairs; labels index the rows of `text_prefix`.
        text_prefix: frozen text states of the label space's class prompts, re-refined every step.
        config: optimisation settings.
        seed: fixes the data order and the augmentations.
        device: where to train.
    """
    result = TrainResult()
    parameters = list(model.trainable_parameters())
    if not parameters:
        logger.info("No projector to train (modalities off or steps = 0): zero-shot CLIP is kept")
        return result
    model.to(device).train()
    optimiser = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    prefix = TextPrefix(text_prefix.states.to(device), text_prefix.eos_index.to(device))
    loader = DataLoader(
        images,
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=len(images) >= config.batch_size,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )
    fixed_text = None
    if model.text_projector is None:  # text refinement has no parameters: compute it once
        with torch.no_grad(), autocast(device, config.precision):
            fixed_text = model.refine_text(prefix)

    start = time.perf_counter()
    # Augmentations drawn in this process use the global RNG: fork it so the seed fixes them
    # without touching the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(config.epochs):
            bar = tqdm(loader, desc=f"train seed {seed} epoch {epoch + 1}", leave=False, disable=None)
            for batch, labels in bar:
                batch, labels = batch.to(device, non_blocking=True), labels.to(device)
                text = fixed_text if fixed_text is not None else prefix
                loss = training_step(model, batch, labels, text, optimiser, config)
                result.steps += 1
                result.loss.append(loss.total.item())
                result.ce.append(loss.ce.item())
                result.anchor.append(loss.anchor.item())
                bar.set_postfix(loss=f"{result.loss[-1]:.4f}")
                if result.steps % config.log_every == 0:
                    logger.info(
                        "seed %d step %d: loss %.4f (ce %.4f, anchor %.4f)",
                        seed,
                        result.steps,
                        result.loss[-1],
                        result.ce[-1],
                        result.anchor[-1],
                    )
    result.seconds = time.perf_counter() - start
    model.eval()
    logger.info(
        "seed %d: %d steps in %.1f s, final loss %.4f",
        seed,
        result.steps,
        result.seconds,
        result.loss[-1] if result.loss else float("nan"),
    )
    return result
