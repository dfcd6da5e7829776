"""The experiment grid of the protocol (docs/method.md §6): each protocol's benchmarks and seeds.

The one home of the grid (DVC's ``params.yaml`` repeats it in its foreach lists; a test keeps them
equal); what a benchmark is, is its block in ``conf/base/parameters_benchmarks.yml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BASE_TO_NOVEL = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
)
SOURCE = "imagenet"  # the all-class model of cross-dataset transfer and domain generalisation
CROSS_DATASET_TARGETS = tuple(name for name in BASE_TO_NOVEL if name != SOURCE)
DOMAIN_GENERALIZATION_TARGETS = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
ALL_BENCHMARKS = BASE_TO_NOVEL + DOMAIN_GENERALIZATION_TARGETS
SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Protocol:
    """One protocol: the benchmarks it scores (paper order, a transfer's source first), those whose
    projectors it trains (one per seed) and the classes it trains on ("base" or "all")."""

    name: str
    title: str
    benchmarks: tuple[str, ...]
    trained: tuple[str, ...]
    subset: str

    @property
    def subsets(self) -> tuple[str, ...]:
        """The class subsets it scores: base and novel after training on base, else all."""
        return ("base", "novel") if self.subset == "base" else ("all",)

    @property
    def targets(self) -> tuple[str, ...]:
        """The benchmarks its averages run over: all of them, or a transfer's targets (not its source)."""
        return tuple(b for b in self.benchmarks if self.subset == "base" or b not in self.trained)


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol("base_to_novel", "Base-to-novel generalisation", BASE_TO_NOVEL, BASE_TO_NOVEL, "base"),
        Protocol(
            "cross_dataset",
            "Cross-dataset transfer (ImageNet → 10 datasets)",
            (SOURCE, *CROSS_DATASET_TARGETS),
            (SOURCE,),
            "all",
        ),
        Protocol(
            "domain_generalization",
            "Domain generalisation (ImageNet → 4 ImageNet variants)",
            (SOURCE, *DOMAIN_GENERALIZATION_TARGETS),
            (SOURCE,),
            "all",
        ),
    )
}
"""The paper's three protocols by name (pipeline_registry composes one pipeline each)."""


def project_root() -> Path:
    """The Kedro project this package belongs to (the repository of an editable install)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() and (here / "conf").is_dir() else Path.cwd()
