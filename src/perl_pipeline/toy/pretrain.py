"""Contrastive pretraining of a whole open_clip CLIP on image-caption pairs (the toy world's CLIP)."""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from perl_pipeline.toy.config import PretrainConfig

logger = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp on the learned temperature


@dataclass
class PretrainResult:
    """Per-step contrastive loss, the final temperature and wall time."""

    loss: list[float] = field(default_factory=list)
    logit_scale: float = 0.0
    seconds: float = 0.0

    def record(self, model_name: str, pairs: int, every: int, device: str, settings: dict) -> dict:
        """The pretraining record: the loss averaged over every `every` steps, the first and last
        losses, the final temperature, seconds, device and the pretraining `settings`."""
        chunks = [self.loss[i : i + every] for i in range(0, len(self.loss), every)]
        return {
            "model_name": model_name,
            "pairs": pairs,
            "loss_every": every,
            "loss": [sum(chunk) / len(chunk) for chunk in chunks],
            "first_loss": self.loss[0],
            "last_loss": self.loss[-1],
            "logit_scale": self.logit_scale,
            "seconds": round(self.seconds, 1),
            "device": device,
            "pretraining": settings,
        }


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over [B, D] unnormalised embeddings; `logit_scale`: log of 1/temperature."""
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = logit_scale.exp() * image @ text.T  # [B, B]
    target = torch.arange(len(image), device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def pretrain_clip(
    model: nn.Module, pairs: Dataset, config: PretrainConfig, device: torch.device
) -> PretrainResult:
    """Train every weight of an open_clip CLIP in place on (image, tokens) pairs."""
    result = PretrainResult()
    model.to(device).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _lr_factor(step, config))
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        pairs,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=generator,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        prefetch_factor=4 if config.num_workers > 0 else None,
    )
    if len(loader) == 0:
        raise ValueError(f"{len(pairs)} pairs cannot fill one batch of {config.batch_size}")
    start = time.perf_counter()
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch, reshuffled
    with tqdm(total=config.steps, desc="pretraining CLIP", unit="step", mininterval=2.0) as bar:
        for step in range(config.steps):
            images, tokens = next(batches)
            loss = contrastive_loss(
                model.encode_image(images.to(device)), model.encode_text(tokens.to(device)), model.logit_scale
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            result.loss.append(loss.item())
            bar.update()
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                recent = sum(result.loss[-config.log_every :]) / len(result.loss[-config.log_every :])
                bar.set_postfix(loss=f"{recent:.3f}")
                logger.info("pretraining step %d/%d: contrastive loss %.4f", step + 1, config.steps, recent)
    model.eval()
    result.logit_scale = float(model.logit_scale.detach().exp())
    result.seconds = time.perf_counter() - start
    return result


def _lr_factor(step: int, config: PretrainConfig) -> float:
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
