"""The ablation sweep's arguments (the sweep itself runs in tests/pipelines/test_ablation_sweep.py)."""

from __future__ import annotations

import polars as pl
import pytest

from perl_pipeline.sweep import merged, nested, parse_fixed, parse_setting, to_markdown


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("perl.steps=0,1,2", ("perl.steps", [0, 1, 2])),
        (
            "perl.modalities=[image],[text],[image,text]",
            ("perl.modalities", [["image"], ["text"], ["image", "text"]]),
        ),
        ("training.lr=1e-3", ("training.lr", [1e-3])),
        ("perl.share_projector=false", ("perl.share_projector", [False])),
    ],
)
def test_settings_parse_as_yaml_values(argument: str, expected: tuple) -> None:
    assert parse_setting(argument) == expected


@pytest.mark.parametrize("bad", ["perl.steps", "=1", "perl.steps=", "perl.modalities=[image"])
def test_malformed_settings_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_setting(bad)


def test_nested_keys_become_runtime_parameters() -> None:
    assert nested("perl.steps", 2) == {"perl": {"steps": 2}}


def test_fixed_settings_merge_under_every_row() -> None:
    fixed = [parse_fixed("training.lr=1e-4"), parse_fixed("training.epochs=1")]
    assert fixed == [("training.lr", 1e-4), ("training.epochs", 1)]
    base: dict = {}
    for key, value in fixed:
        base = merged(base, nested(key, value))
    row = merged(base, nested("perl.projector_init", "zero_out"))
    assert row == {"training": {"lr": 1e-4, "epochs": 1}, "perl": {"projector_init": "zero_out"}}
    assert base == {"training": {"lr": 1e-4, "epochs": 1}}  # not modified by the merge
    assert merged(base, nested("training.lr", 2e-2))["training"] == {"lr": 2e-2, "epochs": 1}


@pytest.mark.parametrize(
    ("bad", "message"), [("training.lr=1e-4,1e-3", "one value"), ("few_shot.draw=sorted", "parameters.yml")]
)
def test_fixed_settings_are_single_and_after_preparation(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fixed(bad)


def test_the_table_names_the_fixed_settings() -> None:
    row = {
        "parameter": "perl.projector_init",
        "value": "zero_out",
        "trainable_parameters": 802,
        **{k: 50.0 for k in ("base", "novel", "hm", "hm_of_means", "zeroshot_base", "zeroshot_novel")},
        **{"zeroshot_hm": 50.0, "image_alignment": 0.99, "text_alignment": 0.98},
    }
    text = to_markdown(pl.DataFrame([row]), [("training.lr", 1e-4), ("training.epochs", 1)])
    assert "Every row also sets training.lr=0.0001, training.epochs=1." in text
    assert "Every row also sets" not in to_markdown(pl.DataFrame([row]))
