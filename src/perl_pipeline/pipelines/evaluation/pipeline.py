"""evaluation: one node per (benchmark, protocol) that scores every seed in one pass."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines._binding import bind
from perl_pipeline.pipelines.evaluation.nodes import evaluate_benchmark, package_adapters
from perl_pipeline.pipelines.training.pipeline import projector
from perl_pipeline.protocols import SEEDS, SOURCE

OWN_PROTOCOLS = ("base_to_novel", "all_classes")  # each benchmark scores its own projectors
PARAMS = {name: f"params:{name}" for name in ("data_root", "clip", "perl", "evaluation", "device")}
INPUTS = {"index": "index", "text_features": "text_features"} | PARAMS


def runs(benchmark: str, protocol: str) -> str:
    """Dataset name of a benchmark's per-run results under a protocol."""
    return f"{benchmark}.runs_{protocol}"


def trajectories(benchmark: str, protocol: str) -> str:
    """Dataset name of a benchmark's confidence trajectories under a protocol."""
    return f"{benchmark}.trajectories_{protocol}"


def adapter(subset: str, seed: int) -> str:
    """Dataset name of one seed's adapter file inside a benchmark namespace."""
    return f"adapter_{subset}_seed_{seed}"


def create_pipeline(benchmark: str, protocol: str, seeds=SEEDS, **kwargs) -> Pipeline:
    """Score the benchmark's own projectors (base_to_novel: base-trained, base and novel classes;
    all_classes) or the ImageNet all-class ones (the transfer protocols); where they are its own (and
    for the source under cross_dataset), a second node writes one adapter file per seed."""
    trained_subset = "base" if protocol == "base_to_novel" else "all"
    subsets = ("base", "novel") if protocol == "base_to_novel" else ("all",)
    trained = {name: name for name in (projector(trained_subset, s) for s in seeds)}
    local = protocol in OWN_PROTOCOLS or benchmark == SOURCE  # else: the source's projectors
    nodes = [
        Node(
            bind(evaluate_benchmark, benchmark=benchmark, subsets=subsets, seeds=tuple(seeds)),
            INPUTS | trained,
            [f"runs_{protocol}", f"trajectories_{protocol}"],
            name=f"evaluate_{protocol}",
            tags=["evaluation"],
        )
    ]
    if local and protocol != "domain_generalization":  # cross_dataset writes SOURCE's
        nodes.append(
            Node(
                bind(package_adapters, benchmark=benchmark, subset=trained_subset, seeds=tuple(seeds)),
                {"text_features": "text_features", "runs": f"runs_{protocol}"}
                | {"clip": "params:clip", "perl": "params:perl"}
                | trained,
                [adapter(trained_subset, s) for s in seeds],
                name=f"package_adapters_{trained_subset}",
                tags=["evaluation", "adapters"],
            )
        )
    source = None if local else {n: f"{SOURCE}.{n}" for n in trained}
    return Pipeline(nodes, namespace=benchmark, parameters=set(PARAMS.values()), inputs=source)
