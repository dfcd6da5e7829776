"""The 15 CoOp benchmarks as data (``BenchmarkSpec``) and one index reader per on-disk layout.

A benchmark is described once, in ``conf/base/parameters_benchmarks.yml``; Kedro hands each
``<name>.benchmark`` block to :meth:`BenchmarkSpec.from_params`. The readers in :data:`READERS`
turn a prepared copy under ``data_root`` into the index table (:data:`INDEX_SCHEMA`): one row per
image with its split, its path relative to ``data_root`` (POSIX), its label and its class name.

Label order always comes from the split file or the official meta files, never from sorting class
names (protocol §1.0): CoOp split JSONs carry their labels, FGVC uses ``variants.txt`` order, the
ImageNet family uses sorted WordNet-id folders (names from ``classnames.txt``) and ImageNet-V2 uses
folder ``i`` -> label ``i``.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from perl_pipeline.config import ConfigError, check_fields, check_value
from perl_pipeline.protocols import ALL_BENCHMARKS

SPLITS = ("train", "val", "test")
LAYOUTS = ("coop_split", "fgvc", "wnid_folders", "numbered_folders")
BENCHMARK_NAMES = ALL_BENCHMARKS  # the 15 names, in paper order
INDEX_SCHEMA: dict[str, pl.DataType] = {
    "split": pl.String(),
    "path": pl.String(),
    "label": pl.Int64(),
    "classname": pl.String(),
}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
FGVC_VARIANTS_FILE = "variants.txt"
FGVC_SPLIT_FILE = "images_variant_{split}.txt"
WNID_PATTERN = re.compile(r"n\d{8}")


class BenchmarkError(Exception):
    """Base class of every data-layer error that names a benchmark and how to fix it."""


# --------------------------------------------------------------------------------------------
# Spec dataclasses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One downloadable (or user-supplied) file of a benchmark.

    Attributes:
        filename: Name of the file inside the benchmark folder (where a user-supplied copy goes).
        kind: ``archive`` (extracted after fetching) or ``file`` (used as is).
        provides: Paths, relative to the benchmark folder, whose presence means this source is
            already in place (defaults to ``filename`` for files).
        urls: Public mirrors, tried in order.
        gdrive_id: Google Drive file id (tried after the urls).
        md5, sha256: Expected checksums of the downloaded file, when known.
        extract_to: Folder, relative to the benchmark folder, the archive is extracted into.
        members_prefix: Only archive members under this prefix are extracted.
        optional: Fetched when possible; never blocks preparation when it cannot be had.
    """

    filename: str
    kind: str
    provides: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    gdrive_id: str | None = None
    md5: str | None = None
    sha256: str | None = None
    extract_to: str = "."
    members_prefix: str | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        if not self.provides and self.kind == "file":
            object.__setattr__(self, "provides", (self.filename,))

    @property
    def downloadable(self) -> bool:
        """Whether some public route (a url or a Google Drive id) exists."""
        return bool(self.urls or self.gdrive_id)

    def routes(self) -> list[str]:
        """Human-readable download routes, in the order they are tried."""
        routes = list(self.urls)
        if self.gdrive_id:
            routes.append(f"https://drive.google.com/uc?id={self.gdrive_id} (Google Drive)")
        return routes


@dataclass(frozen=True)
class MoveStep:
    """Move ``src`` into ``dst``, merging folders: hoist ``dtd/dtd/``, rename ``sketch/``."""

    src: str
    dst: str


@dataclass(frozen=True)
class UnpackStep:
    """Extract every archive matching ``archives`` (a glob) into ``to`` (``{stem}`` allowed), then
    delete it: nested archives such as ImageNet's per-class tars or Caltech's inner tar.gz."""

    archives: str
    to: str


@dataclass(frozen=True)
class ImageNetValStep:
    """Sort ImageNet's flat validation images in ``dir`` into WordNet-id folders, using the
    devkit archive's ground truth or a user mapping file (``<image> <wnid>`` lines, or Kaggle's
    ``LOC_val_solution.csv``)."""

    dir: str
    devkit: str = "ILSVRC2012_devkit_t12.tar.gz"
    mapping: str = "val_wnids.txt"


ArrangeStep = MoveStep | UnpackStep | ImageNetValStep
ARRANGE_STEPS: dict[str, type] = {
    "move": MoveStep,
    "unpack": UnpackStep,
    "imagenet_val": ImageNetValStep,
}


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything the data layer knows about one benchmark (one ``<name>.benchmark`` block).

    Attributes:
        name: Benchmark name (the top-level parameters key).
        folder: CoOp folder name under ``data_root``; every other path is relative to it.
        layout: Which reader in :data:`READERS` indexes it.
        image_dir: Folder the split file's paths (or the class folders) are relative to.
        num_classes, split_sizes: The protocol's numbers; validation checks them exactly.
        template: The dataset's single CoOp prompt template (one ``{}``).
        manual: What to do by hand when nothing downloads.
        split_file: CoOp ``split_zhou_*.json`` (layout ``coop_split``).
        split_dirs: split -> folder under ``image_dir`` (layout ``wnid_folders``; labels come
            from the first one's sorted wnid folders).
        classnames_file: ``<wnid> <name>`` lines (ImageNet-family layouts).
        classname_fixes: The loader's rename table, applied to every class name read.
        sources: What :func:`~perl_pipeline.benchmarks.prepare.fetch_benchmark` fetches or expects.
        arrange: Idempotent steps run after extraction.
    """

    name: str
    folder: str
    layout: str
    image_dir: str
    num_classes: int
    split_sizes: dict[str, int] = field(hash=False)
    template: str
    manual: str
    split_file: str | None = None
    split_dirs: dict[str, str] = field(default_factory=dict, hash=False)
    classnames_file: str | None = None
    classname_fixes: dict[str, str] = field(default_factory=dict, hash=False)
    sources: tuple[Source, ...] = ()
    arrange: tuple[ArrangeStep, ...] = ()

    @classmethod
    def from_params(cls, d: Mapping[str, Any]) -> BenchmarkSpec:
        """Build and validate a spec from a parameters mapping.

        Raises:
            ValueError: unknown or missing keys, wrong value types, a bad layout, split or
                template; the message names the benchmark and the key.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"benchmark parameters must be a mapping, got {type(d).__name__}")
        where = f"benchmark '{d.get('name', '<unnamed>')}'"
        values = _checked_fields(cls, d, where, nested={"sources", "arrange"})
        values["sources"] = tuple(
            Source(**_checked_fields(Source, s, f"{where}: sources[{i}]"))
            for i, s in enumerate(_as_list(d.get("sources", []), f"{where}: key 'sources'"))
        )
        values["arrange"] = tuple(
            _arrange_step(s, f"{where}: arrange[{i}]")
            for i, s in enumerate(_as_list(d.get("arrange", []), f"{where}: key 'arrange'"))
        )
        if values.get("layout") == "wnid_folders" and not values.get("split_dirs"):
            values["split_dirs"] = {"test": "."}
        spec = cls(**values)
        spec._validate(where)
        return spec

    def _validate(self, where: str) -> None:
        def fail(key: str, problem: str) -> None:
            raise ConfigError(f"{where}: key '{key}' {problem}")

        if self.layout not in LAYOUTS:
            fail("layout", f"is {self.layout!r}, not one of {', '.join(LAYOUTS)}")
        if self.num_classes < 1:
            fail("num_classes", f"must be positive, got {self.num_classes}")
        bad = sorted(set(self.split_sizes) - set(SPLITS))
        if bad or "test" not in self.split_sizes:
            fail(
                "split_sizes",
                f"must name a 'test' split and only {SPLITS}; got {sorted(self.split_sizes)}",
            )
        if any(n < 1 for n in self.split_sizes.values()):
            fail("split_sizes", f"must be positive, got {self.split_sizes}")
        if self.template.count("{}") != 1:
            fail("template", f"must contain exactly one '{{}}' placeholder, got {self.template!r}")
        needs = {
            "coop_split": ("split_file",),
            "wnid_folders": ("classnames_file",),
            "numbered_folders": ("classnames_file",),
            "fgvc": (),
        }[self.layout]
        for key in needs:
            if not getattr(self, key):
                fail(key, f"is required by layout '{self.layout}'")
        if self.layout == "wnid_folders" and set(self.split_dirs) != set(self.split_sizes):
            fail(
                "split_dirs",
                f"must name the same splits as split_sizes "
                f"({sorted(self.split_sizes)}), got {sorted(self.split_dirs)}",
            )
        if self.layout != "wnid_folders" and self.split_dirs:
            fail("split_dirs", "is only used by layout 'wnid_folders'")
        if self.layout == "numbered_folders" and set(self.split_sizes) != {"test"}:
            fail("split_sizes", "must hold only 'test' for layout 'numbered_folders'")
        for i, src in enumerate(self.sources):
            if src.kind not in ("archive", "file"):
                fail(f"sources[{i}].kind", f"is {src.kind!r}, not 'archive' or 'file'")
            if src.kind == "archive" and not src.provides:
                fail(f"sources[{i}].provides", "is required for archives (what extraction yields)")

    @property
    def root_paths(self) -> list[str]:
        """Paths (relative to the benchmark folder) the layout's reader cannot work without."""
        if self.layout == "coop_split":
            return [self.split_file or "", self.image_dir]
        if self.layout == "fgvc":
            return [
                self.image_dir,
                FGVC_VARIANTS_FILE,
                *(FGVC_SPLIT_FILE.format(split=s) for s in self.split_sizes),
            ]
        dirs = self.split_dirs.values() if self.layout == "wnid_folders" else ["."]
        return [
            self.classnames_file or "",
            *(posixpath.normpath(posixpath.join(self.image_dir, d)) for d in dirs),
        ]

    def classname(self, raw: str) -> str:
        """Apply the loader's rename table (idempotent on already-clean names)."""
        return self.classname_fixes.get(raw, raw)


def specs_from_parameters(params: Mapping[str, Any]) -> dict[str, BenchmarkSpec]:
    """Build every spec found in a parameters mapping (``{name: {"benchmark": {...}}, ...}``).

    Top-level entries without a ``benchmark`` block are ignored, so the whole Kedro ``parameters``
    dict can be passed.
    """
    specs = {}
    for key, block in params.items():
        if isinstance(block, Mapping) and "benchmark" in block:
            spec = BenchmarkSpec.from_params(block["benchmark"])
            if spec.name != key:
                raise ValueError(
                    f"benchmark '{key}': key 'name' is {spec.name!r}; it must equal the top-level key {key!r}"
                )
            specs[key] = spec
    return specs


def _checked_fields(
    cls: type, d: Any, where: str, nested: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """Check a mapping against a dataclass's fields with the configuration's one checker."""
    return check_fields(cls, d, where, label=lambda key: f"{where}: key '{key}'", skip=nested)


def _as_list(value: Any, where: str) -> list[Any]:
    return check_value(value, list, where)


def _arrange_step(d: Any, where: str) -> ArrangeStep:
    if not isinstance(d, Mapping) or d.get("op") not in ARRANGE_STEPS:
        raise ConfigError(
            f"{where}: key 'op' must be one of {sorted(ARRANGE_STEPS)}, got "
            f"{d.get('op') if isinstance(d, Mapping) else d!r}"
        )
    step_cls = ARRANGE_STEPS[d["op"]]
    args = {k: v for k, v in d.items() if k != "op"}
    return step_cls(**_checked_fields(step_cls, args, f"{where} (op {d['op']})"))


# --------------------------------------------------------------------------------------------
# Index helpers shared by the readers, validation and few-shot code
# --------------------------------------------------------------------------------------------


def index_frame(
    split: Sequence[str], path: Sequence[str], label: Sequence[int], classname: Sequence[str]
) -> pl.DataFrame:
    """Assemble an index table with :data:`INDEX_SCHEMA` from column lists."""
    return pl.DataFrame(
        {"split": split, "path": path, "label": label, "classname": classname}, schema=INDEX_SCHEMA
    )


def label_classnames(index: pl.DataFrame, *, where: str = "index") -> list[str]:
    """Class names in label order; labels must be exactly 0..n-1, each with one name.

    Raises:
        ValueError: a label has several names, or the labels have gaps.
    """
    pairs = index.select("label", "classname").unique().sort("label", "classname")
    dupes = pairs.filter(pl.col("label").is_duplicated())
    if dupes.height:
        shown = dupes.group_by("label", maintain_order=True).agg("classname").head(5).rows()
        raise ValueError(f"{where}: labels with more than one class name: {shown}")
    labels = pairs["label"].to_list()
    if labels != list(range(len(labels))):
        gaps = sorted(set(range(max(labels, default=-1) + 1)) - set(labels))
        raise ValueError(f"{where}: labels must be 0..n-1 without gaps; missing {gaps[:10]}")
    return pairs["classname"].to_list()


def read_classnames(path: Path) -> dict[str, str]:
    """Read CoOp's ``classnames.txt`` (``<wnid> <name...>`` per line) in file order."""
    names: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            wnid, _, name = line.strip().partition(" ")
            if not name.strip():
                raise ValueError(f"{path}:{n}: expected '<wnid> <class name>', got {line!r}")
            names[wnid] = name.strip()
    return names


def _rel(*parts: str) -> str:
    return posixpath.normpath(posixpath.join(*parts))


def _visible(entries: Iterator[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _subdirs(path: Path) -> list[str]:
    with os.scandir(path) as it:
        return [e.name for e in _visible(it) if e.is_dir()]


def _images(path: Path) -> list[str]:
    with os.scandir(path) as it:
        return [
            e.name
            for e in _visible(it)
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
        ]


# --------------------------------------------------------------------------------------------
# Readers: one per layout
# --------------------------------------------------------------------------------------------


def read_coop_split(spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
    """CoOp ``split_zhou_*.json``: ``{"train": [[relpath, label, classname], ...], ...}``;
    paths are relative to ``image_dir`` (StanfordCars: ``image_dir: .``)."""
    split_path = Path(data_root) / spec.folder / (spec.split_file or "")
    try:
        data = json.loads(split_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchmarkError(
            f"[{spec.name}] split file {split_path} is not valid JSON ({exc}); delete it and fetch it again"
        ) from exc
    if not isinstance(data, dict):
        raise BenchmarkError(
            f"[{spec.name}] split file {split_path} must hold a JSON object with train/val/test lists"
        )
    cols: dict[str, list[Any]] = {"split": [], "path": [], "label": [], "classname": []}
    for split in spec.split_sizes:
        entries = data.get(split)
        if not isinstance(entries, list):
            raise BenchmarkError(
                f"[{spec.name}] split file {split_path} has no '{split}' list "
                f"(keys: {sorted(data)}); re-download it (see the manual route)."
            )
        for i, entry in enumerate(entries):
            if (
                not isinstance(entry, list)
                or len(entry) != 3
                or not isinstance(entry[0], str)
                or isinstance(entry[1], bool)
                or not isinstance(entry[1], int)
            ):
                raise BenchmarkError(
                    f"[{spec.name}] {split_path}: entry {i} of '{split}' is "
                    f"{entry!r}, expected [relpath, label, classname]"
                )
            cols["split"].append(split)
            cols["path"].append(_rel(spec.folder, spec.image_dir, entry[0]))
            cols["label"].append(entry[1])
            cols["classname"].append(spec.classname(str(entry[2])))
    return index_frame(**cols)


def read_fgvc(spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
    """FGVC-Aircraft official files: labels in ``variants.txt`` order; each
    ``images_variant_<split>.txt`` line is ``<image id> <variant>``; images ``<id>.jpg``."""
    folder = Path(data_root) / spec.folder
    variants = [v.strip() for v in (folder / FGVC_VARIANTS_FILE).read_text().splitlines() if v.strip()]
    label_of = {v: i for i, v in enumerate(variants)}
    cols: dict[str, list[Any]] = {"split": [], "path": [], "label": [], "classname": []}
    for split in spec.split_sizes:
        list_path = folder / FGVC_SPLIT_FILE.format(split=split)
        for n, line in enumerate(list_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            image_id, _, variant = line.strip().partition(" ")
            if variant not in label_of:
                raise BenchmarkError(
                    f"[{spec.name}] {list_path}:{n}: variant {variant!r} is not "
                    f"listed in {FGVC_VARIANTS_FILE}"
                )
            cols["split"].append(split)
            cols["path"].append(_rel(spec.folder, spec.image_dir, f"{image_id}.jpg"))
            cols["label"].append(label_of[variant])
            cols["classname"].append(spec.classname(variant))
    return index_frame(**cols)


def read_wnid_folders(spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
    """ImageNet, -Sketch, -A, -R: one folder per WordNet id. Labels enumerate the sorted wnid
    folders of the first split (``split_dirs`` order; ImageNet: train); names come from
    ``classnames.txt``. ImageNet-A/-R therefore get labels 0..199 over their 200 folders."""
    folder = Path(data_root) / spec.folder
    names = read_classnames(folder / (spec.classnames_file or ""))
    splits = list(spec.split_dirs.items())
    wnids = _subdirs(folder / spec.image_dir / splits[0][1])
    unknown = [w for w in wnids if w not in names]
    if unknown:
        raise BenchmarkError(
            f"[{spec.name}] {len(unknown)} folder(s) under {folder / spec.image_dir / splits[0][1]}"
            f" are not WordNet ids listed in {spec.classnames_file}: {unknown[:5]}; "
            f"remove stray folders or fix {spec.classnames_file}."
        )
    label_of = {w: i for i, w in enumerate(wnids)}
    cols: dict[str, list[Any]] = {"split": [], "path": [], "label": [], "classname": []}
    for split, sub in splits:
        split_dir = folder / spec.image_dir / sub
        for wnid in _subdirs(split_dir):
            if wnid not in label_of:
                raise BenchmarkError(
                    f"[{spec.name}] {split_dir / wnid} is not one of the "
                    f"{len(label_of)} class folders of split '{splits[0][0]}'"
                )
            files = _images(split_dir / wnid)
            cols["split"] += [split] * len(files)
            cols["path"] += [_rel(spec.folder, spec.image_dir, sub, wnid, f) for f in files]
            cols["label"] += [label_of[wnid]] * len(files)
            cols["classname"] += [spec.classname(names[wnid])] * len(files)
    return index_frame(**cols)


def read_numbered_folders(spec: BenchmarkSpec, data_root: Path) -> pl.DataFrame:
    """ImageNet-V2: folder ``str(i)`` -> label ``i`` -> ``i``-th line of ``classnames.txt``
    (which is in sorted-wnid order). Folders are matched as integers, never sorted as strings."""
    folder = Path(data_root) / spec.folder
    names = list(read_classnames(folder / (spec.classnames_file or "")).values())
    image_dir = folder / spec.image_dir
    cols: dict[str, list[Any]] = {"split": [], "path": [], "label": [], "classname": []}
    subs = _subdirs(image_dir)
    bad = [s for s in subs if not s.isdigit() or int(s) >= len(names)]
    if bad:
        raise BenchmarkError(
            f"[{spec.name}] folder(s) {bad[:5]} under {image_dir} are not class "
            f"numbers 0..{len(names) - 1} ({spec.classnames_file} has "
            f"{len(names)} lines)"
        )
    for sub in sorted(subs, key=int):
        files = _images(image_dir / sub)
        label = int(sub)
        cols["split"] += ["test"] * len(files)
        cols["path"] += [_rel(spec.folder, spec.image_dir, sub, f) for f in files]
        cols["label"] += [label] * len(files)
        cols["classname"] += [spec.classname(names[label])] * len(files)
    return index_frame(**cols)


READERS: dict[str, Callable[[BenchmarkSpec, Path], pl.DataFrame]] = {
    "coop_split": read_coop_split,
    "fgvc": read_fgvc,
    "wnid_folders": read_wnid_folders,
    "numbered_folders": read_numbered_folders,
}
