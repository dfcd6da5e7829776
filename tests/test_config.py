"""Typed configuration: impossible values are refused with the parameter's name."""

from __future__ import annotations

import os

import pytest

from perl_pipeline.config import (
    ClipConfig,
    ConfigError,
    DataSourceConfig,
    EvalConfig,
    FewShotConfig,
    PerlConfig,
    TrainConfig,
)
from perl_pipeline.models.factory import check_model_settings
from perl_pipeline.toy.config import PretrainConfig, ToyClipConfig


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PerlConfig(steps=-1), "perl.steps=-1"),
        (lambda: PerlConfig(rank=0), "perl.rank=0"),
        (lambda: PerlConfig(split_layer=-1), "perl.split_layer=-1 must be >= 0"),
        (
            lambda: PerlConfig(split_layer=[7, 3]),
            "perl.split_layer=\\[7, 3\\]: expected one depth or a strictly",
        ),
        (lambda: PerlConfig(split_layer=[3, 3]), "perl.split_layer=\\[3, 3\\]"),
        (lambda: PerlConfig(split_layer=[]), "perl.split_layer=\\[\\]"),
        (
            lambda: PerlConfig(split_layer="7,9"),
            "perl.split_layer='7,9': expected an integer or a list of int",
        ),
        (lambda: PerlConfig(split_layer=2.5), "perl.split_layer=2.5: expected an integer or a list of int"),
        (lambda: PerlConfig(split_layer=[3, True]), "perl.split_layer"),
        (lambda: PerlConfig(share_layers="no"), "perl.share_layers='no': expected true/false"),
        (lambda: PerlConfig(modalities=["image", "sound"]), "unknown \\['sound'\\]"),
        (lambda: PerlConfig(modalities=["text", "text"]), "repeated"),
        (lambda: TrainConfig(batch_size=0), "training.batch_size=0"),
        (lambda: TrainConfig(crop_scale=[0.5, 0.1]), "crop_scale"),
        (lambda: TrainConfig(precision="fp16"), "precision"),
        (lambda: EvalConfig(batch_size=0), "evaluation.batch_size=0"),
        (lambda: EvalConfig(num_workers="many"), "evaluation.num_workers='many'"),
        (lambda: EvalConfig(num_workers=-1), "evaluation.num_workers=-1"),
        (lambda: EvalConfig(jacobian_images=-1), "evaluation.jacobian_images=-1 must be >= 0"),
        (lambda: TrainConfig(seeds_together="yes"), "training.seeds_together='yes': expected true/false"),
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
    assert PerlConfig(split_layer=[3, 7, 11]).split_layer == (3, 7, 11)
    assert PerlConfig(split_layer=[7]).split_layer == 7  # one depth is that depth
    assert PerlConfig(split_layer=0).split_layer == 0  # PERL-Early
    assert PerlConfig(split_layer="7 9 11").split_layer == (7, 9, 11)  # kedro run --params splits at commas
    assert PerlConfig(split_layer="7").split_layer == 7
    assert TrainConfig(crop_scale=[0.5, 1.0]).crop_scale == (0.5, 1.0)
    assert DataSourceConfig(accept_checksum_mismatch=["x.tar"]).accept_checksum_mismatch == ("x.tar",)
    assert DataSourceConfig(accept_checksum_mismatch="x.tar").accept_checksum_mismatch == ("x.tar",)


def test_model_settings_are_checked_from_the_config_alone():
    check_model_settings(ClipConfig(), PerlConfig(split_layer=11))
    check_model_settings(ClipConfig(), PerlConfig(split_layer=[0, 7, 11]))
    with pytest.raises(ValueError, match="perl.split_layer=12 is outside 0..11"):
        check_model_settings(ClipConfig(), PerlConfig(split_layer=12))
    with pytest.raises(ValueError, match="perl.split_layer=\\[7, 9, 12\\] is outside 0..11"):
        check_model_settings(ClipConfig(), PerlConfig(split_layer=[7, 9, 12]))
    with pytest.raises(ValueError, match="not an open_clip model config"):
        check_model_settings(ClipConfig(model_name="ViT-Imaginary"), PerlConfig())


# -- one checker, driven by the type hints ------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        # the cases a user met
        (lambda: TrainConfig(batch_size=2.5), "training.batch_size=2.5: expected an integer >= 1"),
        (lambda: TrainConfig(lr="fast"), "training.lr='fast': expected a number > 0"),
        (lambda: PerlConfig(share_projector="maybe"), "perl.share_projector='maybe': expected true/false"),
        (lambda: PerlConfig(steps=1.5), "perl.steps=1.5: expected an integer"),
        # one per field type
        (lambda: PerlConfig(share_projector=1), "perl.share_projector=1: expected true/false"),
        (lambda: FewShotConfig(shots=True), "few_shot.shots=True: expected an integer >= 1"),
        (lambda: ClipConfig(model_name=""), "clip.model_name='': expected a non-empty string"),
        (lambda: ClipConfig(pretrained=3), "clip.pretrained=3: expected a non-empty string or null"),
        (
            lambda: TrainConfig(precision="fp16"),
            "training.precision='fp16': expected one of 'auto', 'bf16', 'fp32'",
        ),
        (lambda: EvalConfig(precision=None), "evaluation.precision=None: expected one of"),
        (lambda: TrainConfig(crop_scale=0.5), "training.crop_scale=0.5: expected a list of 2 values"),
        (lambda: TrainConfig(crop_scale=[0.5]), "training.crop_scale=\\[0.5\\]: expected a list of 2"),
        (lambda: TrainConfig(crop_scale=[0.0, 1.0]), "training.crop_scale\\[0\\]=0.0 must be > 0"),
        (lambda: PerlConfig(modalities="image"), "perl.modalities='image': expected a list of values"),
        (lambda: DataSourceConfig(miniature=[1]), "data_source.miniature=\\[1\\]: expected a mapping"),
        (lambda: ToyClipConfig(held_out=[3]), "toy_clip.held_out\\[0\\]=3: expected a non-empty string"),
        (lambda: PretrainConfig(weight_decay=-0.1), "toy_clip_pretraining.weight_decay=-0.1 must be >= 0"),
        # unknown keys name the allowed ones
        (
            lambda: PerlConfig(stepz=2),
            "perl: unknown key 'stepz' -- did you mean 'steps'\\? \\(allowed: modalities, projector_init",
        ),
        (lambda: TrainConfig(lrr=1, bs=2), "training: unknown keys 'bs', 'lrr' -- did you mean 'lr'\\?"),
    ],
)
def test_wrong_types_name_the_key_the_expectation_and_the_value(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_the_checker_normalises_what_yaml_gives():
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)  # int for a float
    assert EvalConfig(batch_size=8).batch_size == 8
    assert EvalConfig(num_workers=3).resolved_workers() == 3
    assert EvalConfig(num_workers="auto") == EvalConfig()  # what conf/base gives
    assert EvalConfig().resolved_workers() == len(os.sched_getaffinity(0))  # auto: this machine's cores
    assert ClipConfig(pretrained=None, cache_dir=None).pretrained is None
    assert DataSourceConfig(kind="miniature", miniature={"classes": 3}).miniature == {"classes": 3}
    assert ToyClipConfig(held_out=["red square"]).held_out == ("red square",)


def test_config_errors_are_value_errors():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError):  # the toy world's own checks, re-raised under the key
        ToyClipConfig(shifted={"noise": 2.0})


def test_config_is_the_bottom_layer():
    import ast
    from pathlib import Path

    import perl_pipeline.config as config

    tree = ast.parse(Path(config.__file__).read_text())
    imported = [
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.startswith("perl_pipeline")]


def test_one_precision_rule_for_configs_and_autocast():
    import torch

    from perl_pipeline.config import PRECISIONS
    from perl_pipeline.device import autocast

    assert PRECISIONS == ("auto", "bf16", "fp32")
    cpu, a, b = torch.device("cpu"), torch.ones(2, 2), torch.ones(2, 2)
    computed = {}
    for precision in PRECISIONS:
        TrainConfig(precision=precision), EvalConfig(precision=precision)
        with autocast(cpu, precision):
            computed[precision] = (a @ b).dtype
    # auto: fp32 on the CPU (bf16 on GPUs); bf16: the GPU's dtype path on any device
    assert computed == {"auto": torch.float32, "bf16": torch.bfloat16, "fp32": torch.float32}
    with pytest.raises(ConfigError, match="precision='fp16': expected one of 'auto', 'bf16', 'fp32'"):
        autocast(torch.device("cpu"), "fp16")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TrainConfig(lr=float("inf")), "training.lr=inf: expected a finite number"),
        (lambda: TrainConfig(anchor_weight=float("nan")), "training.anchor_weight=nan: expected a finite"),
        (
            lambda: TrainConfig(crop_scale=[0.5, float("inf")]),
            "training.crop_scale\\[1\\]=inf: expected a finite",
        ),
        (
            lambda: PerlConfig(modalities=[]),
            "perl.modalities=\\[\\]: PERL needs at least one tower .* set perl.steps=0",
        ),
    ],
)
def test_infinite_numbers_and_no_tower_are_refused(build, message):
    with pytest.raises(ConfigError, match=message):
        build()
