"""A trained PERL adapter as one self-describing file, and the classifier it loads into.

An adapter file is a safetensors file: the projector weights (a few KB) and, in its metadata header
(one sorted JSON object under ``perl_pipeline``, the project's convention), an ``adapter`` record.
`load_adapter` refuses, naming both, a backbone or weights file other than the one it was trained on.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from perl_pipeline.config import PerlConfig
from perl_pipeline.models.factory import image_size
from perl_pipeline.models.loading import PACKAGED_WEIGHTS, load_clip, weights_identity
from perl_pipeline.models.perl import PERL

ADAPTER_FORMAT = "perl-adapter/1"
METADATA_KEY = "perl_pipeline"  # the header key every safetensors artefact of the project uses
PERL_KEYS = tuple(PerlConfig.model_fields)  # J, K, r, modalities, sharing, projector_init: PERL's keywords
PERL_DEFAULTS = {"share_layers": True, "projector_init": "default"}  # adapters written before these keys


class AdapterFileError(ValueError):
    """A file that is missing, truncated, not safetensors, or not a PERL adapter."""

    def __init__(self, message: str, path: str | os.PathLike) -> None:
        super().__init__(message)
        self.path = Path(path)


class BackboneMismatchError(ValueError):
    """An adapter asked to run on another backbone or weights file than it was trained on."""


@dataclass(frozen=True)
class Adapter:
    """The contents of an adapter file.

    ``backbone`` is ``{"model_name", "weights", "pretrained"}``: the open_clip config, the weights'
    identity (``tag:``, ``sha256:`` or ``random:``) and the ``clip.pretrained`` value used; ``perl``
    holds `PERL_KEYS`; ``extra`` any other recorded value (benchmark, subset, seed, ...).
    """

    weights: dict[str, torch.Tensor]
    backbone: dict
    perl: dict
    template: str
    classnames: tuple[str, ...]
    recipe: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        """The JSON record stored in the file's header."""
        return {
            "format": ADAPTER_FORMAT,
            "backbone": dict(self.backbone),
            "perl": {**self.perl, "modalities": list(self.perl["modalities"])},
            "template": self.template,
            "classnames": list(self.classnames),
            "recipe": self.recipe,
            "metrics": self.metrics,
            **self.extra,
        }

    def to_dict(self) -> dict:
        """Tensors plus ``{"adapter": record}``, what the project's safetensors dataset stores."""
        return {**self.weights, "adapter": self.record()}


def make_adapter(
    projector: Mapping[str, Any],
    *,
    backbone: Mapping[str, Any],
    perl: Mapping[str, Any],
    template: str,
    classnames: Sequence[str],
    metrics: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Adapter:
    """An adapter from what training saves (the projector tensors plus their ``recipe``), the
    backbone's `models.backbone_identity` (optionally with its ``pretrained`` value) and the PERL
    settings (a `PerlConfig`'s fields)."""
    if "{}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{}}' for the class name")
    weights = {k: v for k, v in projector.items() if isinstance(v, torch.Tensor)}
    if not weights and int(perl.get("steps", 0)) > 0 and perl.get("modalities"):
        raise ValueError("the projector state dict holds no tensors")
    settings = {key: {**PERL_DEFAULTS, **perl}[key] for key in PERL_KEYS}
    settings["modalities"] = list(settings["modalities"])
    if not isinstance(settings["split_layer"], int):  # a list of depths, as JSON stores it
        settings["split_layer"] = list(settings["split_layer"])
    identity = {"model_name": backbone["model_name"], "weights": backbone["weights"]}
    record = {
        "format": ADAPTER_FORMAT,
        "backbone": identity | {"pretrained": backbone.get("pretrained")},
        "perl": settings,
        "template": template,
        "classnames": classnames,
        "recipe": projector.get("recipe"),
        "metrics": metrics,
    }
    return adapter_from_dict(weights | {"adapter": record | extra})


def save_adapter(adapter: Adapter, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `adapter` to `path` atomically (no half-written file); refuses an existing file
    unless `overwrite`."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in adapter.weights.items()}
    header = {METADATA_KEY: json.dumps({"adapter": adapter.record()}, sort_keys=True)}
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read_adapter(path: str | os.PathLike) -> Adapter:
    """Read an adapter file; AdapterFileError if it is missing, truncated, not safetensors, or
    without an adapter record (e.g. a bare projector or text features)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(f"adapter file {path} does not exist", path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            weights = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise AdapterFileError(
            f"{path} is not a readable adapter file ({type(error).__name__}: {error}): it is "
            f"truncated or not a safetensors file ({path.stat().st_size} bytes); copy it again, or "
            "point at a file written by training (data/06_models/<benchmark>/<subset>/"
            "seed_<s>.adapter.safetensors)",
            path,
        ) from error
    try:
        values = json.loads(header.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError as error:
        raise AdapterFileError(f"{path}: its metadata header is not valid JSON ({error})", path) from error
    return adapter_from_dict(weights | values, source=path)


def adapter_from_dict(data: Mapping[str, Any], source: str | os.PathLike = "<adapter>") -> Adapter:
    """An adapter from `Adapter.to_dict()`'s form, as the project's safetensors dataset loads it;
    AdapterFileError without an adapter record of this format or with one lacking a required key."""
    record = data.get("adapter")
    if not isinstance(record, dict) or record.get("format") != ADAPTER_FORMAT:
        found = "no adapter record" if not isinstance(record, dict) else f"format {record.get('format')!r}"
        raise AdapterFileError(
            f"{source} is a safetensors file but not a PERL adapter ({found}; expected format "
            f"{ADAPTER_FORMAT!r}); adapters are written by training as "
            "data/06_models/<benchmark>/<subset>/seed_<s>.adapter.safetensors",
            source,
        )
    missing = [k for k in ("backbone", "perl", "template", "classnames") if k not in record]
    if missing:
        raise AdapterFileError(f"{source}: the adapter record lacks {missing}", source)
    known = {"format", "backbone", "perl", "template", "classnames", "recipe", "metrics"}
    return Adapter(
        weights={k: v for k, v in data.items() if isinstance(v, torch.Tensor)},
        backbone=dict(record["backbone"]),
        perl=dict(record["perl"]),
        template=record["template"],
        classnames=tuple(record["classnames"]),
        recipe=dict(record.get("recipe") or {}),
        metrics=dict(record.get("metrics") or {}),
        extra={k: v for k, v in record.items() if k not in known},
    )


def class_prompts(template: str, classnames: Sequence[str]) -> list[str]:
    """The prompts of a class set, as the text features stage writes them (``_`` read as a space)."""
    return [template.format(name.replace("_", " ")) for name in classnames]


class AdapterClassifier(nn.Module):
    """PERL on its frozen CLIP as a classifier over a class set (the adapter's, or any other).

    The class prompts are refined once per class set (`set_classes`); `forward` returns class
    probabilities at a refinement step (K by default; 0 is zero-shot CLIP).
    """

    def __init__(self, model: PERL, adapter: Adapter, tokenizer) -> None:
        super().__init__()
        self.model = model
        self.adapter = adapter
        self.tokenizer = tokenizer
        self.steps = model.steps  # K, the adapter's number of refinement steps
        self.image_size = image_size(model.clip)  # the backbone's input resolution (the test crop)
        self.classnames: tuple[str, ...] = ()
        self.register_buffer("_text", torch.empty(0), persistent=False)
        self.set_classes(adapter.classnames)

    @torch.no_grad()
    def set_classes(self, classnames: Sequence[str], batch_size: int = 256) -> None:
        """Refine the prompts of `classnames` (adapter's template) at every step, once."""
        classnames = tuple(classnames)
        if len(classnames) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {list(classnames)}")
        tokens = self.tokenizer(class_prompts(self.adapter.template, classnames))
        device = next(self.model.parameters()).device
        rows = [self.model.encode_text(chunk.to(device)) for chunk in tokens.split(batch_size)]
        self._text = F.normalize(torch.cat(rows, dim=1).float(), dim=-1)  # [K + 1, C, D]
        self.classnames = classnames

    @torch.no_grad()
    def forward(self, images: torch.Tensor, step: int | None = None) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C] class probabilities at `step` (default K)."""
        step = self.steps if step is None else int(step)
        if not 0 <= step <= self.steps:
            raise ValueError(f"step {step} is outside 0..{self.steps} (the adapter's K)")
        # step 0 is zero-shot CLIP: no refinement to run (e(0) is open_clip's encode_image)
        image = self.model.clip.encode_image(images) if step == 0 else self.model.encode_image(images)[step]
        image = F.normalize(image.float(), dim=-1)
        logits = self.model.logit_scale * image @ self._text[step].T
        return logits.softmax(dim=-1)


def load_adapter(
    adapter: Adapter | str | os.PathLike,
    *,
    pretrained: str | os.PathLike | None = None,
    model_name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> AdapterClassifier:
    """A ready classifier from an adapter (or its file), on the frozen CLIP it was trained on.

    `pretrained` gives the backbone weights (a tag or file) when the recorded ones cannot be found
    here; their identity must be the recorded one, and `model_name`, if given, the recorded config:
    otherwise BackboneMismatchError, naming both.
    """
    import open_clip

    path = "<adapter>" if isinstance(adapter, Adapter) else adapter
    if not isinstance(adapter, Adapter):
        adapter = read_adapter(path)
    stored = adapter.backbone
    name = stored["model_name"]
    if model_name is not None and model_name != name:
        raise BackboneMismatchError(
            f"{path} was trained on backbone {name!r} ({stored['weights']}), not {model_name!r}"
        )
    weights, init_seed = _weights_to_load(adapter, pretrained, path)
    found = weights_identity(name, weights, init_seed=init_seed)
    if found != stored["weights"]:
        raise BackboneMismatchError(
            f"{path} was trained on {name} with weights {stored['weights']} (clip.pretrained="
            f"{stored.get('pretrained')!r}), but {weights!r} is {found}; pass the weights it was "
            "trained with (load_adapter(..., pretrained=FILE) or --pretrained FILE)"
        )
    clip = load_clip(name, weights, cache_dir=cache_dir, init_seed=init_seed)
    settings = {**PERL_DEFAULTS, **adapter.perl}
    model = PERL(clip, **{key: settings[key] for key in PERL_KEYS})
    try:
        model.load_projector_state_dict(adapter.weights)
    except (KeyError, RuntimeError) as error:
        raise AdapterFileError(f"{path}: its weights do not fit its own settings: {error}", path) from error
    classifier = AdapterClassifier(model.to(device), adapter, open_clip.get_tokenizer(name))
    return classifier.eval()


def _weights_to_load(
    adapter: Adapter, pretrained: str | os.PathLike | None, path: str | os.PathLike
) -> tuple[str | os.PathLike | None, int]:
    """(the pretrained value to load, init_seed) for an adapter and an optional override."""
    identity, name = adapter.backbone["weights"], adapter.backbone["model_name"]
    kind, _, value = identity.partition(":")  # random:<seed>, tag:<tag> or sha256:<hex>
    if kind == "random":
        return pretrained, int(value)
    if pretrained is not None:
        return pretrained, 0
    if kind == "tag":
        return value, 0
    recorded = adapter.backbone.get("pretrained")
    here = recorded is not None and Path(recorded).expanduser().is_file()
    if here or (name, recorded) in PACKAGED_WEIGHTS:
        return recorded, 0
    raise BackboneMismatchError(
        f"{path} was trained on {name} with the weights file "
        f"{recorded!r} ({identity}), which is not here; pass that file: "
        "load_adapter(..., pretrained=FILE) or --pretrained FILE"
    )
