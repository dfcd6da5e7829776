"""Training runs of PERL's projectors (docs/method.md §3), seeded end to end.

`train_seeds` trains every seed of a benchmark, with ``training.seeds_together`` in one batched
pass (`training_step_together`), otherwise one seed after another. Each seed keeps its own data
order, augmentation stream, initialisation and optimiser state, so a seed's projectors equal
training it alone up to float rounding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from perl_pipeline.config import TrainConfig
from perl_pipeline.device import autocast
from perl_pipeline.models import PERL, PerlLoss, PerlSeeds, TextPrefix, perl_loss

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run did: per-step losses, number of optimiser steps, wall time."""

    loss: list[float] = field(default_factory=list)
    ce: list[float] = field(default_factory=list)
    anchor: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0

    def add(self, loss: PerlLoss, seed: int, log_every: int) -> None:
        """Record one optimiser step's loss (and log it every `log_every` steps)."""
        self.steps += 1
        self.loss.append(loss.total.item())
        self.ce.append(loss.ce.item())
        self.anchor.append(loss.anchor.item())
        if self.steps % log_every == 0:
            losses = (self.loss[-1], self.ce[-1], self.anchor[-1])
            logger.info("seed %d step %d: loss %.4f (ce %.4f, anchor %.4f)", seed, self.steps, *losses)


def training_step(
    model: PERL,
    batch: torch.Tensor,
    labels: torch.Tensor,
    text: torch.Tensor | TextPrefix,
    optimiser: torch.optim.Optimizer,
    config: TrainConfig,
) -> PerlLoss:
    """One optimiser step on images [B, 3, H, W] with labels [B] into the classes of `text`: the loss
    of docs/method.md §3 (returned, still attached to the graph), backward, AdamW step.

    `text` is the class text prefix (refined in this step, so φ_t trains), or fixed text embeddings
    [K + 1, C, D] when the text tower has no projector.
    """
    return training_step_together([model], [batch], [labels], text, [optimiser], config)[0]


def training_step_together(
    models: Sequence[PERL],
    batches: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    text: torch.Tensor | TextPrefix,
    optimisers: Sequence[torch.optim.Optimizer],
    config: TrainConfig,
) -> list[PerlLoss]:
    """One optimiser step of several seeds (one PERL, batch, labels and optimiser each, same frozen
    CLIP); each seed's loss, in the order of `models`.

    Every seed's images go through the frozen prefix (without a graph) and the refinement blocks as
    one batch, its class prompts too, each sample thinking with its own seed's projector; the sum of
    the seeds' losses is back-propagated (the seeds share no parameter, so each projector gets
    exactly its own loss's gradient). One seed is exactly its own step, bit for bit.
    """
    seeds = PerlSeeds(models)
    sizes = [len(batch) for batch in batches]
    with autocast(batches[0].device, config.precision):
        with torch.no_grad():
            image_prefix = models[0].image_prefix(torch.cat(list(batches)))  # S_v of all, frozen
        image_steps = seeds.refine_image(image_prefix.split(sizes))  # [K + 1, B_s, D] per seed
        if isinstance(text, TextPrefix):
            text_steps = seeds.refine_text([text] * len(models))  # [K + 1, C, D] per seed
        else:
            text_steps = [text] * len(models)
        losses = [
            perl_loss(image, classes, y, models[0].logit_scale, config.anchor_weight)
            for image, classes, y in zip(image_steps, text_steps, labels, strict=True)
        ]
    for optimiser in optimisers:
        optimiser.zero_grad(set_to_none=True)
    torch.stack([loss.total for loss in losses]).sum().backward()
    for optimiser in optimisers:
        optimiser.step()
    return losses


def train_projectors(
    model: PERL,
    images: Dataset,
    text_prefix: TextPrefix,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
) -> TrainResult:
    """Train the fresh projectors of `model` in place on (image, label) pairs whose labels index the
    rows of `text_prefix` (re-refined every step); `seed` fixes the data order and augmentations."""
    return train_seeds({seed: model}, {seed: images}, text_prefix, config, device=device)[seed]


def train_seeds(
    models: Mapping[int, PERL],
    images: Mapping[int, Dataset],
    text_prefix: TextPrefix,
    config: TrainConfig,
    *,
    device: torch.device,
) -> dict[int, TrainResult]:
    """Train every seed's projectors (fresh, all on the same frozen CLIP) in place on its own pairs
    (labels index the rows of `text_prefix`): one seed after another, or (``config.seeds_together``)
    in one pass where each step takes the next batch of every seed that has one left."""
    lead = next(iter(models.values()))
    if next(lead.trainable_parameters(), None) is None:
        logger.info("No projector to train (modalities off or steps = 0): zero-shot CLIP is kept")
        return {seed: TrainResult() for seed in models}
    if len(models) > 1 and not config.seeds_together:
        return {
            seed: train_projectors(model, images[seed], text_prefix, config, seed=seed, device=device)
            for seed, model in models.items()
        }
    seeds = list(models)
    for model in models.values():
        model.to(device).train()
    optimisers = {
        seed: torch.optim.AdamW(model.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
        for seed, model in models.items()
    }
    text = TextPrefix(text_prefix.states.to(device), text_prefix.eos_index.to(device))  # refined each step
    if lead.text_projector is None:  # no text φ: fixed embeddings [K + 1, C, D], the same for all
        with torch.no_grad(), autocast(device, config.precision):
            text = lead.refine_text(text)
    streams = {seed: _SeedBatches(images[seed], config, seed, device) for seed in seeds}
    results = {seed: TrainResult() for seed in seeds}
    total = max(stream.steps for stream in streams.values())
    if len(seeds) > 1:
        logger.info("training seeds %s together: %d steps of %d seeds' batches", seeds, total, len(seeds))

    start = time.perf_counter()
    bar = tqdm(range(total), desc=f"train seeds {seeds}", leave=False, disable=None)
    for _ in bar:
        batches = {seed: stream.next() for seed, stream in streams.items()}
        active = [seed for seed in seeds if batches[seed] is not None]  # a shorter seed drops out
        losses = training_step_together(
            [models[seed] for seed in active],
            [batches[seed][0].to(device, non_blocking=True) for seed in active],
            [batches[seed][1].to(device) for seed in active],
            text,
            [optimisers[seed] for seed in active],
            config,
        )
        for seed, loss in zip(active, losses, strict=True):
            results[seed].add(loss, seed, config.log_every)
        bar.set_postfix(loss=f"{losses[-1].total.item():.4f}")
    seconds = time.perf_counter() - start
    for seed, model in models.items():
        model.eval()
        results[seed].seconds = seconds  # the pass they shared
        final = results[seed].loss[-1] if results[seed].loss else float("nan")
        logger.info("seed %d: %d steps in %.1f s, final loss %.4f", seed, results[seed].steps, seconds, final)
    return results


class _SeedBatches:
    """One seed's shuffled batches (their order fixed by `seed`), epoch after epoch, its
    augmentations drawn from its own RNG stream.

    Augmentations drawn in this process use the global RNG: each seed's stream starts at
    `manual_seed(seed)` and is swapped in around its own draws only, so seeds taking batches in
    turn draw exactly what each would alone, and the caller's random state is untouched."""

    def __init__(self, images: Dataset, config: TrainConfig, seed: int, device: torch.device):
        loader = DataLoader(
            images,
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            drop_last=len(images) >= config.batch_size,
            num_workers=config.num_workers,
            pin_memory=device.type == "cuda",
        )
        self.steps = config.epochs * len(loader)
        self._batches = self._epochs(loader, config.epochs)
        self._rng = torch.Generator().manual_seed(seed).get_state()  # the global RNG's after manual_seed

    def next(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The next (images, labels), or None once every epoch is done."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng)
            batch = next(self._batches, None)
            self._rng = torch.get_rng_state()
        return batch

    @staticmethod
    def _epochs(loader: DataLoader, epochs: int) -> Iterator:
        for _ in range(epochs):
            # An iterator made and dropped first: the progress bar of the first releases did that
            # (tqdm.auto builds one up front), advancing the loader's generator, and every recorded
            # run's data order includes that draw. Keeping it keeps their projectors reproducible.
            iter(loader)
            yield from loader
