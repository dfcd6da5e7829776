"""Project pipelines: the six stages, and the three protocols composed from them.

The registry is explicit (no find_pipelines) so that `kedro run --pipelines base_to_novel` works
with Kedro's selective pipeline loading.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from kedro.pipeline import Pipeline

from perl_pipeline.pipelines.data_preparation import pipeline as data_preparation
from perl_pipeline.pipelines.evaluation import pipeline as evaluation
from perl_pipeline.pipelines.few_shot_splits import pipeline as few_shot_splits
from perl_pipeline.pipelines.paper import pipeline as paper
from perl_pipeline.pipelines.predict import pipeline as predict
from perl_pipeline.pipelines.reporting import pipeline as reporting
from perl_pipeline.pipelines.text_features import pipeline as text_features
from perl_pipeline.pipelines.toy_clip import pipeline as toy_clip
from perl_pipeline.pipelines.training import pipeline as training
from perl_pipeline.protocols import ALL_BENCHMARKS, PROTOCOLS, SEEDS, Protocol

# Evaluation reads the source benchmark's projectors and reporting reads every benchmark's runs:
# those cross-namespace names are deliberate, so Kedro's generic warning about dots is silenced.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'", category=UserWarning)

STAGES = ("data_preparation", "few_shot_splits", "text_features", "training", "evaluation", "reporting")


def _protocol(protocol: Protocol, own: tuple[str, ...] = ()) -> Pipeline:
    """Every stage a protocol needs, from raw data to its reports (`own` benchmarks join it)."""
    name, subset = protocol.name, protocol.subset
    benchmarks, trained = protocol.benchmarks + own, protocol.trained + own
    record = f"{trained[0]}.{training.training_record(subset, SEEDS[0])}"
    return (
        data_preparation.create_pipeline(benchmarks)
        + few_shot_splits.create_pipeline(trained)
        + text_features.create_pipeline(benchmarks)
        + sum((training.create_pipeline(b, subset) for b in trained), Pipeline([]))
        + sum((evaluation.create_pipeline(b, name) for b in benchmarks), Pipeline([]))
        + reporting.create_pipeline(name, benchmarks, record)
    )


_PARAMETERS: list[Callable[[], Mapping[str, Any]]] = []  # the running context's, when there is one


def use_parameters(load: Callable[[], Mapping[str, Any]] | None) -> None:
    """Where `register_pipelines` finds your own benchmarks: a function returning the run's
    parameters (the hook `OwnBenchmarks` passes the context's), or None for the paper's grid only."""
    _PARAMETERS[:] = [load] if load is not None else []


def own_benchmarks(parameters: Mapping[str, Any]) -> tuple[str, ...]:
    """The benchmarks the parameters describe beyond the paper's grid (a ``<name>: {benchmark:
    ...}`` block, e.g. an ``image_folder`` one in conf/local/), sorted by name."""
    blocks = {name: v.get("benchmark") for name, v in parameters.items() if isinstance(v, Mapping)}
    return tuple(sorted(n for n, b in blocks.items() if n not in ALL_BENCHMARKS and isinstance(b, Mapping)))


def register_pipelines() -> dict[str, Pipeline]:
    """The stages, the protocols (`__default__`: all of them), toy_clip, predict and paper. Your own
    benchmarks join base_to_novel (base and novel halves of their classes) and make up all_classes
    (K shots of every class, scored on its test split)."""
    own = own_benchmarks(_PARAMETERS[0]()) if _PARAMETERS else ()
    protocols = {
        name: _protocol(protocol, own if name == "base_to_novel" else ())
        for name, protocol in PROTOCOLS.items()
    }
    if own:
        protocols["all_classes"] = _protocol(Protocol("all_classes", "All classes", own, own, "all"))
    everything = sum(protocols.values(), Pipeline([]))
    stages = {stage: everything.only_nodes_with_tags(stage) for stage in STAGES}
    return {
        **stages,
        **protocols,
        "toy_clip": toy_clip.create_pipeline(),
        "predict": predict.create_pipeline(),
        "paper": paper.create_pipeline(),
        "__default__": everything,
    }
