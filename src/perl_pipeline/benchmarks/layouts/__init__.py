"""One module per on-disk layout; :data:`LAYOUTS` maps a ``layout`` value to its :class:`~.base.Layout`.

A new layout is one new module here plus one line below.
"""

from __future__ import annotations

from perl_pipeline.benchmarks.layouts import coop_split, fgvc, image_folder, numbered_folders, wnid_folders
from perl_pipeline.benchmarks.layouts.base import Key, Layout, MiniatureWriter

MODULES = (coop_split, fgvc, wnid_folders, numbered_folders, image_folder)
LAYOUTS: dict[str, Layout] = {module.LAYOUT.name: module.LAYOUT for module in MODULES}

__all__ = ["LAYOUTS", "Key", "Layout", "MiniatureWriter"]
