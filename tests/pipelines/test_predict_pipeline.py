"""The predict pipeline: the catalog's adapter file and images -> one row per image."""

from __future__ import annotations

import pytest

from perl_pipeline.pipelines.predict.nodes import predict_images
from perl_pipeline.pipelines.predict.pipeline import create_pipeline
from tests.models.test_adapter import tiny_adapter
from tests.test_predict import photo


def test_the_pipeline_reads_the_adapter_and_writes_the_predictions():
    pipeline = create_pipeline()
    assert pipeline.inputs() == {"predict.adapter", "params:predict", "params:device"}
    assert pipeline.outputs() == {"predict.predictions"}


def test_predict_node_classifies_folders_and_names_skips(tmp_path, tiny_clip):
    adapter = tiny_adapter(tiny_clip).to_dict()
    for i in range(3):
        photo(tmp_path / "in" / f"{i}.png", i)
    (tmp_path / "in" / "x.txt").write_text("no")
    options = {"images": [str(tmp_path / "in")], "classes": ["cat", "dog"], "top_k": 5, "step": 0}
    table = predict_images(adapter, options, "cpu")
    assert table.height == 4 and set(table.columns) == {
        "path",
        "step",
        "class_1",
        "prob_1",
        "class_2",
        "prob_2",
        "error",
    }
    good = table.filter(table["error"] == "")
    assert good.height == 3 and set(good["class_1"]) <= {"cat", "dog"} and good["step"].to_list() == [0] * 3
    with pytest.raises(ValueError, match="outside 0..3"):
        predict_images(adapter, {**options, "step": 9}, "cpu")
    with pytest.raises(ValueError, match="no image files"):
        predict_images(adapter, {**options, "images": []}, "cpu")
