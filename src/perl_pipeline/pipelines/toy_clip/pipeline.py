"""toy_clip: pairs -> pretraining -> probe (run it to rebuild the shipped PERL-Toy-ViT weights)."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from perl_pipeline.pipelines._binding import stage_node
from perl_pipeline.pipelines.toy_clip.nodes import make_pretraining_pairs, pretrain_toy_clip, probe_toy_clip


def create_pipeline(**kwargs) -> Pipeline:
    pretraining = ["toy_clip.pairs", "params:toy_clip", "params:toy_clip_pretraining", "params:device"]
    probe = ["toy_clip.weights", "params:toy_clip", "params:device"]
    made = ["toy_clip.weights", "toy_clip.pretraining_record"]
    return Pipeline(
        [
            stage_node(make_pretraining_pairs, "params:toy_clip", "toy_clip.pairs", "toy_clip"),
            stage_node(pretrain_toy_clip, pretraining, made, "toy_clip"),
            stage_node(probe_toy_clip, probe, "toy_clip.metrics", "toy_clip"),
        ]
    )
