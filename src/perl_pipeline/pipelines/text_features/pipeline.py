"""text_features: one encoding node per benchmark namespace."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Pipeline

from perl_pipeline.pipelines._binding import per_benchmark, stage_node
from perl_pipeline.pipelines.text_features.nodes import encode_class_prompts
from perl_pipeline.protocols import ALL_BENCHMARKS


def create_pipeline(benchmarks: Iterable[str] = ALL_BENCHMARKS, **kwargs) -> Pipeline:
    inputs = ["index", "params:benchmark.template", "params:clip", "params:perl.split_layer", "params:device"]
    node = stage_node(encode_class_prompts, inputs, "text_features", "text_features")
    return per_benchmark(lambda name: node, benchmarks)
