"""Tiny copies of the benchmarks in their REAL on-disk layouts, for demos and tests.

:func:`write_miniature` writes a few small images per class (class-dependent colours, so a model
can actually learn something) with the real folder structure, file naming and split/meta file
formats, including each dataset's quirks:

* Caltech101: capitalised ``Faces``/``Leopards``/``Motorbikes`` first in label order, renamed
  (``Faces`` -> ``face``), and ``BACKGROUND_Google``/``Faces_easy`` folders on disk but not in
  the split file;
* StanfordCars: paths relative to the dataset folder (``cars_train/00001.jpg``), year-first names;
* SUN397: ``a/apartment_building/outdoor`` folders -> ``outdoor apartment_building``;
* EuroSAT: ``AnnualCrop`` folders -> ``Annual Crop Land``; UCF101: ``Apply_Eye_Makeup`` folders
  with ``v_ApplyEyeMakeup_gXX_cYY.jpg`` frames;
* FGVC: ``variants.txt`` order with names holding spaces and slashes (``F/A-18``);
* ImageNet: wnid folders + ``classnames.txt``; V2: numbered folders (more than 10, so string
  sorting would be wrong); A/R: a subset of the wnids of a larger ``classnames.txt``.

The returned spec has ``num_classes``/``split_sizes`` set to the miniature's, so
:func:`~perl_pipeline.benchmarks.validate.validate_index` passes on it.

With ``world`` set, the images come from the toy world (:mod:`perl_pipeline.toy.world`) under
that shift and the classes are toy-world concepts ("red triangle"), chosen per benchmark; the
layout, the file naming and the split/meta files stay the benchmark's own.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from perl_pipeline.benchmarks.spec import (
    FGVC_SPLIT_FILE,
    FGVC_VARIANTS_FILE,
    BenchmarkSpec,
)
from perl_pipeline.toy import world as toy_world

logger = logging.getLogger(__name__)

MARKER = ".perl-miniature.json"
DEFAULT_PER_CLASS = {"train": 4, "val": 2, "test": 3}
DEFAULT_MAX_CLASSES = 12

Key = tuple[str, str]  # (raw key on disk, class name in the index)


# --------------------------------------------------------------------------------------------
# Real class names, in each dataset's real label order (the first few classes)
# --------------------------------------------------------------------------------------------


def _year_first(name: str) -> str:
    *model, year = name.split(" ")
    return " ".join([year, *model])


def _sun_name(key: str) -> str:
    return " ".join(key.split("/")[1:][::-1])


_CALTECH = [
    ("Faces", "face"),
    ("Leopards", "leopard"),
    ("Motorbikes", "motorbike"),
    ("accordion", "accordion"),
    ("airplanes", "airplane"),
    ("anchor", "anchor"),
    ("ant", "ant"),
    ("barrel", "barrel"),
    ("bass", "bass"),
    ("beaver", "beaver"),
    ("binocular", "binocular"),
    ("bonsai", "bonsai"),
]
_PETS = [
    (k, k.lower())
    for k in (
        "Abyssinian",
        "american_bulldog",
        "american_pit_bull_terrier",
        "basset_hound",
        "beagle",
        "Bengal",
        "Birman",
        "Bombay",
        "boxer",
        "British_Shorthair",
        "chihuahua",
        "Egyptian_Mau",
    )
]
_CARS = [
    (k, _year_first(k))
    for k in (
        "AM General Hummer SUV 2000",
        "Acura RL Sedan 2012",
        "Acura TL Sedan 2012",
        "Acura TL Type-S 2008",
        "Acura TSX Sedan 2012",
        "Acura Integra Type R 2001",
        "Acura ZDX Hatchback 2012",
        "Aston Martin V8 Vantage Convertible 2012",
        "Aston Martin V8 Vantage Coupe 2012",
        "Aston Martin Virage Convertible 2012",
        "Aston Martin Virage Coupe 2012",
        "Audi RS 4 Convertible 2008",
    )
]
_FLOWERS = [
    (str(i), n)
    for i, n in enumerate(
        (
            "pink primrose",
            "hard-leaved pocket orchid",
            "canterbury bells",
            "sweet pea",
            "english marigold",
            "tiger lily",
            "moon orchid",
            "bird of paradise",
            "monkshood",
            "globe thistle",
            "snapdragon",
            "colt's foot",
        ),
        1,
    )
]
_FOOD = [
    (k, k)
    for k in (
        "apple_pie",
        "baby_back_ribs",
        "baklava",
        "beef_carpaccio",
        "beef_tartare",
        "beet_salad",
        "beignets",
        "bibimbap",
        "bread_pudding",
        "breakfast_burrito",
        "bruschetta",
        "caesar_salad",
    )
]
_SUN = [
    (k, _sun_name(k))
    for k in (
        "a/abbey",
        "a/airplane_cabin",
        "a/airport_terminal",
        "a/alley",
        "a/amphitheater",
        "a/amusement_arcade",
        "a/amusement_park",
        "a/anechoic_chamber",
        "a/apartment_building/outdoor",
        "a/apse/indoor",
        "a/aquarium",
        "a/aqueduct",
    )
]
_DTD = [
    (k, k)
    for k in (
        "banded",
        "blotchy",
        "braided",
        "bubbly",
        "bumpy",
        "chequered",
        "cobwebbed",
        "cracked",
        "crosshatched",
        "crystalline",
        "dotted",
        "fibrous",
    )
]
_EUROSAT = [
    ("AnnualCrop", "Annual Crop Land"),
    ("Forest", "Forest"),
    ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
    ("Highway", "Highway or Road"),
    ("Industrial", "Industrial Buildings"),
    ("Pasture", "Pasture Land"),
    ("PermanentCrop", "Permanent Crop Land"),
    ("Residential", "Residential Buildings"),
    ("River", "River"),
    ("SeaLake", "Sea or Lake"),
]
_UCF = [
    (k, k)
    for k in (
        "Apply_Eye_Makeup",
        "Apply_Lipstick",
        "Archery",
        "Baby_Crawling",
        "Balance_Beam",
        "Band_Marching",
        "Baseball_Pitch",
        "Basketball",
        "Basketball_Dunk",
        "Bench_Press",
        "Biking",
        "Billiards",
    )
]
_FGVC = [
    (k, k)
    for k in (
        "707-320",
        "727-200",
        "A300B4",
        "ATR-42",
        "An-12",
        "BAE 146-200",
        "Boeing 717",
        "CRJ-200",
        "Cessna 172",
        "F-16A/B",
        "F/A-18",
        "Yak-42",
    )
]
_IMAGENET = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich"),
    ("n01530575", "brambling"),
    ("n01531178", "goldfinch"),
    ("n01532829", "house finch"),
    ("n01534433", "junco"),
    ("n01537544", "indigo bunting"),
    ("n01558993", "American robin"),
    ("n01560419", "bulbul"),
    ("n01580077", "jay"),
    ("n01582220", "magpie"),
    ("n01592084", "chickadee"),
    ("n01601694", "American dipper"),
    ("n01608432", "kite (bird of prey)"),
    ("n01614925", "bald eagle"),
    ("n01616318", "vulture"),
]


def _plain(i: int) -> Key:
    return f"extra_class_{i:03d}", f"extra_class_{i:03d}"


def _synthetic_wnid(i: int) -> Key:
    return f"n{90_000_000 + i:08d}", f"extra class {i:03d}"  # sorts after every real wnid


@dataclass(frozen=True)
class _Style:
    """How one dataset names its classes and files.

    ``path`` is formatted per image with: key, camel (key without ``_``), name (class name),
    i (image number within the class, 1-based), n (global image number), uid, token (16
    letters), trainval (``train`` for train/val images, else ``test``), group and clip.
    """

    classes: list[Key]
    path: str | dict[str, str]
    synthetic: Callable[[int], Key] = _plain
    extras: Callable[[Path, BenchmarkSpec, list[Key]], None] | None = None
    subset_stride: int = 1  # >1: class folders are every stride-th entry of classnames.txt


def _flower_key(i: int) -> Key:
    return str(i + 1), f"extra flower {i:03d}"


def _caltech_extras(folder: Path, spec: BenchmarkSpec, classes: list[Key]) -> None:
    for dropped in ("BACKGROUND_Google", "Faces_easy"):  # on disk, never in the split file
        _save(_colour_image((128, 128, 128), 0, 16), folder / spec.image_dir / dropped / "image_0001.jpg")


def _flowers_extras(folder: Path, spec: BenchmarkSpec, classes: list[Key]) -> None:
    (folder / "cat_to_name.json").write_text(json.dumps(dict(classes), indent=4))


def _sun_extras(folder: Path, spec: BenchmarkSpec, classes: list[Key]) -> None:
    lines = "".join(f"/{key}\n" for key, _ in classes)
    (folder / spec.image_dir / "ClassName.txt").write_text(lines)


def _readme(folder: Path, spec: BenchmarkSpec, classes: list[Key]) -> None:
    (folder / spec.image_dir / "README.txt").write_text("Not a class folder; ignored.\n")


_STYLES: dict[str, _Style] = {
    "caltech101": _Style(_CALTECH, "{key}/image_{i:04d}.jpg", extras=_caltech_extras),
    "oxford_pets": _Style(_PETS, "{key}_{i}.jpg"),
    "stanford_cars": _Style(
        _CARS,
        "cars_{trainval}/{n:05d}.jpg",
        synthetic=lambda i: (f"Extra Car {i:03d} 2000", f"2000 Extra Car {i:03d}"),
    ),
    "oxford_flowers": _Style(
        _FLOWERS,
        "image_{n:05d}.jpg",
        synthetic=_flower_key,
        extras=_flowers_extras,
    ),
    "food101": _Style(_FOOD, "{key}/{uid}.jpg"),
    "sun397": _Style(
        _SUN,
        "{key}/sun_{token}.jpg",
        extras=_sun_extras,
        synthetic=lambda i: (f"e/extra_{i:03d}/indoor", f"indoor extra_{i:03d}"),
    ),
    "dtd": _Style(_DTD, "{key}/{key}_{i:04d}.jpg"),
    "eurosat": _Style(_EUROSAT, "{key}/{key}_{i}.jpg"),
    "ucf101": _Style(
        _UCF,
        "{key}/v_{camel}_g{group:02d}_c{clip:02d}.jpg",
        synthetic=lambda i: (f"Extra_Action_{i:03d}", f"Extra_Action_{i:03d}"),
    ),
    "fgvc_aircraft": _Style(_FGVC, "{uid}.jpg", synthetic=lambda i: (f"X-{i:03d}", f"X-{i:03d}")),
    "imagenet": _Style(
        _IMAGENET,
        {"train": "{key}_{n}.JPEG", "test": "ILSVRC2012_val_{n:08d}.JPEG"},
        _synthetic_wnid,
    ),
    "imagenet_sketch": _Style(_IMAGENET, "sketch_{i}.JPEG", _synthetic_wnid),
    "imagenet_a": _Style(
        _IMAGENET,
        "0.{n:06d}_{name} _ {name}_0.{i:06d}.jpg",
        _synthetic_wnid,
        extras=_readme,
        subset_stride=2,
    ),
    "imagenet_r": _Style(_IMAGENET, "art_{i}.jpg", _synthetic_wnid, extras=_readme, subset_stride=2),
    "imagenet_v2": _Style(_IMAGENET, "{token}.jpeg", _synthetic_wnid),
}


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def write_miniature(
    spec: BenchmarkSpec,
    data_root: Path | str,
    *,
    classes: int | None = None,
    per_class: dict[str, int] | None = None,
    image_size: int = 32,
    seed: int = 0,
    world: dict | None = None,
) -> BenchmarkSpec:
    """Write a tiny, real-layout copy of ``spec``'s benchmark under ``data_root / spec.folder``.

    Args:
        spec: The benchmark (its folder, image_dir, split file and layout are used as is).
        data_root: Where benchmark folders live.
        classes: Number of classes (default: ``min(spec.num_classes, 12)``); real class names
            first, then synthetic ones in the same style.
        per_class: Images per class and split (default train 4, val 2, test 3, restricted to
            the spec's splits).
        image_size: Side of the square images, in pixels.
        seed: Makes colours, tokens and line order reproducible.
        world: a :class:`~perl_pipeline.toy.world.Shift`'s fields: draw toy-world images
            and concepts instead of plain colours and the real class names.

    Returns:
        ``spec`` with ``num_classes`` and ``split_sizes`` of the miniature.

    Raises:
        ValueError: bad ``classes``/``per_class``, or an unknown benchmark name.
        FileExistsError: the folder holds something that is not a miniature (never deleted).
    """
    if spec.name not in _STYLES:
        raise ValueError(f"no miniature style for benchmark '{spec.name}' (known: {sorted(_STYLES)})")
    classes = min(spec.num_classes, DEFAULT_MAX_CLASSES) if classes is None else classes
    style = _STYLES[spec.name]
    # toy-world classes are concepts, not the dataset's: their number is the world's to limit
    most = spec.num_classes if world is None else len(toy_world.concepts()) // style.subset_stride
    if isinstance(classes, bool) or not isinstance(classes, int) or not 1 <= classes <= most:
        raise ValueError(f"[{spec.name}] classes must be 1..{most}, got {classes!r}")
    counts = _per_class(spec, per_class)
    folder = Path(data_root) / spec.folder
    _clear(folder, spec.name)
    shift = None if world is None else toy_world.Shift(**world)
    writer = _Writer(spec, folder, counts, image_size, random.Random(seed), shift)
    listed = _LAYOUT_WRITERS[spec.layout](writer, style, classes)
    if style.extras:
        style.extras(folder, spec, listed)
    (folder / MARKER).write_text(
        json.dumps(
            {
                "benchmark": spec.name,
                "classes": classes,
                "per_class": counts,
                "image_size": image_size,
                "seed": seed,
                "world": world,
            },
            indent=2,
        )
    )
    logger.info(
        "[%s] wrote a miniature with %d classes (%s per class) to %s",
        spec.name,
        classes,
        counts,
        folder,
    )
    return dataclasses.replace(
        spec, num_classes=classes, split_sizes={s: classes * k for s, k in counts.items()}
    )


def _per_class(spec: BenchmarkSpec, per_class: dict[str, int] | None) -> dict[str, int]:
    given = dict(per_class or {})
    unknown = sorted(set(given) - set(DEFAULT_PER_CLASS))
    if unknown:
        raise ValueError(
            f"[{spec.name}] per_class names unknown splits {unknown}; use {sorted(DEFAULT_PER_CLASS)}"
        )
    # splits the benchmark lacks (val for ImageNet, train for the variants) are skipped, so one
    # setting serves every benchmark
    counts = {s: given.get(s, DEFAULT_PER_CLASS[s]) for s in spec.split_sizes}
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in counts.values()):
        raise ValueError(f"[{spec.name}] per_class counts must be positive integers: {counts}")
    return counts


def _clear(folder: Path, name: str) -> None:
    """Remove a previous miniature; refuse to touch anything else."""
    if (folder / MARKER).is_file():
        shutil.rmtree(folder)
    elif folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"[{name}] {folder} exists and is not a miniature written by "
            f"write_miniature; refusing to overwrite it"
        )


# --------------------------------------------------------------------------------------------
# Writers, one per layout
# --------------------------------------------------------------------------------------------


class _Writer:
    """Shared state of one miniature: counters, colours and the per-image format fields."""

    def __init__(
        self,
        spec: BenchmarkSpec,
        folder: Path,
        counts: dict[str, int],
        image_size: int,
        rng: random.Random,
        world: toy_world.Shift | None = None,
    ) -> None:
        self.spec, self.folder, self.counts = spec, folder, counts
        self.size, self.rng, self.world = image_size, rng, world
        self.n = 0

    def classes(self, style: _Style, count: int) -> list[Key]:
        """The first `count` classes: real names then synthetic ones, or a grid of toy-world
        concepts whose on-disk keys follow the benchmark's naming (wnids, numbers, ``a/abbey``)."""
        if self.world is None:
            return [style.classes[i] if i < len(style.classes) else style.synthetic(i) for i in range(count)]
        names = toy_world.concept_grid(count, random.Random(f"{self.spec.name}:{self.rng.random()}"))
        return [(_toy_key(style, i, name), name) for i, name in enumerate(names)]

    def draw(self, hue: float, name: str, i: int) -> Image.Image:
        """One image of class `name`: a toy-world scene, or a solid colour with a lighter square."""
        if self.world is not None:
            scene = toy_world.sample_scenes([name], 1, self.world, seed=self.rng.randrange(2**31)).row(
                0, named=True
            )
            return Image.fromarray(toy_world.render(scene, self.size, self.world))
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.55 + 0.4 * self.rng.random())
        return _colour_image((int(r * 255), int(g * 255), int(b * 255)), i, self.size)

    def images(
        self, style: _Style, classes: list[Key], place: Callable[[str, int, str, str], Path]
    ) -> list[tuple[str, int, str, str]]:
        """Write every image (class-major, splits in spec order) at ``place(split, position,
        key, relpath)``; return ``(split, position, class name, relpath)`` rows."""
        rows = []
        for position, (key, name) in enumerate(classes):
            hue = position / len(classes)
            i = 0
            for split, k in self.counts.items():
                template = style.path if isinstance(style.path, str) else style.path[split]
                for _ in range(k):
                    i += 1
                    self.n += 1
                    rel = template.format(
                        key=key,
                        camel=key.replace("_", ""),
                        name=name,
                        i=i,
                        n=self.n,
                        uid=1_000_000 + self.n,
                        token=self.token(),
                        trainval="test" if split == "test" else "train",
                        group=1 + (i - 1) // 4,
                        clip=1 + (i - 1) % 4,
                    )
                    _save(self.draw(hue, name, i), place(split, position, key, rel))
                    rows.append((split, position, name, rel))
        return rows

    def token(self) -> str:
        return "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(16))


def _colour_image(colour: tuple[int, int, int], i: int, size: int) -> Image.Image:
    """A solid class colour with a lighter square whose position varies per image."""
    image = Image.new("RGB", (size, size), colour)
    side = max(size // 3, 1)
    x, y = (i * 7) % (size - side + 1), (i * 11) % (size - side + 1)
    light = (min(255, colour[0] + 90), min(255, colour[1] + 90), min(255, colour[2] + 90))
    ImageDraw.Draw(image).rectangle([x, y, x + side - 1, y + side - 1], fill=light)
    return image


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=90)


def _toy_key(style: _Style, i: int, name: str) -> str:
    """The on-disk key of toy concept `name` in a benchmark whose folders are ids or nested."""
    if style.synthetic in (_synthetic_wnid, _flower_key):
        return style.synthetic(i)[0]
    snake = name.replace(" ", "_")
    return f"{snake[0]}/{snake}" if style.classes is _SUN else snake


def _write_coop_split(w: _Writer, style: _Style, count: int) -> list[Key]:
    """Images under image_dir plus ``split_zhou_*.json`` in CoOp's format."""
    classes = w.classes(style, count)
    image_dir = w.folder / w.spec.image_dir
    rows = w.images(style, classes, lambda split, pos, key, rel: image_dir / rel)
    split: dict[str, list[list[object]]] = {s: [] for s in w.counts}
    for name, label, classname, rel in rows:
        split[name].append([rel, label, classname])
    (w.folder / (w.spec.split_file or "")).write_text(json.dumps(split, indent=4, separators=(",", ": ")))
    return classes


def _write_fgvc(w: _Writer, style: _Style, count: int) -> list[Key]:
    """``images/<id>.jpg``, ``variants.txt`` and ``images_variant_<split>.txt`` (shuffled)."""
    classes = w.classes(style, count)
    image_dir = w.folder / w.spec.image_dir
    rows = w.images(style, classes, lambda split, pos, key, rel: image_dir / rel)
    (w.folder / FGVC_VARIANTS_FILE).write_text("".join(f"{name}\n" for _, name in classes))
    for split in w.counts:
        lines = [f"{Path(rel).stem} {name}\n" for s, _, name, rel in rows if s == split]
        w.rng.shuffle(lines)
        (w.folder / FGVC_SPLIT_FILE.format(split=split)).write_text("".join(lines))
    return classes


def _write_wnid_folders(w: _Writer, style: _Style, count: int) -> list[Key]:
    """``<image_dir>/<split_dir>/<wnid>/`` folders and ``classnames.txt``. ImageNet-A/-R (200 of
    ImageNet's 1000 classes) get every other wnid of a twice-as-long classnames.txt."""
    stride = style.subset_stride
    family = w.classes(style, count * stride)
    chosen = family[stride - 1 :: stride]
    _write_classnames(w, family)
    image_dir = w.folder / w.spec.image_dir
    w.images(style, chosen, lambda split, pos, key, rel: image_dir / w.spec.split_dirs[split] / key / rel)
    return chosen


def _write_numbered_folders(w: _Writer, style: _Style, count: int) -> list[Key]:
    """``<image_dir>/<i>/`` folders; ``classnames.txt`` line i names folder i."""
    classes = w.classes(style, count)
    _write_classnames(w, classes)
    image_dir = w.folder / w.spec.image_dir
    w.images(style, classes, lambda split, pos, key, rel: image_dir / str(pos) / rel)
    return classes


def _write_classnames(w: _Writer, classes: list[Key]) -> None:
    path = w.folder / (w.spec.classnames_file or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{wnid} {name}\n" for wnid, name in classes))


_LAYOUT_WRITERS: dict[str, Callable[[_Writer, _Style, int], list[Key]]] = {
    "coop_split": _write_coop_split,
    "fgvc": _write_fgvc,
    "wnid_folders": _write_wnid_folders,
    "numbered_folders": _write_numbered_folders,
}
