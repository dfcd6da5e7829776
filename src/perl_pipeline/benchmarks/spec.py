"""The 15 CoOp benchmarks as data (``BenchmarkSpec``).

A benchmark is described once, in its block of ``conf/base/parameters_benchmarks.yml``: where its
files are and come from, its protocol numbers, its title in reports and how its miniature names
classes and files. Kedro hands each ``<name>.benchmark`` block to :meth:`BenchmarkSpec.from_params`.
Its ``layout`` names the module of :mod:`perl_pipeline.benchmarks.layouts` that reads a prepared
copy into the index table (:mod:`perl_pipeline.benchmarks.index`) and writes its miniature.

Label order always comes from the split file or the official meta files, never from sorting class
names (docs/method.md §6.1): CoOp split JSONs carry their labels, FGVC uses ``variants.txt`` order, the
ImageNet family uses sorted WordNet-id folders (names from ``classnames.txt``) and ImageNet-V2 uses
folder ``i`` -> label ``i``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from perl_pipeline.config import ConfigError, check_fields

SPLITS = ("train", "val", "test")
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
class Miniature:
    """How the benchmark's miniature (:func:`~perl_pipeline.toy.miniature.write_miniature`)
    names its classes and files: its ``miniature`` block.

    Attributes:
        files: File name of one image, relative to where the layout puts a class's images (the
            image folder for ``coop_split`` and ``fgvc``, the class folder for the folder
            layouts); a format string with the fields ``key`` (the class's key on disk),
            ``camel`` (key without ``_``), ``name`` (class name), ``i`` (image number within the
            class, 1-based), ``n`` (global image number), ``uid``, ``token`` (16 letters),
            ``trainval`` (``train`` for train/val images, else ``test``), ``group`` and ``clip``.
        classes: The dataset's first classes in its real label order: key on disk -> class
            name in the index.
        files_per_split: split -> file name, replacing ``files`` for that split.
        synthetic_key, synthetic_name: Key and name of class ``i`` (0-based) beyond
            ``classes``; fields ``i``, ``number`` (i + 1) and, for the name, ``key``.
        toy_key: Key on disk of toy-world class ``i`` (a concept such as "red triangle");
            fields ``i``, ``number``, ``snake`` (the name with ``_`` for spaces) and
            ``synthetic`` (the synthetic key of ``i``).
        extras: Name of the layout's writer of extra files (see its ``extras``).
        subset_stride: Above 1, the class folders are every stride-th class of a longer
            ``classnames.txt`` (ImageNet-A/-R; layout ``wnid_folders``).
    """

    files: str
    classes: dict[str, str] = field(default_factory=dict, hash=False)
    files_per_split: dict[str, str] = field(default_factory=dict, hash=False)
    synthetic_key: str = "extra_class_{i:03d}"
    synthetic_name: str = "{key}"
    toy_key: str = "{snake}"
    extras: str | None = None
    subset_stride: int = 1

    def entry(self, i: int) -> tuple[str, str]:
        """Class ``i`` (0-based) as (key on disk, class name): from ``classes``, then synthetic."""
        if i < len(self.classes):
            return list(self.classes.items())[i]
        key = self.synthetic_key.format(i=i, number=i + 1)
        return key, self.synthetic_name.format(i=i, number=i + 1, key=key)

    def toy_entry_key(self, i: int, name: str) -> str:
        """The key on disk of toy-world class ``i`` named ``name``."""
        synthetic = self.synthetic_key.format(i=i, number=i + 1)
        return self.toy_key.format(i=i, number=i + 1, snake=name.replace(" ", "_"), synthetic=synthetic)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything the data layer knows about one benchmark (one ``<name>.benchmark`` block).

    Attributes:
        name: Benchmark name (the top-level parameters key).
        title: Its name in reports and figures (the paper's column heading).
        folder: CoOp folder name under ``data_root``; every other path is relative to it.
        layout: Which module of :mod:`perl_pipeline.benchmarks.layouts` reads (and writes) it.
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
        reported_as: Its ``dataset`` key in the paper's reported results (default: ``name``).
        miniature: How its miniature names classes and files (none: no miniature).
        split_seed: Seeds the split a layout makes itself (``image_folder``: Dassl's 50/20/30
            per class, written once to ``split_file``).
    """

    name: str
    title: str
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
    reported_as: str | None = None
    miniature: Miniature | None = field(default=None, hash=False)
    split_seed: int = 1

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
        from perl_pipeline.benchmarks.layouts import LAYOUTS  # the layouts import this module

        layout = LAYOUTS.get(d.get("layout")) if isinstance(d.get("layout"), str) else None
        if layout is not None and layout.defaults:  # what a block in this layout may leave out
            d = {**layout.defaults, **d}
        values = _checked_fields(cls, d, where, nested={"sources", "arrange", "miniature"})
        values["sources"] = tuple(
            Source(**_checked_fields(Source, s, f"{where}: sources[{i}]"))
            for i, s in enumerate(_as_list(d.get("sources", []), f"{where}: key 'sources'"))
        )
        values["arrange"] = tuple(
            _arrange_step(s, f"{where}: arrange[{i}]")
            for i, s in enumerate(_as_list(d.get("arrange", []), f"{where}: key 'arrange'"))
        )
        if d.get("miniature") is not None:
            mini = _checked_fields(Miniature, d["miniature"], f"{where}: miniature")
            values["miniature"] = Miniature(**mini)
        if values.get("layout") == "wnid_folders" and not values.get("split_dirs"):
            values["split_dirs"] = {"test": "."}
        spec = cls(**values)
        spec._validate(where)
        return spec

    def _validate(self, where: str) -> None:
        # the layout modules import this module (for BenchmarkError), so this import waits
        from perl_pipeline.benchmarks.layouts import LAYOUTS

        def fail(key: str, problem: str) -> None:
            raise ConfigError(f"{where}: key '{key}' {problem}")

        if self.layout not in LAYOUTS:
            fail("layout", f"is {self.layout!r}, not one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[self.layout]
        sized_later = layout.sizes_from_split_file and not self.split_sizes and self.num_classes == 0
        if self.num_classes < 1 and not sized_later:
            fail("num_classes", f"must be positive, got {self.num_classes}")
        bad = sorted(set(self.split_sizes) - set(SPLITS))
        if (bad or "test" not in self.split_sizes) and not sized_later:
            fail(
                "split_sizes",
                f"must name a 'test' split and only {SPLITS}; got {sorted(self.split_sizes)}",
            )
        if any(n < 1 for n in self.split_sizes.values()):
            fail("split_sizes", f"must be positive, got {self.split_sizes}")
        if self.template.count("{}") != 1:
            fail("template", f"must contain exactly one '{{}}' placeholder, got {self.template!r}")
        for key in layout.required:
            if not getattr(self, key):
                fail(key, f"is required by layout '{self.layout}'")
        if self.layout != "wnid_folders" and self.split_dirs:
            fail("split_dirs", "is only used by layout 'wnid_folders'")
        for key, problem in layout.problems(self):
            fail(key, problem)
        for i, src in enumerate(self.sources):
            if src.kind not in ("archive", "file"):
                fail(f"sources[{i}].kind", f"is {src.kind!r}, not 'archive' or 'file'")
            if src.kind == "archive" and not src.provides:
                fail(f"sources[{i}].provides", "is required for archives (what extraction yields)")
        if self.miniature is not None:
            self._validate_miniature(self.miniature, fail, layout.extras)

    def _validate_miniature(
        self, mini: Miniature, fail: Callable[[str, str], None], extras: Mapping[str, object]
    ) -> None:
        """The miniature block: known extras and splits, templates that format."""
        from perl_pipeline.benchmarks.layouts.base import FILE_FIELDS

        if mini.extras is not None and mini.extras not in extras:
            known = ", ".join(sorted(extras)) or "none"
            fail("miniature.extras", f"is {mini.extras!r}; layout '{self.layout}' has: {known}")
        unknown = sorted(set(mini.files_per_split) - set(self.split_sizes))
        if unknown:
            fail("miniature.files_per_split", f"names splits {unknown} not in split_sizes")
        if mini.subset_stride < 1 or (mini.subset_stride > 1 and self.layout != "wnid_folders"):
            fail("miniature.subset_stride", "must be 1, or above 1 only for layout 'wnid_folders'")
        templates = {
            "files": (mini.files, FILE_FIELDS),
            **{f"files_per_split.{s}": (t, FILE_FIELDS) for s, t in mini.files_per_split.items()},
            "synthetic_key": (mini.synthetic_key, {"i": 0, "number": 1}),
            "synthetic_name": (mini.synthetic_name, {"i": 0, "number": 1, "key": "k"}),
            "toy_key": (mini.toy_key, {"i": 0, "number": 1, "snake": "red_triangle", "synthetic": "k"}),
        }
        for key, (template, fields) in templates.items():
            try:
                template.format(**fields)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                fail(
                    f"miniature.{key}",
                    f"{template!r} is not a format string over the fields {sorted(fields)} ({exc!r})",
                )

    @property
    def root_paths(self) -> list[str]:
        """Paths (relative to the benchmark folder) the layout's reader cannot work without."""
        from perl_pipeline.benchmarks.layouts import LAYOUTS

        return LAYOUTS[self.layout].root_paths(self)

    @property
    def reported_name(self) -> str:
        """Its ``dataset`` key in the paper's reported results."""
        return self.reported_as or self.name

    def classname(self, raw: str) -> str:
        """Apply the loader's rename table (idempotent on already-clean names)."""
        return self.classname_fixes.get(raw, raw)


def _checked_fields(
    cls: type, d: Any, where: str, nested: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """Check a mapping against a dataclass's fields (config.check_fields, Pydantic underneath)."""
    return check_fields(cls, d, where, label=lambda key: f"{where}: key '{key}'", skip=nested)


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}={value!r}: expected a list")
    return list(value)


def _arrange_step(d: Any, where: str) -> ArrangeStep:
    if not isinstance(d, Mapping) or d.get("op") not in ARRANGE_STEPS:
        raise ConfigError(
            f"{where}: key 'op' must be one of {sorted(ARRANGE_STEPS)}, got "
            f"{d.get('op') if isinstance(d, Mapping) else d!r}"
        )
    step_cls = ARRANGE_STEPS[d["op"]]
    args = {k: v for k, v in d.items() if k != "op"}
    return step_cls(**_checked_fields(step_cls, args, f"{where} (op {d['op']})"))
