"""Typed configuration of the toy world's CLIP (``toy_clip`` and ``toy_clip_pretraining``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from perl_pipeline.config import ConfigError, Section
from perl_pipeline.toy.world import CaptionStyle, Shift, split_concept


class ToyClipConfig(Section):
    """The toy world's CLIP, pretrained offline so the demo's zero-shot transfer is real."""

    SECTION: ClassVar[str] = "toy_clip"

    model_name: str = "PERL-Toy-ViT"  # the open_clip config pretrained from scratch (shipped)
    init_seed: int = 0  # seeds the initial weights
    pairs: int = Field(100_000, ge=1)  # image-caption pairs generated for pretraining (on the fly)
    seed: int = 0  # seeds the scenes and their captions
    held_out: tuple[str, ...] = ()  # concepts ("<colour> <shape>") never shown in pretraining
    templates: tuple[str, ...] = ("a photo of a {concept}.",)  # {concept}, {size}, {background}, {position}
    probe_images: int = Field(1000, ge=1)  # images per probe group of the zero-shot report
    probe_template: str = "a photo of a {}."  # the prompt of the zero-shot report's classifiers
    shifted: dict = {}  # the shifted world of the demo's benchmarks (a Shift's fields)

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
    """Optimisation of the contrastive pretraining: AdamW, linear warm-up to `lr`, then cosine
    decay to 0; weight decay on weight matrices and embeddings only (not biases, norms or the
    temperature); each pair's negatives are the batch's other pairs."""

    SECTION: ClassVar[str] = "toy_clip_pretraining"

    steps: int = Field(2500, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    warmup: int = Field(200, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    seed: int = 0  # the batch order (the initial weights come from toy_clip.init_seed)
    log_every: int = Field(50, ge=1)
    num_workers: int = Field(1, ge=0)  # processes preparing batches beside the training one
