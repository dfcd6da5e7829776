"""Layout ``image_folder``: your own images, one folder per class, as a benchmark.

Under ``image_dir`` either one folder per class, split once per class in Dassl's proportions
(``read_and_split_data``: 50 % train, 20 % val, the rest test; each class's sorted files shuffled by
one ``random.Random(split_seed)`` in sorted class order), or ``train/``, ``val/`` (optional) and
``test/`` holding the class folders. The split is written once as a CoOp-format ``split_file`` and
read by the ``coop_split`` reader; an existing one is never rewritten. Labels follow the sorted
folder names; files Pillow does not know by extension are left out and named.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

from perl_pipeline.benchmarks.layouts.base import Found, Key, Layout, MiniatureWriter
from perl_pipeline.benchmarks.layouts.coop_split import read_coop_split
from perl_pipeline.benchmarks.spec import SPLITS, BenchmarkError, BenchmarkSpec

logger = logging.getLogger(__name__)

P_TRAIN, P_VAL = 0.5, 0.2  # Dassl's read_and_split_data defaults (CoOp's DTD, Food101, Caltech...)
DEFAULT_SPLIT_FILE = "split_perl.json"


class ImageFolderError(BenchmarkError):
    """A class folder tree that cannot become a benchmark; the message names the folder and why."""


def normalise_classname(name: str) -> str:
    """How a class name reads in a prompt, for comparison (``_`` as space, case and spacing ignored)."""
    return " ".join(name.replace("_", " ").split()).casefold()


def image_extensions() -> frozenset[str]:
    """File extensions Pillow can open (lower case, with the dot)."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def dassl_counts(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of a class of ``n`` images, as Dassl computes them (round half to even)."""
    n_train, n_val = round(n * P_TRAIN), round(n * P_VAL)
    return n_train, n_val, n - n_train - n_val


def walk_images(
    folder: Path,
    extensions: frozenset[str],
    files: list[Path],
    skipped: list[tuple[Path, str]],
    seen: set[Path],
    strict: bool = False,
) -> None:
    """Add the image files under ``folder`` (sorted, recursive, hidden entries ignored) to ``files``,
    and each entry left out (symlink loop, unknown extension, broken link, a folder that cannot be
    listed unless ``strict``, which raises) with why to ``skipped``."""
    real = folder.resolve()
    if real in seen:
        skipped.append((folder, f"symlink loop (folder {real} already searched)"))
        return
    seen.add(real)
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        if strict:
            raise
        skipped.append((folder, f"cannot list folder: {error.strerror or error}"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            walk_images(entry, extensions, files, skipped, seen, strict)
        elif entry.is_file() and entry.suffix.lower() in extensions:
            files.append(entry)
        elif entry.is_file():
            skipped.append((entry, f"not an image file (extension {entry.suffix or 'none'!r})"))
        elif entry.is_symlink():
            skipped.append((entry, "broken symlink"))


def _class_folders(folder: Path, name: str) -> list[str]:
    try:
        return sorted(e.name for e in folder.iterdir() if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError as error:
        raise ImageFolderError(f"[{name}] {folder} does not exist: put one folder per class there") from error


def _check_classes(spec: BenchmarkSpec, where: Path, folders: list[str]) -> None:
    if not folders:
        raise ImageFolderError(
            f"[{spec.name}] {where} holds no class folders: put one folder of images per class there "
            "(or train/, val/ and test/ folders holding the class folders)"
        )
    if len(folders) < 2:
        raise ImageFolderError(
            f"[{spec.name}] {where} holds a single class folder ({folders[0]!r}): a classifier needs at "
            "least 2 classes"
        )
    first: dict[str, str] = {}
    for folder in folders:
        key = normalise_classname(spec.classname(folder))
        if key in first:
            raise ImageFolderError(
                f"[{spec.name}] class folders {first[key]!r} and {folder!r} in {where} name the same "
                f"class ({key!r} once '_', case and spaces are normalised); merge or rename one, or map "
                "one with classname_fixes"
            )
        first[key] = folder


def make_split(spec: BenchmarkSpec, image_dir: Path, seed: int = 1) -> dict[str, list[list]]:
    """The CoOp-format split of a folder tree under ``image_dir`` (see the module docstring)."""
    extensions = image_extensions()
    skipped: list[tuple[Path, str]] = []

    def files_of(folder: Path) -> list[str]:
        """The image files under a class folder, as sorted POSIX paths relative to it."""
        files: list[Path] = []
        walk_images(folder, extensions, files, skipped, set(), strict=True)
        return [f.relative_to(folder).as_posix() for f in files]

    top = _class_folders(image_dir, spec.name)
    if "test" in top and set(top) <= set(SPLITS):  # train/, val/ (optional) and test/ given
        per_split = {s: _class_folders(image_dir / s, spec.name) for s in SPLITS if s in top}
        classes = sorted(set().union(*per_split.values()))
        _check_classes(spec, image_dir, classes)
        split = {
            s: [[f"{s}/{c}/{f}", classes.index(c), c] for c in folders for f in files_of(image_dir / s / c)]
            for s, folders in per_split.items()
        }
        for s in [s for s in ("train", "test") if s in split]:
            empty = sorted(set(classes) - {entry[2] for entry in split[s]})
            if empty:
                raise ImageFolderError(f"[{spec.name}] {image_dir / s} has no images of classes {empty}")
    else:
        _check_classes(spec, image_dir, top)
        rng = random.Random(seed)
        split = {s: [] for s in SPLITS}
        for label, folder in enumerate(top):
            files = files_of(image_dir / folder)
            n_train, n_val, n_test = dassl_counts(len(files))
            if min(n_train, n_val, n_test) < 1:
                raise ImageFolderError(
                    f"[{spec.name}] class folder {image_dir / folder} has {len(files)} image(s): "
                    f"splitting it {P_TRAIN:.0%} / {P_VAL:.0%} / rest (Dassl's rule) leaves a split "
                    "empty; it needs at least 4 images (or give train/ val/ test/ folders yourself)"
                )
            rng.shuffle(files)
            parts = files[:n_train], files[n_train : n_train + n_val], files[n_train + n_val :]
            for s, chosen in zip(("train", "val", "test"), parts, strict=True):
                split[s] += [[f"{folder}/{f}", label, folder] for f in chosen]
    for path, why in skipped:
        logger.warning("[%s] left out %s: %s", spec.name, path, why)
    return split


def read_image_folder(spec: BenchmarkSpec, folder: Path) -> Iterator[Found]:
    """The images of the folder tree, through its split file, written first if it is not there yet."""
    split_path = folder / (spec.split_file or DEFAULT_SPLIT_FILE)
    if not split_path.is_file():
        split = make_split(spec, folder / spec.image_dir, seed=spec.split_seed)
        sizes = {s: len(entries) for s, entries in split.items()}
        tmp = split_path.with_name(split_path.name + ".tmp")
        tmp.write_text(json.dumps(split, indent=1), encoding="utf-8")
        os.replace(tmp, split_path)
        logger.info("[%s] wrote the split %s to %s (seed %d)", spec.name, sizes, split_path, spec.split_seed)
    return read_coop_split(dataclasses.replace(spec, split_file=split_path.name, split_sizes={}), folder)


def write_image_folder(w: MiniatureWriter, classes: list[Key]) -> None:
    """A miniature: every image of a class in its class folder, no split (the reader splits it)."""
    w.images(classes)


LAYOUT = Layout(
    name="image_folder",
    find=read_image_folder,
    write_files=write_image_folder,
    root_paths=lambda spec: [spec.image_dir],  # the split file is written when missing
    sizes_from_split_file=True,
    defaults={
        "image_dir": ".",
        "split_file": DEFAULT_SPLIT_FILE,
        "num_classes": 0,
        "split_sizes": {},
        "manual": "Put one folder of images per class (or train/, val/ and test/ folders holding the "
        "class folders) in <data_root>/<folder>/.",
    },
)
