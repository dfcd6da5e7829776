"""The ablation sweep's arguments (the sweep itself runs in tests/pipelines/test_ablation_sweep.py)."""

from __future__ import annotations

import pytest

from perl_pipeline.sweep import nested, parse_setting


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
