"""The thought projector φ_m of PERL (docs/method.md §2.2).

φ(h) = W2 · GELU(W1 · LayerNorm(h) + b1) + b2, with W1 ∈ R^{r×d}, W2 ∈ R^{d×r}: with r = 1, 5d + 1
parameters (3,841 for ViT-B/16's image tower, d = 768; 2,561 for its text tower, d = 512).
Initialisation (:data:`INITS`): ``default`` is PyTorch's, drawn from the seeded generator; ``zero_out``
then zeroes the output layer (W2, b2): every thought starts as the same zero token, W2 and b2 move first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from perl_pipeline.config import PROJECTOR_INITS, split_depths

INITS = PROJECTOR_INITS  # one home: the configuration


class ThoughtProjector(nn.Module):
    """Maps a pooled hidden state h (CLS or EOS) to one thought token z of the same width."""

    def __init__(
        self, width: int, rank: int = 1, generator: torch.Generator | None = None, init: str = "default"
    ):
        super().__init__()
        check_init(init)
        self.norm = nn.LayerNorm(width)
        # skip_init, then PyTorch's default Linear initialisation drawn from `generator`: the only
        # random draws are these seeded ones, never the global RNG
        self.down = nn.utils.skip_init(nn.Linear, width, rank)  # W1, b1
        self.up = nn.utils.skip_init(nn.Linear, rank, width)  # W2, b2
        for linear in (self.down, self.up):
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(linear.in_features)
            nn.init.uniform_(linear.bias, -bound, bound, generator=generator)
        if init == "zero_out":  # after the same draws: the same generator state as ``default``
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h: [B, d] -> z: [B, d]
        return self.up(F.gelu(self.down(self.norm(h))))


def check_init(init: str) -> None:
    """Raise ValueError unless `init` is one of :data:`INITS`."""
    if init not in INITS:
        raise ValueError(
            f"projector init {init!r} is not one of {list(INITS)}; set perl.projector_init, e.g. "
            'kedro run --params "perl.projector_init=zero_out"'
        )


def build_projector(
    width: int,
    rank: int,
    steps: int,
    shared: bool,
    generator: torch.Generator,
    init: str = "default",
    depths: Sequence[int] = (),
) -> nn.Module:
    """One φ shared by all steps, or (untied ablation) one φ per step in an `nn.ModuleList`;
    with `depths` (share_layers: false, docs/method.md §2.7) one of those per injection depth J,
    in an `nn.ModuleDict` keyed ``J<depth>``."""
    if depths:
        return nn.ModuleDict(
            {f"J{j}": build_projector(width, rank, steps, shared, generator, init) for j in depths}
        )
    if shared:
        return ThoughtProjector(width, rank, generator, init)
    return nn.ModuleList(ThoughtProjector(width, rank, generator, init) for _ in range(steps))


def think(projector: nn.Module, h: torch.Tensor, step: int, depth: int = 0) -> torch.Tensor:
    """z(step) = φ(h(step - 1)), picking the depth's own φ when depths are untied and the step's
    own φ when steps are untied."""
    if isinstance(projector, nn.ModuleDict):
        projector = projector[f"J{depth}"]
    if isinstance(projector, nn.ModuleList):
        return projector[step - 1](h)
    return projector(h)


def count_projector_parameters(
    widths: Mapping[str, int],
    split_layer: int | Sequence[int],
    steps: int,
    rank: int = 1,
    modalities: Sequence[str] = ("image", "text"),
    share_projector: bool = True,
    share_layers: bool = True,
) -> int:
    """PERL's trainable parameters without building a model (docs/method.md §2.6, §2.7):
    (3d + 2dr + r) per φ, times K untied steps, times m untied depths."""
    if steps == 0:
        return 0
    depths = 1 if share_layers else len(split_depths(split_layer))
    copies = depths * (1 if share_projector else steps)
    return sum(copies * (3 * widths[m] + 2 * widths[m] * rank + rank) for m in modalities)
