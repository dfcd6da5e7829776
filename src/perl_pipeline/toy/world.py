"""A procedurally generated image-caption world, where a small CLIP can learn zero-shot transfer.

Every image is one coloured shape (8 colours x 8 shapes, two sizes) on a textured background, its
caption naming what is visible; a :class:`Shift` (the demo's benchmarks) changes how images look,
not what they show. A scene table plus :func:`render` gives the same pixels on every machine.
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # CLIP's normalisation
from torch.utils.data import Dataset

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "green": (0.12, 0.68, 0.18),
    "blue": (0.12, 0.28, 0.92),
    "yellow": (0.96, 0.86, 0.10),
    "purple": (0.55, 0.18, 0.78),
    "orange": (0.98, 0.52, 0.06),
    "pink": (0.98, 0.56, 0.78),
    "cyan": (0.10, 0.86, 0.90),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon")
SIZES: dict[str, tuple[float, float]] = {"small": (0.15, 0.22), "large": (0.27, 0.36)}  # radius / side
BACKGROUNDS = ("plain", "striped", "dotted", "checkered", "gradient")
SHIFTED_BACKGROUNDS = ("noisy", "wavy", "blotchy")

SCENE_COLUMNS = ("colour", "shape", "size", "radius", "x", "y", "angle", "background", "seed")


def concepts() -> list[str]:
    """Every colour-shape concept, colour-major: "red circle", "red square", ..."""
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def concept_grid(count: int, rng: random.Random) -> list[str]:
    """`count` concepts from a random grid of about sqrt(count) colours x sqrt(count) shapes, in a
    random order: every class shares its colour and its shape with others, so both matter."""
    if not 1 <= count <= len(COLOURS) * len(SHAPES):
        raise ValueError(f"the toy world has {len(COLOURS) * len(SHAPES)} concepts; asked for {count}")
    colours = max(1, min(len(COLOURS), math.ceil(math.sqrt(count))))
    shapes = math.ceil(count / colours)
    if shapes > len(SHAPES):
        shapes, colours = len(SHAPES), math.ceil(count / len(SHAPES))
    grid = [f"{c} {s}" for c in rng.sample(list(COLOURS), colours) for s in rng.sample(SHAPES, shapes)]
    return rng.sample(grid, count)


def split_concept(concept: str) -> tuple[str, str]:
    """'red triangle' -> ('red', 'triangle'); raises ValueError on anything else."""
    colour, _, shape = concept.partition(" ")
    if colour not in COLOURS or shape not in SHAPES:
        shapes = f"(colours {list(COLOURS)}, shapes {list(SHAPES)})"
        raise ValueError(f"{concept!r} is not a toy-world concept '<colour> <shape>' {shapes}")
    return colour, shape


@dataclass(frozen=True)
class Shift:
    """How images are rendered, apart from their content.

    ``noise``: pixel std (values in [0, 1]); ``occlusion``: probability of a grey patch over the shape;
    ``background_saturation``: the most (the shapes' is ~0.9); ``hue_rotation``: degrees around grey.
    """

    backgrounds: tuple[str, ...] = BACKGROUNDS
    noise: float = 0.0
    occlusion: float = 0.0
    background_saturation: float = 0.25
    colour_jitter: float = 0.06
    hue_rotation: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "backgrounds", tuple(self.backgrounds))
        if not -180.0 <= self.hue_rotation <= 180.0:
            raise ValueError(f"shift.hue_rotation must be in [-180, 180] degrees, got {self.hue_rotation}")
        known = BACKGROUNDS + SHIFTED_BACKGROUNDS
        unknown = [b for b in self.backgrounds if b not in known]
        if not self.backgrounds or unknown:
            raise ValueError(f"shift.backgrounds must be a non-empty subset of {list(known)}, got {unknown}")
        for name in ("noise", "occlusion", "background_saturation", "colour_jitter"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"shift.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class CaptionStyle:
    """Caption templates; fields {concept}, {size}, {background}, {position} are filled per image."""

    templates: tuple[str, ...] = ("a photo of a {size} {concept} on a {background} background.",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "templates", tuple(self.templates))
        if not self.templates or any("{concept}" not in t for t in self.templates):
            raise ValueError("every caption template must contain {concept}")


def sample_scenes(concept_list: Sequence[str], n: int, shift: Shift, seed: int) -> pl.DataFrame:
    """`n` scenes (rows of :data:`SCENE_COLUMNS`), concepts drawn uniformly from `concept_list`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for c in concept_list:
        split_concept(c)
    rng = np.random.default_rng(seed)
    which = rng.integers(len(concept_list), size=n)
    colour, shape = zip(*(split_concept(concept_list[i]) for i in which), strict=True) if n else ((), ())
    size = rng.choice(list(SIZES), size=n)
    low = np.array([SIZES[s][0] for s in size])
    high = np.array([SIZES[s][1] for s in size])
    radius = low + (high - low) * rng.random(n)
    margin = radius + 0.02
    x = margin + (1 - 2 * margin) * rng.random(n)
    y = margin + (1 - 2 * margin) * rng.random(n)
    return pl.DataFrame(
        {
            "colour": list(colour),
            "shape": list(shape),
            "size": size.tolist(),
            "radius": radius,
            "x": x,
            "y": y,
            "angle": rng.uniform(-0.2, 0.2, n),
            "background": rng.choice(list(shift.backgrounds), size=n).tolist(),
            "seed": rng.integers(2**31, size=n),
        },
        schema_overrides={"seed": pl.Int64},
    )


def captions(scenes: pl.DataFrame, style: CaptionStyle, seed: int) -> list[str]:
    """One caption per scene row from one of the style's templates, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    texts = []
    for scene in scenes.iter_rows(named=True):
        template = style.templates[int(rng.integers(len(style.templates)))]
        concept, position = f"{scene['colour']} {scene['shape']}", _position(scene["x"], scene["y"])
        texts.append(template.format(**scene, concept=concept, position=position))
    return texts


def _position(x: float, y: float) -> str:
    dx, dy = x - 0.5, y - 0.5
    if max(abs(dx), abs(dy)) < 0.12:
        return "centre"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


class RenderedScenes(Dataset):
    """(image, target) pairs: scene rows rendered on the fly, CLIP-normalised (target: tokens or a label)."""

    def __init__(self, scenes: pl.DataFrame, targets: torch.Tensor, size: int, shift: Shift):
        if scenes.height != len(targets):
            raise ValueError(f"{scenes.height} scenes but {len(targets)} targets")
        self.rows = scenes.select(SCENE_COLUMNS).to_dicts()
        self.targets, self.size, self.shift = targets, size, shift
        self.mean = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(render(self.rows[i], self.size, self.shift)).permute(2, 0, 1)
        return (pixels.float() / 255 - self.mean) / self.std, self.targets[i]


def render(scene: Mapping, size: int, shift: Shift) -> np.ndarray:
    """The image of one scene row: uint8 [size, size, 3]."""
    rng = np.random.default_rng(int(scene["seed"]))
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size  # pixel centres in [0, 1]
    image = _background(scene["background"], xx, yy, rng, shift.background_saturation)
    r = float(scene["radius"])
    c, s = np.cos(scene["angle"]), np.sin(scene["angle"])
    u = (c * (xx - scene["x"]) + s * (yy - scene["y"])) / r  # shape coordinates, radius 1
    v = (-s * (xx - scene["x"]) + c * (yy - scene["y"])) / r
    mask = _SHAPE_MASKS[scene["shape"]](u, v)
    colour = np.clip(np.array(COLOURS[scene["colour"]]) + rng.normal(0, shift.colour_jitter, 3), 0, 1)
    image = np.where(mask[..., None], colour, image)
    if rng.random() < shift.occlusion:
        image = _occlude(image, xx, yy, scene, rng)
    if shift.hue_rotation:
        image = image @ _hue_rotation(shift.hue_rotation).T
    if shift.noise > 0:
        image = image + rng.normal(0, shift.noise, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _hue_rotation(degrees: float) -> np.ndarray:
    """The 3x3 rotation of RGB space by `degrees` around the grey axis (1, 1, 1) / sqrt(3)."""
    theta = np.deg2rad(degrees)
    k = np.ones(3) / np.sqrt(3)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * np.outer(k, k)


def _dull(rng: np.random.Generator, saturation: float) -> np.ndarray:
    hue, sat, val = rng.random(), saturation * rng.random(), 0.3 + 0.45 * rng.random()
    return np.array(colorsys.hsv_to_rgb(hue, sat, val))


def _background(
    kind: str, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator, sat: float
) -> np.ndarray:
    a, b = _dull(rng, sat), _dull(rng, sat)
    period = rng.uniform(0.08, 0.2)
    phase = rng.random()
    if kind == "plain":
        t = np.zeros_like(xx)
    elif kind == "striped":
        theta = rng.uniform(0, np.pi)
        t = (np.floor((np.cos(theta) * xx + np.sin(theta) * yy) / period + phase) % 2).astype(float)
    elif kind == "dotted":
        gx, gy = (xx / period + phase) % 1 - 0.5, (yy / period + phase) % 1 - 0.5
        t = (gx**2 + gy**2 < 0.08).astype(float)
    elif kind == "checkered":
        t = ((np.floor(xx / period + phase) + np.floor(yy / period + phase)) % 2).astype(float)
    elif kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (np.cos(theta) * (xx - 0.5) + np.sin(theta) * (yy - 0.5)), 0, 1)
    elif kind == "noisy":
        t = rng.random(xx.shape)
    elif kind == "wavy":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx / period + 0.3 * np.sin(2 * np.pi * yy / (2 * period))))
    elif kind == "blotchy":
        coarse = rng.random((6, 6))
        i = np.minimum((yy * 5).astype(int), 4)
        j = np.minimum((xx * 5).astype(int), 4)
        fy, fx = yy * 5 - i, xx * 5 - j
        t = (
            coarse[i, j] * (1 - fy) * (1 - fx)
            + coarse[i + 1, j] * fy * (1 - fx)
            + coarse[i, j + 1] * (1 - fy) * fx
            + coarse[i + 1, j + 1] * fy * fx
        )
    else:
        raise ValueError(f"unknown background {kind!r}")
    return a + (b - a) * t[..., None]


def _occlude(image: np.ndarray, xx: np.ndarray, yy: np.ndarray, scene: Mapping, rng: np.random.Generator):
    """A grey patch over one side of the shape, hiding up to about half of it."""
    r = float(scene["radius"])
    w, h = rng.uniform(0.8, 1.4) * r, rng.uniform(0.8, 1.4) * r
    cx = scene["x"] + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9) * r
    cy = scene["y"] + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9) * r
    inside = (np.abs(xx - cx) < w / 2) & (np.abs(yy - cy) < h / 2)
    return np.where(inside[..., None], rng.uniform(0.35, 0.65), image)


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    radius, theta = np.hypot(u, v), np.arctan2(v, u) + np.pi / 2
    return radius <= 0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 2


_SHAPE_MASKS = {
    "circle": lambda u, v: u**2 + v**2 <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.82,
    "triangle": lambda u, v: (v <= 0.6) & (np.abs(u) <= (v + 1.0) * 0.62),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
    "cross": lambda u, v: (
        ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)) & (np.maximum(np.abs(u), np.abs(v)) <= 0.95)
    ),
    "ring": lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.36),
    "star": _star,
    "hexagon": lambda u, v: np.maximum(np.abs(u) * 0.866 + np.abs(v) * 0.5, np.abs(v)) <= 0.9,
}
