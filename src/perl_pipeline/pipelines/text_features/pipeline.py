"""text_features: one encoding node per benchmark namespace."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines._binding import per_benchmark
from perl_pipeline.pipelines.text_features.nodes import encode_class_prompts
from perl_pipeline.protocols import ALL_BENCHMARKS


def create_pipeline(benchmarks: Iterable[str] = ALL_BENCHMARKS, **kwargs) -> Pipeline:
    node = Node(
        encode_class_prompts,
        ["index", "params:benchmark.template", "params:clip", "params:perl.split_layer", "params:device"],
        "text_features",
        name="encode_class_prompts",
        tags=["text_features"],
    )
    return per_benchmark(lambda name: node, benchmarks)
