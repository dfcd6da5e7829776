"""few_shot_splits: one draw node per benchmark namespace (all seeds in one table)."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines._binding import bind
from perl_pipeline.pipelines.few_shot_splits.nodes import draw_few_shot_splits
from perl_pipeline.protocols import BASE_TO_NOVEL, SEEDS


def create_pipeline(benchmarks: Iterable[str] = BASE_TO_NOVEL, **kwargs) -> Pipeline:
    template = Pipeline(
        [
            Node(
                bind(draw_few_shot_splits, seeds=SEEDS),
                ["index", "params:few_shot"],
                "few_shot",
                name="draw_few_shot_splits",
                tags=["few_shot_splits"],
            )
        ]
    )
    return sum(
        (Pipeline(template, namespace=name, parameters={"params:few_shot"}) for name in benchmarks),
        Pipeline([]),
    )
