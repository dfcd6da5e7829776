"""The toy world: concepts, scenes, captions and rendering are deterministic and show their content."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from perl_pipeline.toy import world as toy_world
from perl_pipeline.toy.world import CaptionStyle, RenderedScenes, Shift

SHIFTED = Shift(backgrounds=toy_world.SHIFTED_BACKGROUNDS, noise=0.1, occlusion=1.0)


def _scene(**overrides) -> dict:
    scene = {
        "colour": "red",
        "shape": "triangle",
        "size": "large",
        "radius": 0.3,
        "x": 0.5,
        "y": 0.5,
        "angle": 0.0,
        "background": "plain",
        "seed": 3,
    }
    return {**scene, **overrides}


def test_concepts_are_every_colour_shape_pair() -> None:
    names = toy_world.concepts()
    assert len(names) == len(set(names)) == len(toy_world.COLOURS) * len(toy_world.SHAPES) == 64
    assert names[:2] == ["red circle", "red square"]
    assert toy_world.split_concept("cyan hexagon") == ("cyan", "hexagon")


@pytest.mark.parametrize("bad", ["red", "red dragon", "mauve circle", "circle red"])
def test_unknown_concepts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a toy-world concept"):
        toy_world.split_concept(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backgrounds": ["lava"]}, "backgrounds"),
        ({"backgrounds": []}, "backgrounds"),
        ({"noise": 1.5}, "noise"),
        ({"occlusion": -0.1}, "occlusion"),
    ],
)
def test_impossible_shifts_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shift(**kwargs)


def test_scenes_are_seeded_and_use_only_the_given_concepts() -> None:
    chosen = ["red circle", "blue star"]
    a = toy_world.sample_scenes(chosen, 200, Shift(), seed=1)
    assert a.equals(toy_world.sample_scenes(chosen, 200, Shift(), seed=1))
    assert not a.equals(toy_world.sample_scenes(chosen, 200, Shift(), seed=2))
    assert set(zip(a["colour"], a["shape"], strict=True)) == {("red", "circle"), ("blue", "star")}
    assert set(a["background"]) <= set(toy_world.BACKGROUNDS)
    # every shape lies inside the frame
    assert (a["x"] - a["radius"] > 0).all() and (a["x"] + a["radius"] < 1).all()
    assert (a["y"] - a["radius"] > 0).all() and (a["y"] + a["radius"] < 1).all()


def test_captions_name_what_is_visible() -> None:
    scenes = toy_world.sample_scenes(["green ring"], 50, Shift(), seed=0)
    style = CaptionStyle(("a {size} {concept} on a {background} background, {position}.",))
    texts = toy_world.captions(scenes, style, seed=0)
    for row, text in zip(scenes.iter_rows(named=True), texts, strict=True):
        assert f"{row['size']} green ring on a {row['background']} background" in text
    assert texts == toy_world.captions(scenes, style, seed=0)
    with pytest.raises(ValueError, match="concept"):
        CaptionStyle(("a photo of something.",))


def test_render_is_deterministic_and_draws_the_shape_in_its_colour() -> None:
    image = toy_world.render(_scene(), 64, Shift(colour_jitter=0.0))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.array_equal(image, toy_world.render(_scene(), 64, Shift(colour_jitter=0.0)))
    centre = image[30:34, 30:34].reshape(-1, 3).mean(axis=0)
    assert np.allclose(centre, np.array(toy_world.COLOURS["red"]) * 255, atol=1)  # the triangle's red
    corner = image[:4, :4].reshape(-1, 3).astype(int)
    assert (corner.max(axis=1) - corner.min(axis=1)).max() < 100  # a dull background


def test_shapes_differ_from_one_another() -> None:
    red = np.array(toy_world.COLOURS["red"]) * 255
    plain = Shift(colour_jitter=0.0)
    masks = {
        s: (np.abs(toy_world.render(_scene(shape=s), 64, plain) - red) <= 1).all(axis=-1)
        for s in toy_world.SHAPES
    }
    areas = {s: int(m.sum()) for s, m in masks.items()}
    assert all(a > 100 for a in areas.values()), areas
    for i, a in enumerate(toy_world.SHAPES):
        for b in toy_world.SHAPES[i + 1 :]:
            assert (masks[a] != masks[b]).sum() > 40, (a, b)


def test_shift_changes_the_look_not_the_content() -> None:
    red = np.array(toy_world.COLOURS["red"]) * 255
    plain = toy_world.render(_scene(), 64, Shift(colour_jitter=0.0))
    occluded = toy_world.render(_scene(), 64, Shift(colour_jitter=0.0, occlusion=1.0))
    shifted = toy_world.render(_scene(), 64, SHIFTED)
    assert np.abs(plain.astype(int) - shifted.astype(int)).mean() > 10
    # occlusion hides part of the shape, never all of it
    visible = (np.abs(occluded - red) <= 1).all(axis=-1).sum() / (np.abs(plain - red) <= 1).all(axis=-1).sum()
    assert 0.2 < visible < 1.0


def test_rendered_scenes_are_clip_normalised_tensors() -> None:
    scenes = toy_world.sample_scenes(["pink cross"], 3, Shift(), seed=0)
    data = RenderedScenes(scenes, torch.arange(3), 64, Shift())
    image, target = data[1]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and int(target) == 1
    assert -2.0 < image.min() < image.max() < 2.2
    with pytest.raises(ValueError, match="3 scenes but 2 targets"):
        RenderedScenes(scenes, torch.arange(2), 64, Shift())


def test_scene_table_columns() -> None:
    scenes = toy_world.sample_scenes(toy_world.concepts(), 5, Shift(), seed=0)
    assert scenes.columns == list(toy_world.SCENE_COLUMNS)
    assert scenes.schema["seed"] == pl.Int64


def test_colour_cast_turns_hues_around_the_grey_axis() -> None:
    scene = _scene(background="plain")
    cast = toy_world.render(scene, 64, Shift(colour_jitter=0.0, hue_rotation=120.0))
    red = np.array(toy_world.COLOURS["red"]) * 255
    # a third of a turn maps R -> G -> B -> R: the red triangle comes out green
    assert np.allclose(cast[30:34, 30:34].reshape(-1, 3).mean(axis=0), red[[2, 0, 1]], atol=1.5)
    with pytest.raises(ValueError, match="hue_rotation"):
        Shift(hue_rotation=200.0)
