"""Typed configuration, built from conf/ at the boundary (Kedro instantiates these for the nodes).

Every check here runs when Kedro validates the parameters, before any model or data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODALITIES = ("image", "text")
PROJECTOR_INITS = ("default", "zero_out")  # as in perl_pipeline.models.projector
FEW_SHOT_DRAWS = ("coop", "sorted")  # as in perl_pipeline.benchmarks.few_shot


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ClipConfig:
    """The frozen backbone: an open_clip config name and where its weights come from."""

    model_name: str = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"  # a tag, a local file, or null for random weights
    cache_dir: str | None = "data/01_raw/clip"  # downloaded weights are kept (and looked for) here
    init_seed: int = 0  # only used with pretrained: null


@dataclass(frozen=True)
class PerlConfig:
    """The method's settings (docs/method.md §2 and the §7 ablations)."""

    split_layer: int = 7  # J: blocks in the frozen base
    steps: int = 4  # K: refinement steps
    rank: int = 1  # r: projector bottleneck
    modalities: tuple[str, ...] = MODALITIES  # towers that get a projector
    share_projector: bool = True  # false: one projector per step (untied ablation)
    projector_init: str = "default"  # zero_out: output layer at zero, every thought starts equal

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        unknown = [m for m in self.modalities if m not in MODALITIES]
        _require(not unknown, f"perl.modalities: unknown {unknown}; choose from {list(MODALITIES)}")
        _require(len(set(self.modalities)) == len(self.modalities), "perl.modalities: repeated entry")
        _require(self.split_layer >= 1, f"perl.split_layer={self.split_layer} must be >= 1")
        _require(self.steps >= 0, f"perl.steps={self.steps} must be >= 0 (0 is zero-shot CLIP)")
        _require(self.rank >= 1, f"perl.rank={self.rank} must be >= 1")
        _require(
            self.projector_init in PROJECTOR_INITS,
            f"perl.projector_init={self.projector_init!r} must be one of {list(PROJECTOR_INITS)}",
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (docs/method.md §3): AdamW 1e-4, batch 4, one epoch, λ = 1."""

    lr: float = 1e-4
    batch_size: int = 4
    epochs: int = 1
    anchor_weight: float = 1.0  # λ
    weight_decay: float = 0.01  # PyTorch's AdamW default
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop scale
    precision: str = "bf16"  # autocast dtype on GPUs; the CPU always runs fp32
    num_workers: int = 4
    log_every: int = 50

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale))
        _require(self.lr > 0, f"training.lr={self.lr} must be > 0")
        _require(self.batch_size >= 1, f"training.batch_size={self.batch_size} must be >= 1")
        _require(self.epochs >= 1, f"training.epochs={self.epochs} must be >= 1")
        _require(self.anchor_weight >= 0, f"training.anchor_weight={self.anchor_weight} must be >= 0")
        low, high = self.crop_scale
        _require(
            0 < low <= high <= 1,
            f"training.crop_scale={self.crop_scale} needs 0 < low <= high <= 1",
        )
        _require(self.precision in ("bf16", "fp32"), "training.precision must be 'bf16' or 'fp32'")
        _require(self.num_workers >= 0, "training.num_workers must be >= 0")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation batching and precision."""

    batch_size: int = 256
    num_workers: int = 4
    precision: str = "bf16"

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, f"evaluation.batch_size={self.batch_size} must be >= 1")
        _require(self.precision in ("bf16", "fp32"), "evaluation.precision must be 'bf16' or 'fp32'")
        _require(self.num_workers >= 0, "evaluation.num_workers must be >= 0")


@dataclass(frozen=True)
class FewShotConfig:
    """The few-shot draw: shots per class and the rule (the seeds are the protocol's, in
    protocols.SEEDS). ``draw``: ``coop`` (the CoOp lineage's images) or ``sorted``."""

    shots: int = 16
    draw: str = "coop"

    def __post_init__(self) -> None:
        _require(self.shots >= 1, f"few_shot.shots={self.shots} must be >= 1")
        _require(
            self.draw in FEW_SHOT_DRAWS,
            f"few_shot.draw={self.draw!r} must be one of {list(FEW_SHOT_DRAWS)}",
        )


@dataclass(frozen=True)
class DataSourceConfig:
    """Where raw benchmarks come from: 'download' (or the user's copies), or a generated 'miniature'."""

    kind: str = "download"
    download: bool = True  # False: only accept copies already under data_root
    tolerance: int = 0  # missing / corrupt files accepted (dropped, with a warning)
    check_decode: bool = True  # decode what a run reads: val/test at preparation, the drawn shots
    miniature: dict = field(default_factory=dict)  # write_miniature options for kind: miniature
    accept_checksum_mismatch: tuple[str, ...] = ()  # archive names used although their checksum differs

    def __post_init__(self) -> None:
        names = self.accept_checksum_mismatch
        names = (names,) if isinstance(names, str) else tuple(names)
        object.__setattr__(self, "accept_checksum_mismatch", names)
        _require(
            self.kind in ("download", "miniature"),
            "data_source.kind must be 'download' or 'miniature'",
        )
        _require(self.tolerance >= 0, "data_source.tolerance must be >= 0")
        _require(
            all(isinstance(n, str) and n and "/" not in n for n in self.accept_checksum_mismatch),
            "data_source.accept_checksum_mismatch must list archive file names (no folders), "
            f"got {list(self.accept_checksum_mismatch)}",
        )


def check_model_settings(clip: ClipConfig, perl: PerlConfig) -> None:
    """Check the PERL settings against the backbone's architecture, from its config alone (no weights).

    Raises:
        ValueError: an unknown model name, or a split layer outside 1..L-1 of a tower (the
            check PERL itself runs, here from the config before any weight is loaded).
    """
    import open_clip

    from perl_pipeline.models.loading import register_model_configs
    from perl_pipeline.models.perl import check_split_layer

    register_model_configs()
    config = open_clip.get_model_config(clip.model_name)
    if config is None:
        raise ValueError(
            f"clip.model_name={clip.model_name!r} is not an open_clip model config; "
            "e.g. 'ViT-B-16-quickgelu' (the paper's) or 'PERL-Toy-ViT' (the demo's)"
        )
    depths = {"image": config["vision_cfg"]["layers"], "text": config["text_cfg"]["layers"]}
    check_split_layer(
        perl.split_layer, depths, perl.modalities, name="perl.split_layer", where=f" of {clip.model_name}"
    )


@dataclass(frozen=True)
class ToyClipConfig:
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

    model_name: str = "PERL-Toy-ViT"
    init_seed: int = 0
    pairs: int = 100_000
    seed: int = 0
    held_out: tuple[str, ...] = ()
    templates: tuple[str, ...] = ("a photo of a {concept}.",)
    probe_images: int = 1000
    probe_template: str = "a photo of a {}."
    shifted: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from perl_pipeline.toy.world import CaptionStyle, Shift, split_concept

        object.__setattr__(self, "held_out", tuple(self.held_out))
        object.__setattr__(self, "templates", tuple(self.templates))
        for concept in self.held_out:
            split_concept(concept)
        CaptionStyle(self.templates)
        Shift(**self.shifted)
        _require(self.pairs >= 1, f"toy_clip.pairs={self.pairs} must be >= 1")
        _require(self.probe_images >= 1, f"toy_clip.probe_images={self.probe_images} must be >= 1")
        _require("{}" in self.probe_template, "toy_clip.probe_template needs a {} for the concept")


@dataclass(frozen=True)
class PretrainConfig:
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

    steps: int = 2500
    batch_size: int = 128
    lr: float = 3e-3
    warmup: int = 200
    weight_decay: float = 0.1
    seed: int = 0
    log_every: int = 50
    num_workers: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every"):
            value = getattr(self, name)
            _require(value >= 1, f"toy_clip_pretraining.{name}={value} must be >= 1")
        _require(self.lr > 0, f"toy_clip_pretraining.lr={self.lr} must be > 0")
        for name in ("warmup", "weight_decay", "num_workers"):
            value = getattr(self, name)
            _require(value >= 0, f"toy_clip_pretraining.{name}={value} must be >= 0")
