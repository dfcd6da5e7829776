"""training: one node per (benchmark, class subset) that trains every seed (together, by default),
with one projector and one training record per seed, so evaluation reads each seed's own files."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines._binding import bind
from perl_pipeline.pipelines.training.nodes import train_seeds
from perl_pipeline.protocols import SEEDS

PARAMS = {name: f"params:{name}" for name in ("data_root", "clip", "perl", "training", "device")}


def projector(subset: str, seed: int) -> str:
    """Dataset name of one seed's projectors inside a benchmark namespace."""
    return f"projector_{subset}_seed_{seed}"


def training_record(subset: str, seed: int) -> str:
    """Dataset name of one seed's training record (JSON) inside a benchmark namespace."""
    return f"training_record_{subset}_seed_{seed}"


def create_pipeline(benchmark: str, subset: str, seeds=SEEDS, **kwargs) -> Pipeline:
    """Train on `subset` ("base" for base-to-novel, "all" for the transfer protocols)."""
    node = Node(
        bind(train_seeds, benchmark=benchmark, subset=subset, seeds=tuple(seeds)),
        {"few_shot": "few_shot", "text_features": "text_features"} | PARAMS,
        [name for seed in seeds for name in (projector(subset, seed), training_record(subset, seed))],
        name=f"train_{subset}",
        tags=["training"],
    )
    return Pipeline([node], namespace=benchmark, parameters=set(PARAMS.values()))
