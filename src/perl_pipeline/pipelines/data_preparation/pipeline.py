"""data_preparation: one `prepare_benchmark` node per benchmark namespace."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Pipeline

from perl_pipeline.pipelines._binding import per_benchmark, stage_node
from perl_pipeline.pipelines.data_preparation.nodes import prepare_benchmark
from perl_pipeline.protocols import ALL_BENCHMARKS


def create_pipeline(benchmarks: Iterable[str] = ALL_BENCHMARKS, **kwargs) -> Pipeline:
    inputs = ["params:benchmark", "params:data_root", "params:data_source"]
    node = stage_node(prepare_benchmark, inputs, "index", "data_preparation")
    return per_benchmark(lambda name: node, benchmarks)
