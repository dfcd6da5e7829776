"""Typed configuration: Pydantic models of conf/'s parameter sections (Kedro builds them for the nodes).

The bottom layer of the package: it imports nothing from ``perl_pipeline``. Every value is checked
before any model or data is loaded; a wrong one raises :class:`ConfigError` naming the key as the
user writes it (``training.batch_size=2.5: expected an integer >= 1``).
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

Modality = Literal["image", "text"]
MODALITIES: tuple[str, ...] = get_args(Modality)  # the towers PERL can refine
Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = get_args(Precision)  # auto: bf16 autocast on GPUs, fp32 on the CPU

ProjectorInit = Literal["default", "zero_out"]
PROJECTOR_INITS: tuple[str, ...] = get_args(ProjectorInit)  # as in perl_pipeline.models.projector
FewShotDraw = Literal["coop", "sorted"]
FEW_SHOT_DRAWS: tuple[str, ...] = get_args(FewShotDraw)  # as in perl_pipeline.benchmarks.few_shot


class ConfigError(ValueError):
    """A configuration value of the wrong type, out of range, unknown or missing."""


_WORDS = {bool: "true/false", int: "an integer", float: "a number", str: "a non-empty string"}
_WORDS |= {dict: "a mapping", list: "a list", tuple: "a list"}
_SIGNS = (("gt", ">"), ("ge", ">="), ("le", "<="))


def _bounds(metadata: Sequence[Any]) -> str:
    """``> 0 and <= 1`` from Field constraints (a ``Field()`` inside ``Annotated`` nests them)."""
    rules = [r for m in metadata for r in getattr(m, "metadata", [m])]
    return " and ".join(f"{sign} {getattr(r, a)}" for r in rules for a, sign in _SIGNS if hasattr(r, a))


def _describe(hint: Any, metadata: Sequence[Any] = ()) -> str:
    """What a type hint asks for, in the user's words (YAML)."""
    if get_origin(hint) is Annotated:
        hint, *more = get_args(hint)
        metadata = (*metadata, *more)
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        text = "one of " + ", ".join(repr(a) for a in args)
    elif origin in (Union, types.UnionType):
        text = " or ".join(_describe(a) for a in args if a is not type(None))
        text += " or null" if type(None) in args else ""
    elif origin is tuple and args[-1:] == (Ellipsis,):
        text = f"a list of {_plural(args[0])}"
    elif origin is tuple:
        text = f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    elif origin is dict:
        text = f"a mapping of names to {_plural(args[1])}"
    else:
        text = _WORDS.get(hint, getattr(hint, "__name__", str(hint)))
    bounds = _bounds(metadata)
    return f"{text} {bounds}" if bounds else text


def _plural(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "values among " + ", ".join(repr(a) for a in get_args(hint))
    return _describe(hint).removeprefix("an ").removeprefix("a ") + "s"


def _explain(
    error: ValidationError, fields: Mapping[str, FieldInfo], values: Mapping, where: str, name: Callable
) -> str:
    """The first problem of a failed validation, naming the key as the user writes it."""
    errors = error.errors()
    extra = ("extra_forbidden", "unexpected_keyword_argument")
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] in extra)
    if unknown:
        allowed = sorted(fields)
        close = [match for key in unknown for match in difflib.get_close_matches(key, allowed, n=1)]
        hint = f" -- did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        keys = ", ".join(repr(k) for k in unknown)
        return f"{where}: unknown key{'s' * (len(unknown) > 1)} {keys}{hint} (allowed: {', '.join(allowed)})"
    missing = [e["loc"][0] for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    if missing:
        return f"{where}: missing required key(s) {missing}"
    first = errors[0]
    if first["type"] == "value_error" or not first["loc"]:  # a validator's own message
        return str(first.get("ctx", {}).get("error", first["msg"]))
    key, *rest = first["loc"]
    field = fields[key]
    hint, metadata, value, label = field.annotation, field.metadata, values[key], name(key)
    if rest and isinstance(rest[0], int) and get_origin(hint) is tuple and first["type"] != "missing":
        args = get_args(hint)
        item = args[0] if args[-1] is Ellipsis else args[rest[0]]
        if get_origin(item) is Literal:
            unknown = [v for v in value if isinstance(v, bool) or v not in get_args(item)]
            return f"{label}={list(value)!r}: unknown {unknown}; choose from {list(get_args(item))}"
        hint, metadata, value, label = item, (), value[rest[0]], f"{label}[{rest[0]}]"
    if first["type"] == "finite_number":  # YAML's .inf / .nan: no setting of this project is infinite
        return f"{label}={value!r}: expected a finite number"
    if first["type"] in ("greater_than", "greater_than_equal", "less_than_equal"):
        # the bounds of the field, or of the Annotated hint or union member that failed
        members = [m for a in (hint, *get_args(hint)) if get_origin(a) is Annotated for m in get_args(a)[1:]]
        return f"{label}={value!r} must be {_bounds(metadata or members)}"
    return f"{label}={value!r}: expected {_describe(hint, metadata)}"


def _takes_tuple(hint: Any) -> bool:
    return get_origin(hint) is tuple or any(_takes_tuple(a) for a in get_args(hint))


# strict, frozen, no unknown keys: bool is not an int, an int is accepted for a float, strings are
# non-empty and numbers finite (the configuration sections and benchmarks.spec's dataclasses)
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, str_min_length=1)


def _construct(
    make: Callable, fields: Mapping[str, FieldInfo], values: Mapping, where: str, name: Callable
) -> Any:
    """`make(**values)` with YAML lists as tuples where a field takes one (strict Pydantic takes no
    list for a tuple); a failed validation raises a ConfigError naming the key as `name` does."""
    tuples = {n for n, f in fields.items() if _takes_tuple(f.annotation)}
    try:
        return make(**{k: tuple(v) if isinstance(v, list) and k in tuples else v for k, v in values.items()})
    except ValidationError as error:
        raise ConfigError(_explain(error, fields, values, where, name)) from None


class Section(BaseModel):
    """A :data:`STRICT`, frozen parameter section of conf/ (``SECTION``); a YAML list becomes a
    tuple, and building it raises :class:`ConfigError`."""

    model_config = ConfigDict(**STRICT, frozen=True)
    SECTION: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        section = self.SECTION
        _construct(super().__init__, type(self).model_fields, values, section, lambda key: f"{section}.{key}")

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        """Build from a mapping (as Kedro does for a node's typed parameter), or raise ConfigError."""
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping):
            raise ConfigError(f"{cls.SECTION}: must be a mapping of settings, got {obj!r}")
        return cls(**obj)


def build(cls: type, values: Any, where: str) -> Any:
    """`cls(**values)` for a :data:`STRICT` Pydantic dataclass (benchmarks.spec), YAML lists as
    tuples; a ConfigError names the key as ``<where>: key '<key>'``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: must be a mapping of settings, got {values!r}")
    return _construct(cls, cls.__pydantic_fields__, values, where, lambda key: f"{where}: key '{key}'")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_precision(precision: Any) -> None:
    """The one precision rule (TrainConfig, EvalConfig, autocast): one of :data:`PRECISIONS`."""
    if not (isinstance(precision, str) and precision in PRECISIONS):
        raise ConfigError(f"precision={precision!r}: expected {_describe(Precision)}")


def split_depths(split_layer: int | Sequence[int] | str) -> tuple[int, ...]:
    """The injection depths J_1 < ... < J_m of ``perl.split_layer``: an int, a list, or depths
    separated by spaces (``"7 9 11"``: ``kedro run --params`` splits its argument at every comma)."""
    if isinstance(split_layer, str):
        return tuple(int(j) if j.lstrip("-").isdigit() else j for j in split_layer.split())
    return tuple(split_layer) if isinstance(split_layer, (list, tuple)) else (split_layer,)


def check_perl_settings(
    split_layer: Any,
    steps: Any,
    rank: Any,
    modalities: Sequence[Any],
    depths: Mapping[str, int] | None = None,
    *,
    prefix: str = "perl.",
    where: str = "",
) -> None:
    """The one rule for PERL's J, K, r and towers (PerlConfig, PERL, the pre-run check): J or the
    strictly increasing J_1 < ... < J_m lie in 0..L-1 for every refined tower (``depths``: modality
    -> blocks L, when the backbone is known), else J >= 0. ``prefix`` / ``where`` go before the
    names / after the tower in the ConfigError's message (``perl.``, `` of ViT-B-16``)."""
    split = split_depths(split_layer)
    typed = isinstance(split_layer, str)  # kedro run --params: "7 9 11"
    if not all(_is_int(j) for j in split) or (typed and not split):
        hint = " (on the kedro command line, depths separated by spaces: 'perl.split_layer=7 9 11')"
        raise ConfigError(
            f"{prefix}split_layer={split_layer!r}: expected an integer or a list of integers"
            + (hint if typed else "")
        )
    for name, value in (("steps", steps), ("rank", rank)):
        if not _is_int(value):
            raise ConfigError(f"{prefix}{name}={value!r}: expected an integer")
    modalities = tuple(modalities)
    unknown = [m for m in modalities if isinstance(m, bool) or m not in MODALITIES]
    if unknown:
        raise ConfigError(f"unknown {prefix}modalities {unknown}; choose from {list(MODALITIES)}")
    if len(set(modalities)) != len(modalities):
        raise ConfigError(f"{prefix}modalities={list(modalities)}: repeated entry")
    shown = split[0] if _is_int(split_layer) else list(split)
    if not split or any(b <= a for a, b in zip(split, split[1:], strict=False)):
        raise ConfigError(
            f"{prefix}split_layer={shown}: expected one depth or a strictly increasing list of depths"
        )
    if depths is None and split[0] < 0:
        raise ConfigError(f"{prefix}split_layer={shown} must be >= 0")
    for modality in modalities if depths is not None else ():
        depth = depths[modality]
        if not (0 <= split[0] and split[-1] <= depth - 1):
            raise ConfigError(
                f"{prefix}split_layer={shown} is outside 0..{depth - 1} for the {modality} "
                f"tower{where} ({depth} blocks): every injection depth needs a block after it to refine"
            )
    if steps < 0:
        raise ConfigError(f"{prefix}steps={steps} must be >= 0 (0 is zero-shot CLIP)")
    if rank < 1:
        raise ConfigError(f"{prefix}rank={rank} must be >= 1")


class ClipConfig(Section):
    """The frozen backbone: an open_clip config name and where its weights come from."""

    SECTION: ClassVar[str] = "clip"

    model_name: str = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"  # a tag, a local file, or null for random weights
    cache_dir: str | None = "data/01_raw/clip"  # downloaded weights are kept (and looked for) here
    init_seed: int = 0  # only used with pretrained: null


class PerlConfig(Section):
    """The method's settings (docs/method.md §2 and the §7 ablations)."""

    SECTION: ClassVar[str] = "perl"

    split_layer: int | tuple[int, ...] = 7  # J, or depths J_1 < ... < J_m ("7 9 11"), docs/method.md §2.7
    steps: int = 4  # K: refinement steps
    rank: int = 1  # r: projector bottleneck
    modalities: tuple[Modality, ...] = MODALITIES  # towers that get a projector
    share_projector: bool = True  # false: one projector per step (untied ablation)
    share_layers: bool = True  # false: one projector per injection depth (multi-depth only)
    projector_init: ProjectorInit = "default"  # zero_out: output layer at zero, every thought starts equal

    @field_validator("split_layer", mode="before")
    @classmethod
    def _depths(cls, value: Any) -> Any:
        if isinstance(value, str):  # kedro run --params: "7 9 11"
            check_perl_settings(value, 0, 1, ())
            value = split_depths(value)
        return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value  # [J] is J

    @model_validator(mode="after")
    def _check(self) -> PerlConfig:
        if not self.modalities:  # PERL(modalities=()) is the model API's zero-shot CLIP, not a setting
            raise ConfigError(
                "perl.modalities=[]: PERL needs at least one tower to refine ([image], [text] or "
                "[image, text]); for zero-shot CLIP keep the towers and set perl.steps=0 (step 0 of "
                "every run is zero-shot CLIP too)"
            )
        check_perl_settings(self.split_layer, self.steps, self.rank, self.modalities)
        return self


Crop = Annotated[float, Field(gt=0, le=1)]


class TrainConfig(Section):
    """Optimisation (docs/method.md §3): AdamW 1e-4, batch 4, one epoch, λ = 1."""

    SECTION: ClassVar[str] = "training"

    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    epochs: int = Field(1, ge=1)
    anchor_weight: float = Field(1.0, ge=0)  # λ
    weight_decay: float = Field(0.01, ge=0)  # PyTorch's AdamW default
    crop_scale: tuple[Crop, Crop] = (0.08, 1.0)  # RandomResizedCrop
    precision: Precision = "auto"  # bf16 autocast on GPUs, fp32 on the CPU; bf16 / fp32 everywhere
    num_workers: int = Field(4, ge=0)
    log_every: int = Field(50, ge=1)
    seeds_together: bool = True  # every seed's step in one batch (exact up to rounding); false: in turn

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.crop_scale[0] > self.crop_scale[1]:
            raise ConfigError(f"training.crop_scale={list(self.crop_scale)} needs low <= high")
        return self


class EvalConfig(Section):
    """Evaluation batching, data-loader workers, precision, GPU JPEG decoding (CUDA only) and the
    test images per benchmark whose input-Jacobian norm is measured (docs/method.md §6.10; 0: off)."""

    SECTION: ClassVar[str] = "evaluation"

    batch_size: int = Field(256, ge=1)
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"  # auto: see resolved_workers
    precision: Precision = "auto"
    gpu_decode: bool = False
    jacobian_images: int = Field(0, ge=0)  # input-Jacobian subsample per benchmark; 0 = off

    def resolved_workers(self) -> int:
        """Data-loader worker processes: the number given, or for ``auto`` this process's cores."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, cores or 1)


class FewShotConfig(Section):
    """The few-shot draw: shots per class and the rule (``coop``: the CoOp lineage's images, or
    ``sorted``); the seeds are the protocol's, in protocols.SEEDS."""

    SECTION: ClassVar[str] = "few_shot"

    shots: int = Field(16, ge=1)
    draw: FewShotDraw = "coop"


class DataSourceConfig(Section):
    """Where raw benchmarks come from: 'download' (or the user's copies), or a generated 'miniature'."""

    SECTION: ClassVar[str] = "data_source"

    kind: Literal["download", "miniature"] = "download"
    download: bool = True  # False: only accept copies already under data_root
    tolerance: int = Field(0, ge=0)  # missing / corrupt files accepted (dropped, with a warning)
    check_decode: bool = True  # decode what a run reads: val/test at preparation, the drawn shots
    miniature: dict = {}  # write_miniature options for kind: miniature
    accept_checksum_mismatch: tuple[str, ...] | str = ()  # archives used although their checksum differs
    max_extracted_gb: float = Field(1000.0, gt=0)  # one archive extracting to more is refused
    max_compression_ratio: float = Field(100.0, ge=1)  # above 100 MiB: extracted / archive size

    @field_validator("accept_checksum_mismatch")
    @classmethod
    def _names(cls, value: tuple[str, ...] | str) -> tuple[str, ...]:
        value = (value,) if isinstance(value, str) else value  # --params gives one name as a string
        folders = [name for name in value if "/" in name]
        if folders:
            raise ConfigError(
                f"data_source.accept_checksum_mismatch={folders}: expected archive file names, not paths"
            )
        return value
