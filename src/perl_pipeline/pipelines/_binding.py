"""Bind the grid's values (seed, subset, benchmark) into a node function, keeping its name."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from kedro.pipeline import Node, Pipeline


def bind(func: Callable, **values) -> Callable:
    """functools.partial that keeps func's name and docstring (for node names and kedro-viz)."""
    return functools.update_wrapper(functools.partial(func, **values), func)


def per_benchmark(node: Callable[[str], Node], benchmarks: Iterable[str], parameters: set[str]) -> Pipeline:
    """`node(benchmark)` for every benchmark, in its namespace; `parameters` stay shared."""
    return sum(
        (Pipeline([node(name)], namespace=name, parameters=parameters) for name in benchmarks), Pipeline([])
    )
