"""predict: one node, `predict.adapter` (an adapter file) -> `predict.predictions` (CSV).

kedro run --pipelines predict --params "adapter=PATH,predict.images=[FOLDER]"
(settings: conf/base/parameters_predict.yml).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from perl_pipeline.pipelines._binding import stage_node
from perl_pipeline.pipelines.predict.nodes import predict_images


def create_pipeline(**kwargs) -> Pipeline:
    """The predict pipeline (not part of the protocols)."""
    node = stage_node(
        predict_images, ["adapter", "params:predict", "params:device"], "predictions", "predict"
    )
    return Pipeline([node], namespace="predict", parameters={"params:predict", "params:device"})
