"""Layout ``coop_split``: images under ``image_dir`` plus CoOp's ``split_zhou_*.json``.

The split file is ``{"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}``
with paths relative to ``image_dir``; it carries the labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from perl_pipeline.benchmarks.layouts.base import (
    Found,
    Key,
    Layout,
    MiniatureWriter,
    colour_image,
    save_image,
)
from perl_pipeline.benchmarks.spec import SPLITS, BenchmarkError, BenchmarkSpec


def read_coop_split(spec: BenchmarkSpec, folder: Path) -> Iterator[Found]:
    """The images of a CoOp split file: the splits of ``split_sizes``, or with none every split it holds."""
    split_path = folder / (spec.split_file or "")
    try:
        data = json.loads(split_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchmarkError(
            f"[{spec.name}] split file {split_path} is not valid JSON ({exc}); delete it and run again "
            "(data preparation fetches or writes it anew)"
        ) from exc
    if not isinstance(data, dict):
        raise BenchmarkError(
            f"[{spec.name}] split file {split_path} must hold a JSON object with train/val/test lists"
        )
    for split in spec.split_sizes or [s for s in SPLITS if s in data]:
        entries = data.get(split)
        if not isinstance(entries, list):
            raise BenchmarkError(
                f"[{spec.name}] split file {split_path} has no '{split}' list "
                f"(keys: {sorted(data)}); re-download it (see the manual route)."
            )
        for i, entry in enumerate(entries):
            well_formed = isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
            if not well_formed or type(entry[1]) is not int:  # a bool is no label
                raise BenchmarkError(
                    f"[{spec.name}] {split_path}: entry {i} of '{split}' is "
                    f"{entry!r}, expected [relpath, label, classname]"
                )
            yield split, entry[0], entry[1], str(entry[2])


def write_coop_split(w: MiniatureWriter, classes: list[Key]) -> None:
    """Images under ``image_dir`` plus the split file in CoOp's format (labels in class order)."""
    rows = w.images(classes)
    split: dict[str, list[list[object]]] = {s: [] for s in w.counts}
    for name, label, classname, rel in rows:
        split[name].append([rel, label, classname])
    (w.folder / (w.spec.split_file or "")).write_text(json.dumps(split, indent=4, separators=(",", ": ")))


def _caltech_dropped_folders(w: MiniatureWriter, classes: list[Key]) -> None:
    """Caltech101's ``BACKGROUND_Google`` and ``Faces_easy``: on disk, never in the split file."""
    for dropped in ("BACKGROUND_Google", "Faces_easy"):
        (w.image_dir / dropped).mkdir(parents=True, exist_ok=True)
        save_image(colour_image((128, 128, 128), 0, 16), w.image_dir / dropped / "image_0001.jpg")


def _flowers_cat_to_name(w: MiniatureWriter, classes: list[Key]) -> None:
    """Flowers102's ``cat_to_name.json`` (class number -> name), beside the split file."""
    (w.folder / "cat_to_name.json").write_text(json.dumps(dict(classes), indent=4))


def _sun_class_name_list(w: MiniatureWriter, classes: list[Key]) -> None:
    """SUN397's ``ClassName.txt``: one ``/a/abbey`` line per class folder."""
    (w.image_dir / "ClassName.txt").write_text("".join(f"/{key}\n" for key, _ in classes))


LAYOUT = Layout(
    name="coop_split",
    find=read_coop_split,
    write_files=write_coop_split,
    root_paths=lambda spec: [spec.split_file or "", spec.image_dir],
    required=("split_file",),
    extras={
        "caltech_dropped_folders": _caltech_dropped_folders,
        "flowers_cat_to_name": _flowers_cat_to_name,
        "sun_class_name_list": _sun_class_name_list,
    },
)
