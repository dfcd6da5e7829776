"""Class text features: one benchmark's class prompts encoded once, with what they were made from.

The frozen text prefix S_t = blocks[0:J_1](prompts) does not depend on the projectors, so it is
computed once per class set and reused by every training step and every seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from perl_pipeline.config import split_depths
from perl_pipeline.models.perl import PERL, TextPrefix
from perl_pipeline.provenance import fingerprint

TENSORS = ("tokens", "eos_index", "prefix", "zero_shot")


def text_features_recipe(
    model_name: str,
    weights: str,
    split_layer: int | Sequence[int],
    template: str,
    classnames: Sequence[str],
) -> dict:
    """Everything that determines a benchmark's text features (see `models.loading.weights_identity`);
    the split layer recorded is the prefix depth J_1."""
    return {
        "model_name": model_name,
        "weights": weights,
        "split_layer": int(split_depths(split_layer)[0]),
        "template": template,
        "classes": len(classnames),
        "classnames": fingerprint(list(classnames)),
    }


@dataclass(frozen=True)
class TextFeatures:
    """A class set's prompts through the frozen text tower; `recipe`: :func:`text_features_recipe`."""

    tokens: torch.Tensor  # [C, n] token ids, cut to max(EOS) + 1
    eos_index: torch.Tensor  # [C] position of each prompt's EOS token
    prefix: torch.Tensor  # [C, n, d_t] the frozen states after blocks[0:J]
    zero_shot: torch.Tensor  # [C, D] open_clip's own encode_text (zero-shot CLIP's classifier)
    classnames: tuple[str, ...]
    recipe: dict

    @property
    def split_layer(self) -> int:
        """J, the number of frozen blocks the prefix went through."""
        return int(self.recipe["split_layer"])

    @property
    def fingerprint(self) -> str:
        """The features' identity: the fingerprint of their recipe."""
        return fingerprint(self.recipe)

    def text_prefix(self, rows: Sequence[int] | None = None) -> TextPrefix:
        """The cached prefix of all classes, or of `rows` (labels, in order) alone."""
        prefix = TextPrefix(self.prefix, self.eos_index)
        return prefix if rows is None else prefix.select(rows)

    def to_dict(self) -> dict:
        """Tensors plus the class names and recipe (what the safetensors catalog dataset stores)."""
        return vars(self) | {"classnames": list(self.classnames)}

    @classmethod
    def from_dict(cls, data: dict) -> TextFeatures:
        """Rebuild from `to_dict`'s output; features saved without a recipe are refused."""
        missing = [key for key in (*TENSORS, "classnames", "recipe") if key not in data]
        if missing:
            raise ValueError(
                f"text features lack {missing}: they were written by an older version of the "
                "pipeline; rebuild them: kedro run --pipelines text_features"
            )
        return cls(
            **{key: data[key] for key in TENSORS},
            classnames=tuple(data["classnames"]),
            recipe=dict(data["recipe"]),
        )


@torch.no_grad()
def class_text_features(
    clip: nn.Module,
    tokens: torch.Tensor,
    split_layer: int | Sequence[int],
    device: torch.device,
    batch_size: int = 256,
    *,
    classnames: Sequence[str] = (),
    recipe: dict | None = None,
) -> TextFeatures:
    """Encode a class set's prompts ([C, context] token ids, in label order) once, `batch_size`
    prompts at a time (bounded peak memory); the recipe defaults to the split layer alone."""
    model = PERL(clip, split_layer=split_layer, steps=0, modalities=()).to(device)
    n = int(model.eos_index(tokens).max()) + 1  # one cut for the whole class set
    tokens = tokens[:, :n]
    prefixes, zero_shot = [], []
    for chunk in tokens.to(device).split(batch_size):
        prefix = model.text_prefix(chunk, cut=False)  # [c, n, d_t]
        prefixes.append(prefix)
        zero_shot.append(model.refine_text(prefix)[0])  # [c, D]
    return TextFeatures(
        tokens=tokens.cpu(),
        eos_index=torch.cat([p.eos_index for p in prefixes]).cpu(),
        prefix=torch.cat([p.states for p in prefixes]).float().cpu(),
        zero_shot=torch.cat(zero_shot).float().cpu(),
        classnames=tuple(classnames),
        recipe=recipe if recipe is not None else {"split_layer": model.depths[0]},
    )
