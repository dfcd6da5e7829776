"""Bind the grid's values (seed, subset, benchmark) into a node function, keeping its name."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from kedro.pipeline import Node, Pipeline


def bind(func: Callable, **values) -> Callable:
    """functools.partial that keeps func's name and docstring (for node names and kedro-viz)."""
    return functools.update_wrapper(functools.partial(func, **values), func)


def stage_node(func: Callable, inputs: list | dict, outputs: str | list, *tags: str) -> Node:
    """`func` as a node named after it (after the function `bind` wraps), tagged `tags`."""
    return Node(func, inputs, outputs, name=func.__name__, tags=list(tags))


def per_benchmark(node: Callable[[str], Node], benchmarks: Iterable[str]) -> Pipeline:
    """`node(benchmark)` in every benchmark's namespace; its parameters other than the benchmark's
    own block (``params:benchmark...``) stay shared."""
    pipelines = []
    for name in benchmarks:
        made = node(name)
        shared = {i for i in made.inputs if i.startswith("params:") and not i.startswith("params:benchmark")}
        pipelines.append(Pipeline([made], namespace=name, parameters=shared))
    return sum(pipelines, Pipeline([]))
