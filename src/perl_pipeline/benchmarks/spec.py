"""The 15 CoOp benchmarks as data (``BenchmarkSpec``).

Each benchmark is one ``<name>.benchmark`` block of ``conf/base/parameters_benchmarks.yml``, read by
:meth:`BenchmarkSpec.from_params`; its ``layout`` names the module of
:mod:`perl_pipeline.benchmarks.layouts` that reads a prepared copy and writes its miniature. Label
order comes from the split file or the official meta files, never from sorting class names
(docs/method.md §6.1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from pydantic.dataclasses import dataclass

from perl_pipeline.config import STRICT, ConfigError, build

SPLITS = ("train", "val", "test")
WNID_PATTERN = re.compile(r"n\d{8}")


class BenchmarkError(Exception):
    """Base class of every data-layer error that names a benchmark and how to fix it."""


@dataclass(frozen=True, config=STRICT)  # checked as it is made (config.build)
class Source:
    """One downloadable (or user-supplied) file of a benchmark: ``provides`` are the paths whose
    presence means it is in place (default: ``filename`` for files); ``urls`` are tried in order,
    then ``gdrive_id``; an ``optional`` source never blocks preparation."""

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


@dataclass(frozen=True, config=STRICT)
class MoveStep:
    """Move ``src`` into ``dst``, merging folders: hoist ``dtd/dtd/``, rename ``sketch/``."""

    src: str
    dst: str


@dataclass(frozen=True, config=STRICT)
class UnpackStep:
    """Extract every archive matching the glob ``archives`` into ``to`` (``{stem}`` allowed); delete it."""

    archives: str
    to: str


@dataclass(frozen=True, config=STRICT)
class ImageNetValStep:
    """Sort ImageNet's flat validation images in ``dir`` into wnid folders (devkit or mapping file)."""

    dir: str
    devkit: str = "ILSVRC2012_devkit_t12.tar.gz"
    mapping: str = "val_wnids.txt"


ArrangeStep = MoveStep | UnpackStep | ImageNetValStep
ARRANGE_STEPS: dict[str, type] = {"move": MoveStep, "unpack": UnpackStep, "imagenet_val": ImageNetValStep}


@dataclass(frozen=True, config=STRICT)
class Miniature:
    """How the benchmark's miniature names its classes and files (its ``miniature`` block):
    ``files`` formats :data:`~perl_pipeline.benchmarks.layouts.base.FILE_FIELDS` under a class's
    folder; ``classes`` maps the first real classes' keys on disk to names, in label order;
    ``synthetic_*`` name classes beyond them and ``toy_key`` the toy-world concepts;
    ``subset_stride`` > 1 takes every stride-th class of a longer ``classnames.txt`` (ImageNet-A/-R)."""

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


@dataclass(frozen=True, config=STRICT)
class BenchmarkSpec:
    """Everything the data layer knows about one benchmark (one ``<name>.benchmark`` block). Paths
    are relative to ``folder`` (under ``data_root``); ``manual`` says what to do when nothing
    downloads; ``split_seed`` seeds a split the layout makes itself (``image_folder``)."""

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
        """Build and validate a spec from a parameters mapping (ConfigError names the key)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"benchmark parameters must be a mapping, got {type(d).__name__}")
        where = f"benchmark '{d.get('name', '<unnamed>')}'"
        from perl_pipeline.benchmarks.layouts import LAYOUTS  # the layouts import this module

        layout = LAYOUTS.get(d["layout"]) if isinstance(d.get("layout"), str) else None
        d = {**(layout.defaults if layout else {}), **d}  # what a block in this layout may leave out
        sources = _as_list(d.get("sources", []), f"{where}: key 'sources'")
        arrange = _as_list(d.get("arrange", []), f"{where}: key 'arrange'")
        nested = {
            "sources": tuple(build(Source, s, f"{where}: sources[{i}]") for i, s in enumerate(sources)),
            "arrange": tuple(_arrange_step(s, f"{where}: arrange[{i}]") for i, s in enumerate(arrange)),
        }
        if d.get("miniature") is not None:
            nested["miniature"] = build(Miniature, d["miniature"], f"{where}: miniature")
        spec = build(cls, {**d, **nested}, where)
        spec._validate(where)
        return spec

    def _validate(self, where: str) -> None:
        from perl_pipeline.benchmarks.layouts import LAYOUTS

        def fail(key: str, problem: str) -> None:
            raise ConfigError(f"{where}: key '{key}' {problem}")

        if self.layout not in LAYOUTS:
            fail("layout", f"is {self.layout!r}, not one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[self.layout]
        sized_later = layout.sizes_from_split_file and not self.split_sizes and self.num_classes == 0
        if self.num_classes < 1 and not sized_later:
            fail("num_classes", f"must be positive, got {self.num_classes}")
        if not ("test" in self.split_sizes and set(self.split_sizes) <= set(SPLITS)) and not sized_later:
            fail("split_sizes", f"must name a 'test' split and only {SPLITS}; got {sorted(self.split_sizes)}")
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
    args = {k: v for k, v in d.items() if k != "op"}
    return build(ARRANGE_STEPS[d["op"]], args, f"{where} (op {d['op']})")
