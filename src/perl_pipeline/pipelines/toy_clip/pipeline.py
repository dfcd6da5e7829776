"""toy_clip: pairs -> pretraining -> probe (run it to rebuild the shipped PERL-Toy-ViT weights)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from perl_pipeline.pipelines.toy_clip.nodes import make_pretraining_pairs, pretrain_toy_clip, probe_toy_clip


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(make_pretraining_pairs, "params:toy_clip", "toy_clip.pairs", name="make_pretraining_pairs"),
            Node(
                pretrain_toy_clip,
                ["toy_clip.pairs", "params:toy_clip", "params:toy_clip_pretraining", "params:device"],
                ["toy_clip.weights", "toy_clip.pretraining_record"],
                name="pretrain_toy_clip",
            ),
            Node(
                probe_toy_clip,
                ["toy_clip.weights", "params:toy_clip", "params:device"],
                "toy_clip.metrics",
                name="probe_toy_clip",
            ),
        ],
        tags=["toy_clip"],
    )
