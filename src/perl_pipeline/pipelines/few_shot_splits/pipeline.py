"""few_shot_splits: one draw node per benchmark namespace (all seeds in one table)."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines._binding import bind, per_benchmark, stage_node
from perl_pipeline.pipelines.few_shot_splits.nodes import draw_few_shot_splits
from perl_pipeline.protocols import BASE_TO_NOVEL, SEEDS


def create_pipeline(benchmarks: Iterable[str] = BASE_TO_NOVEL, **kwargs) -> Pipeline:
    inputs = ["index", "params:few_shot", "params:data_root", "params:data_source"]

    def node(name: str) -> Node:
        return stage_node(
            bind(draw_few_shot_splits, seeds=SEEDS, benchmark=name), inputs, "few_shot", "few_shot_splits"
        )

    return per_benchmark(node, benchmarks)
