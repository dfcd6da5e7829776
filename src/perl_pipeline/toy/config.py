"""Typed configuration of the toy world's CLIP (``toy_clip`` and ``toy_clip_pretraining``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from perl_pipeline.config import ConfigError, Section
from perl_pipeline.toy.world import CaptionStyle, Shift, split_concept


class ToyClipConfig(Section):
    """The toy world's CLIP, pretrained offline so the demo's zero-shot transfer is real.

    Attributes:
        model_name: the open_clip config pretrained from scratch (shipped with the package).
        init_seed: seeds the initial weights.
        pairs: image-caption pairs generated for pretraining (rendered on the fly).
        seed: seeds the scenes and their captions.
        held_out: concepts ("<colour> <shape>") never shown in pretraining.
        templates: caption templates, with {concept}, {size}, {background}, {position} fields.
        probe_images: images per probe group for the zero-shot report.
        probe_template: the prompt of the zero-shot report's classifiers.
        shifted: the shifted world the demo benchmarks are drawn from (a Shift's fields).
    """

    SECTION: ClassVar[str] = "toy_clip"

    model_name: str = "PERL-Toy-ViT"
    init_seed: int = 0
    pairs: int = Field(100_000, ge=1)
    seed: int = 0
    held_out: tuple[str, ...] = ()
    templates: tuple[str, ...] = ("a photo of a {concept}.",)
    probe_images: int = Field(1000, ge=1)
    probe_template: str = "a photo of a {}."
    shifted: dict = {}

    @model_validator(mode="after")
    def _check(self) -> ToyClipConfig:
        checks = (
            ("held_out", lambda: [split_concept(concept) for concept in self.held_out]),
            ("templates", lambda: CaptionStyle(self.templates)),
            ("shifted", lambda: Shift(**self.shifted)),
        )
        for key, check in checks:
            try:
                check()
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"toy_clip.{key}: {exc}") from exc
        if "{}" not in self.probe_template:
            raise ConfigError(
                f"toy_clip.probe_template={self.probe_template!r}: needs a {{}} for the concept"
            )
        return self


class PretrainConfig(Section):
    """Optimisation of the contrastive pretraining.

    Attributes:
        steps: optimiser steps.
        batch_size: pairs per step (each pair's negatives are the batch's other pairs).
        lr: peak learning rate of AdamW, reached after `warmup` steps, then cosine decay to 0.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay on weight matrices and embeddings (not on biases, norms
            or the temperature).
        seed: fixes the batch order (the initial weights come from toy_clip.init_seed).
        log_every: steps between progress-bar / log updates.
        num_workers: processes preparing batches beside the training one (0: in the training
            process).
    """

    SECTION: ClassVar[str] = "toy_clip_pretraining"

    steps: int = Field(2500, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    warmup: int = Field(200, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    seed: int = 0
    log_every: int = Field(50, ge=1)
    num_workers: int = Field(1, ge=0)
