"""Typed configuration, built from conf/ at the boundary (Kedro instantiates these for the nodes).

The bottom layer of the package: it imports nothing from ``perl_pipeline``. One generic checker,
driven by the dataclasses' type hints and per-field ranges, checks every value before any model
or data is loaded: a wrong one raises :class:`ConfigError` naming the key as the user writes it
(``training.batch_size=2.5: expected an integer >= 1``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

Modality = Literal["image", "text"]
MODALITIES: tuple[str, ...] = get_args(Modality)  # the towers PERL can refine
Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = get_args(Precision)  # auto: bf16 autocast on GPUs, fp32 on the CPU

ProjectorInit = Literal["default", "zero_out"]
PROJECTOR_INITS: tuple[str, ...] = get_args(ProjectorInit)  # as in perl_pipeline.models.projector
FewShotDraw = Literal["coop", "sorted"]
FEW_SHOT_DRAWS: tuple[str, ...] = get_args(FewShotDraw)  # as in perl_pipeline.benchmarks.few_shot

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value of the wrong type, out of range, unknown or missing."""


# --------------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------------


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    low: float | None = None,
    above: float | None = None,
    high: float | None = None,
) -> Any:
    """A dataclass field with a range: ``low <= value``, ``above < value``, ``value <= high``."""
    rule = {k: v for k, v in (("low", low), ("above", above), ("high", high)) if v is not None}
    return field(default=default, default_factory=default_factory, metadata={"range": rule})


def _range_text(rule: Mapping[str, float]) -> str:
    parts = []
    if "low" in rule:
        parts.append(f">= {rule['low']}")
    if "above" in rule:
        parts.append(f"> {rule['above']}")
    if "high" in rule:
        parts.append(f"<= {rule['high']}")
    return " and ".join(parts)


def _in_range(value: float, rule: Mapping[str, float]) -> bool:
    return (
        ("low" not in rule or value >= rule["low"])
        and ("above" not in rule or value > rule["above"])
        and ("high" not in rule or value <= rule["high"])
    )


def _describe(hint: Any) -> str:
    """What a type hint asks for, in the user's words (YAML)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is bool:
        return "true/false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a non-empty string"
    if hint in (list, tuple) or origin is list:
        return "a list"
    if hint is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        text = " or ".join(_describe(a) for a in options)
        return f"{text} or null" if type(None) in args else text
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return f"a mapping of names to {_plural(args[1])}"
    if dataclasses.is_dataclass(hint):
        return f"a mapping of {hint.__name__} settings"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    text = _describe(hint)
    if get_origin(hint) is Literal:
        return "values among " + text.removeprefix("one of ")
    return text.removeprefix("an ").removeprefix("a ") + "s"


def check_value(value: Any, hint: Any, label: str, rule: Mapping[str, float] | None = None) -> Any:
    """Check one value against a type hint (and a range); return it normalised.

    bool is not an int; an int is accepted for a float (and becomes one); a list becomes a
    tuple where a tuple is expected; ``None`` only passes an optional hint.

    Raises:
        ConfigError: ``<label>=<value>: expected <what the hint asks for>``.
    """
    rule = rule or {}

    def wrong() -> ConfigError:
        expected = _describe(hint) + (f" {_range_text(rule)}" if rule else "")
        return ConfigError(f"{label}={value!r}: expected {expected}")

    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise wrong()
        for option in (a for a in args if a is not type(None)):
            try:
                return check_value(value, option, label, rule)
            except ConfigError:
                continue
        raise wrong()
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float) if hint is float else int):
            raise wrong()
        if not math.isfinite(value):  # YAML's .inf / .nan: no setting of this project is infinite
            raise ConfigError(f"{label}={value!r}: expected a finite number")
        if not _in_range(value, rule):  # the value as the user gave it: training.lr=0, not 0.0
            raise ConfigError(f"{label}={value!r} must be {_range_text(rule)}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise wrong()
        return value
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise wrong()
        return value
    if hint in (list, tuple) or origin is list:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise wrong()
        return list(value)
    if origin is tuple:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise wrong()
        if len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
            if get_origin(item) is Literal:
                unknown = [v for v in value if isinstance(v, bool) or v not in get_args(item)]
                if unknown:
                    raise ConfigError(
                        f"{label}={list(value)!r}: unknown {unknown}; choose from {list(get_args(item))}"
                    )
            return tuple(check_value(v, item, f"{label}[{i}]", rule) for i, v in enumerate(value))
        if len(value) != len(args):
            raise wrong()
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(check_value(v, a, f"{label}[{i}]", rule) for i, (v, a) in pairs)
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise wrong()
        if hint is dict:
            return dict(value)
        key_hint, value_hint = args
        out = {}
        for k, v in value.items():
            try:
                out[check_value(k, key_hint, label)] = check_value(v, value_hint, f"{label}.{k}", rule)
            except ConfigError:
                raise wrong() from None
        return out
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return hint(**check_fields(hint, value, label))
    raise TypeError(f"{label}: no check for the type hint {hint!r}")  # a programming error


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def check_fields(
    cls: type,
    values: Any,
    section: str,
    *,
    label: Callable[[str], str] | None = None,
    skip: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """Check a mapping against a dataclass's fields: unknown keys, missing keys, types, ranges.

    Args:
        cls: the dataclass; its type hints give the types, ``setting(...)`` metadata the ranges.
        values: the mapping as read from the configuration.
        section: where the mapping lives, as the user writes it (``training``).
        label: names one key in messages (default ``<section>.<key>``).
        skip: keys allowed but left unchecked (the caller checks them).

    Returns:
        The values, normalised (lists become tuples, ints become floats where floats are due).

    Raises:
        ConfigError: naming the key, what was expected and the value given.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}: must be a mapping of settings, got {values!r}")
    name = label or (lambda key: f"{section}.{key}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown} (allowed: {sorted(fields)})")
    missing = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in values
    ]
    if missing:
        raise ConfigError(f"{section}: missing required key(s) {missing}")
    hints = _hints(cls)
    return {
        key: value
        if key in skip
        else check_value(value, hints[key], name(key), fields[key].metadata.get("range"))
        for key, value in values.items()
    }


def typed_config(section: str) -> Callable[[type[T]], type[T]]:
    """Make a frozen dataclass whose constructor checks every keyword with :func:`check_fields`.

    Kedro builds typed node parameters as ``cls(**raw)``: the check runs there, before any node.
    Cross-field rules stay in the class's ``__post_init__``.
    """

    def wrap(cls: type[T]) -> type[T]:
        cls = dataclass(frozen=True)(cls)
        generated = cls.__init__

        def __init__(self, **values: Any) -> None:
            generated(self, **check_fields(cls, values, section))

        __init__.__signature__ = inspect.signature(generated)  # type: ignore[attr-defined]
        __init__.__doc__ = f"Build and check the ``{section}`` parameters."
        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.SECTION = section  # type: ignore[attr-defined]
        return cls

    return wrap


def check_precision(precision: Any, label: str = "precision") -> str:
    """The one precision rule (TrainConfig, EvalConfig, autocast): one of :data:`PRECISIONS`."""
    return check_value(precision, Precision, label)


def split_depths(split_layer: int | Sequence[int] | str) -> tuple[int, ...]:
    """The injection depths J_1 < ... < J_m of ``perl.split_layer``: an int is one depth, and a
    string of depths separated by spaces (``"7 9 11"``) is a list, the form ``kedro run --params``
    can carry (it splits its argument at every comma)."""
    if isinstance(split_layer, str):
        return tuple(int(j) if j.lstrip("-").isdigit() else j for j in split_layer.split())
    return (split_layer,) if isinstance(split_layer, int) else tuple(split_layer)


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
    """The one rule for PERL's J, K, r and towers (PerlConfig, PERL, the pre-run check).

    Args:
        split_layer: J, or the strictly increasing injection depths J_1 < ... < J_m.
        depths: modality -> blocks L of that tower, when the backbone is known; then every J must
            lie in 0..L-1 for every refined tower, otherwise J >= 0.
        prefix: prepended to the names in messages (``perl.`` for the configuration).
        where: appended to the tower in messages (`` of ViT-B-16``).

    Raises:
        ConfigError: a wrong type, an unknown or repeated modality, or a value out of range.
    """
    if isinstance(split_layer, str):
        if not split_depths(split_layer) or not all(isinstance(j, int) for j in split_depths(split_layer)):
            raise ConfigError(
                f"{prefix}split_layer={split_layer!r}: expected an integer or a list of integers "
                "(on the kedro command line, depths separated by spaces: 'perl.split_layer=7 9 11')"
            )
        split_layer = split_depths(split_layer)
    check_value(split_layer, int | tuple[int, ...], f"{prefix}split_layer")
    for name, value in (("steps", steps), ("rank", rank)):
        check_value(value, int, f"{prefix}{name}")
    modalities = tuple(modalities)
    unknown = [m for m in modalities if isinstance(m, bool) or m not in MODALITIES]
    if unknown:
        raise ConfigError(f"unknown {prefix}modalities {unknown}; choose from {list(MODALITIES)}")
    if len(set(modalities)) != len(modalities):
        raise ConfigError(f"{prefix}modalities={list(modalities)}: repeated entry")
    split = split_depths(split_layer)
    shown = split[0] if isinstance(split_layer, int) else list(split)
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


# --------------------------------------------------------------------------------------------
# The sections of conf/base/parameters.yml
# --------------------------------------------------------------------------------------------


@typed_config("clip")
class ClipConfig:
    """The frozen backbone: an open_clip config name and where its weights come from."""

    model_name: str = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"  # a tag, a local file, or null for random weights
    cache_dir: str | None = "data/01_raw/clip"  # downloaded weights are kept (and looked for) here
    init_seed: int = 0  # only used with pretrained: null


@typed_config("perl")
class PerlConfig:
    """The method's settings (docs/method.md §2 and the §7 ablations)."""

    split_layer: int | tuple[int, ...] | str = (
        7  # J, or depths J_1 < ... < J_m ("7 9 11"), docs/method.md §2.7
    )
    steps: int = 4  # K: refinement steps
    rank: int = 1  # r: projector bottleneck
    modalities: tuple[Modality, ...] = MODALITIES  # towers that get a projector
    share_projector: bool = True  # false: one projector per step (untied ablation)
    share_layers: bool = True  # false: one projector per injection depth (multi-depth only)
    projector_init: ProjectorInit = "default"  # zero_out: output layer at zero, every thought starts equal

    def __post_init__(self) -> None:
        if not self.modalities:  # PERL(modalities=()) is the model API's zero-shot CLIP, not a setting
            raise ConfigError(
                "perl.modalities=[]: PERL needs at least one tower to refine ([image], [text] or "
                "[image, text]); for zero-shot CLIP keep the towers and set perl.steps=0 (step 0 of "
                "every run is zero-shot CLIP too)"
            )
        check_perl_settings(self.split_layer, self.steps, self.rank, self.modalities)
        depths = split_depths(self.split_layer)  # [J] is J; "7 9 11" is (7, 9, 11)
        object.__setattr__(self, "split_layer", depths[0] if len(depths) == 1 else depths)


@typed_config("training")
class TrainConfig:
    """Optimisation (docs/method.md §3): AdamW 1e-4, batch 4, one epoch, λ = 1."""

    lr: float = setting(1e-4, above=0)
    batch_size: int = setting(4, low=1)
    epochs: int = setting(1, low=1)
    anchor_weight: float = setting(1.0, low=0)  # λ
    weight_decay: float = setting(0.01, low=0)  # PyTorch's AdamW default
    crop_scale: tuple[float, float] = setting((0.08, 1.0), above=0, high=1)  # RandomResizedCrop
    precision: Precision = "auto"  # bf16 autocast on GPUs, fp32 on the CPU; bf16 / fp32 everywhere
    num_workers: int = setting(4, low=0)
    log_every: int = setting(50, low=1)
    seeds_together: bool = True  # every seed's step in one batch (exact up to rounding); false: in turn

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if low > high:
            raise ConfigError(f"training.crop_scale={list(self.crop_scale)} needs low <= high")


@typed_config("evaluation")
class EvalConfig:
    """Evaluation batching, data-loader workers, precision, where JPEGs are decoded, and how
    many test images per benchmark get the input-Jacobian norm.

    ``num_workers: auto`` uses the machine's cores (see `resolved_workers`); ``gpu_decode``
    decodes JPEGs on the GPU (CUDA only; elsewhere the CPU path runs). ``jacobian_images``: the
    size of the seeded subsample (docs/method.md §6.10); 0 (the library default) turns it off.
    """

    batch_size: int = setting(256, low=1)
    num_workers: int | Literal["auto"] = setting("auto", low=0)
    precision: Precision = "auto"
    gpu_decode: bool = False
    jacobian_images: int = setting(0, low=0)  # input-Jacobian subsample per benchmark; 0 = off

    def resolved_workers(self) -> int:
        """Data-loader worker processes: the number given, or for ``auto`` this process's usable
        cores (at least one worker)."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, cores or 1)


@typed_config("few_shot")
class FewShotConfig:
    """The few-shot draw: shots per class and the rule (the seeds are the protocol's, in
    protocols.SEEDS). ``draw``: ``coop`` (the CoOp lineage's images) or ``sorted``."""

    shots: int = setting(16, low=1)
    draw: FewShotDraw = "coop"


@typed_config("data_source")
class DataSourceConfig:
    """Where raw benchmarks come from: 'download' (or the user's copies), or a generated 'miniature'."""

    kind: Literal["download", "miniature"] = "download"
    download: bool = True  # False: only accept copies already under data_root
    tolerance: int = setting(0, low=0)  # missing / corrupt files accepted (dropped, with a warning)
    check_decode: bool = True  # decode what a run reads: val/test at preparation, the drawn shots
    miniature: dict = field(default_factory=dict)  # write_miniature options for kind: miniature
    accept_checksum_mismatch: tuple[str, ...] | str = ()  # archives used although their checksum differs
    max_extracted_gb: float = setting(1000.0, above=0)  # one archive extracting to more is refused
    max_compression_ratio: float = setting(100.0, low=1)  # above 100 MiB: extracted / archive size

    def __post_init__(self) -> None:
        if isinstance(self.accept_checksum_mismatch, str):  # --params gives one name as a string
            object.__setattr__(self, "accept_checksum_mismatch", (self.accept_checksum_mismatch,))
        folders = [name for name in self.accept_checksum_mismatch if "/" in name]
        if folders:
            raise ConfigError(
                f"data_source.accept_checksum_mismatch={folders}: expected archive file names, not paths"
            )
