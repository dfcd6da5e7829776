"""One module per on-disk layout, each with its index reader and its miniature writer side by side.

:data:`LAYOUTS` maps a benchmark's ``layout`` value to its :class:`~.base.Layout`. Spec
validation, :func:`~perl_pipeline.benchmarks.prepare.build_index` and
:func:`~perl_pipeline.toy.miniature.write_miniature` all go through it, so a new layout is one
new module here plus one line below.
"""

from __future__ import annotations

from perl_pipeline.benchmarks.layouts import (
    coop_split,
    fgvc,
    image_folder,
    numbered_folders,
    wnid_folders,
)
from perl_pipeline.benchmarks.layouts.base import Key, Layout, MiniatureWriter

MODULES = (coop_split, fgvc, wnid_folders, numbered_folders, image_folder)
LAYOUTS: dict[str, Layout] = {module.LAYOUT.name: module.LAYOUT for module in MODULES}

__all__ = ["LAYOUTS", "Key", "Layout", "MiniatureWriter"]
