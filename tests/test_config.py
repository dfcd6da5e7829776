"""Typed configuration: impossible values are refused with the parameter's name."""

from __future__ import annotations

import pytest

from perl_pipeline.config import (
    ClipConfig,
    DataSourceConfig,
    EvalConfig,
    FewShotConfig,
    PerlConfig,
    PretrainConfig,
    ToyClipConfig,
    TrainConfig,
    check_model_settings,
)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PerlConfig(steps=-1), "perl.steps=-1"),
        (lambda: PerlConfig(rank=0), "perl.rank=0"),
        (lambda: PerlConfig(split_layer=0), "perl.split_layer=0"),
        (lambda: PerlConfig(modalities=["image", "sound"]), "unknown \\['sound'\\]"),
        (lambda: PerlConfig(modalities=["text", "text"]), "repeated"),
        (lambda: TrainConfig(batch_size=0), "training.batch_size=0"),
        (lambda: TrainConfig(crop_scale=[0.5, 0.1]), "crop_scale"),
        (lambda: TrainConfig(precision="fp16"), "precision"),
        (lambda: EvalConfig(batch_size=0), "evaluation.batch_size=0"),
        (lambda: FewShotConfig(shots=0), "few_shot.shots=0"),
        (lambda: FewShotConfig(draw="dassl"), "few_shot.draw='dassl'"),
        (lambda: PerlConfig(projector_init="zero"), "perl.projector_init='zero'"),
        (lambda: ToyClipConfig(held_out=["red dragon"]), "not a toy-world concept"),
        (lambda: ToyClipConfig(templates=["a photo."]), "concept"),
        (lambda: ToyClipConfig(shifted={"noise": 2.0}), "noise"),
        (lambda: ToyClipConfig(pairs=0), "toy_clip.pairs=0"),
        (lambda: ToyClipConfig(probe_template="a photo"), "probe_template"),
        (lambda: PretrainConfig(steps=0), "toy_clip_pretraining.steps=0"),
        (lambda: PretrainConfig(lr=0.0), "toy_clip_pretraining.lr=0.0"),
        (lambda: PretrainConfig(num_workers=-1), "toy_clip_pretraining.num_workers=-1"),
        (lambda: DataSourceConfig(kind="torrent"), "data_source.kind"),
        (lambda: DataSourceConfig(accept_checksum_mismatch=["a/b.tar"]), "data_source.accept_checksum"),
    ],
)
def test_impossible_values_name_the_parameter(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_defaults_are_coops_draw_and_pytorchs_init():
    assert FewShotConfig().draw == "coop"
    assert PerlConfig().projector_init == "default"


def test_yaml_lists_become_tuples():
    assert PerlConfig(modalities=["text"]).modalities == ("text",)
    assert TrainConfig(crop_scale=[0.5, 1.0]).crop_scale == (0.5, 1.0)
    assert DataSourceConfig(accept_checksum_mismatch=["x.tar"]).accept_checksum_mismatch == ("x.tar",)
    assert DataSourceConfig(accept_checksum_mismatch="x.tar").accept_checksum_mismatch == ("x.tar",)


def test_model_settings_are_checked_from_the_config_alone():
    check_model_settings(ClipConfig(), PerlConfig(split_layer=11))
    with pytest.raises(ValueError, match="perl.split_layer=12 is outside 1..11"):
        check_model_settings(ClipConfig(), PerlConfig(split_layer=12))
    with pytest.raises(ValueError, match="not an open_clip model config"):
        check_model_settings(ClipConfig(model_name="ViT-Imaginary"), PerlConfig())
