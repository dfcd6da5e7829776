"""Bind the grid's values (seed, subset, benchmark) into a node function, keeping its name."""

from __future__ import annotations

import functools
from collections.abc import Callable


def bind(func: Callable, **values) -> Callable:
    """functools.partial that keeps func's name and docstring (for node names and kedro-viz)."""
    return functools.update_wrapper(functools.partial(func, **values), func)
