"""evaluation: one node per (benchmark, protocol) that scores every seed in one pass."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines._binding import bind
from perl_pipeline.pipelines.evaluation.nodes import evaluate_benchmark
from perl_pipeline.pipelines.training.pipeline import projector
from perl_pipeline.protocols import SEEDS, SOURCE

SHARED_PARAMS = {
    "params:data_root",
    "params:clip",
    "params:perl",
    "params:training",
    "params:evaluation",
    "params:device",
}
INPUTS = [
    "index",
    "text_features",
    "few_shot",
    "params:data_root",
    "params:clip",
    "params:perl",
    "params:training",
    "params:evaluation",
    "params:device",
]


def runs(benchmark: str, protocol: str) -> str:
    """Dataset name of a benchmark's per-run results under a protocol."""
    return f"{benchmark}.runs_{protocol}"


def create_pipeline(benchmark: str, protocol: str, seeds=SEEDS, **kwargs) -> Pipeline:
    """base_to_novel: the benchmark's own base-trained projectors, base and novel classifiers.
    cross_dataset / domain_generalization: the ImageNet all-class projectors, all classes."""
    own = protocol == "base_to_novel"
    subsets = ("base", "novel") if own else ("all",)
    trained = [projector("base" if own else "all", s) for s in seeds]
    trained_on = benchmark if own else SOURCE
    node = Node(
        bind(
            evaluate_benchmark,
            benchmark=benchmark,
            trained_on=trained_on,
            subsets=subsets,
            seeds=tuple(seeds),
        ),
        INPUTS + trained,
        f"runs_{protocol}",
        name=f"evaluate_{protocol}",
        tags=["evaluation"],
    )
    # transfer: the projectors (and the draw they were trained on) are the source's
    source = None if trained_on == benchmark else {n: f"{SOURCE}.{n}" for n in [*trained, "few_shot"]}
    return Pipeline([node], namespace=benchmark, parameters=SHARED_PARAMS, inputs=source)
