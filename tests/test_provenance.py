"""Recipes, fingerprints and the stale-artefact message."""

from __future__ import annotations

import pytest

from perl_pipeline.provenance import StaleArtefactError, check_recipe, differences, fingerprint


def test_fingerprint_is_canonical_and_changes_with_any_setting() -> None:
    recipe = {"perl": {"split_layer": 7, "modalities": ("image", "text")}, "seed": 1}
    assert fingerprint(recipe) == fingerprint(
        {"seed": 1, "perl": {"modalities": ["image", "text"], "split_layer": 7}}
    )
    assert fingerprint(recipe) != fingerprint({**recipe, "seed": 2})
    assert len(fingerprint(recipe)) == 16


def test_differences_name_every_changed_leaf_with_both_values() -> None:
    stored = {"params": {"perl": {"split_layer": 2, "steps": 4}}, "inputs": {"dtd.index": "aa"}}
    expected = {"params": {"perl": {"split_layer": 3, "steps": 4}}, "inputs": {"dtd.index": "aa", "x": "b"}}
    assert differences(stored, expected) == [
        ("inputs.x", None, "b"),
        ("params.perl.split_layer", 2, 3),
    ]
    assert differences({"a": (1, 2)}, {"a": [1, 2]}) == []  # read back from JSON, tuples are lists


def test_check_recipe_names_the_setting_both_values_and_the_fix() -> None:
    check_recipe("dtd.text_features", {"split_layer": 2}, {"split_layer": 2}, fix="unused")
    with pytest.raises(StaleArtefactError) as error:
        check_recipe(
            "dtd.text_features", {"split_layer": 2}, {"split_layer": 3}, fix="kedro run --pipelines x"
        )
    message = str(error.value)
    assert "dtd.text_features is stale" in message
    assert "split_layer: 2 when it was made, 3 now" in message
    assert message.endswith("Rebuild it: kedro run --pipelines x")
    assert error.value.changes == [("split_layer", 2, 3)]
