"""The pre-run hook: every params:<x> a pipeline uses is built and checked before any node runs."""

from __future__ import annotations

import copy

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.config import ConfigError, PerlConfig
from perl_pipeline.hooks import CheckModelSettings, check_parameters

RAW = {
    "clip": {"model_name": "PERL-Toy-ViT", "pretrained": None, "cache_dir": None, "init_seed": 0},
    "perl": {"split_layer": 2, "steps": 4, "rank": 1, "modalities": ["image", "text"]},
    "training": {"lr": 2e-2, "batch_size": 4, "precision": "fp32", "num_workers": 0},
    "evaluation": {"batch_size": 64, "num_workers": 0, "precision": "fp32"},
    "few_shot": {"shots": 16},
    "data_source": {"kind": "miniature", "download": False},
    "device": "cpu",
    "data_root": "data/01_raw",
}


def _never(*args):
    raise AssertionError("a node ran")


def _run_hook(params: dict) -> None:
    """The hook on a pipeline whose one node reads every parameter, the catalog holding raw dicts."""
    names = [f"params:{name}" for name in params]
    pipeline = Pipeline([Node(_never, names, "out", name="uses_everything")])
    catalog = DataCatalog({name: MemoryDataset(copy.deepcopy(params[name[7:]])) for name in names})
    CheckModelSettings().before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)


def test_valid_parameters_pass_and_are_typed():
    _run_hook(RAW)
    assert check_parameters(RAW)["perl"] == PerlConfig(split_layer=2, modalities=("image", "text"))


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("training", "batch_size", 2.5, "training.batch_size=2.5: expected an integer >= 1"),
        ("training", "lr", "fast", "training.lr='fast': expected a number > 0"),
        ("perl", "share_projector", "maybe", "perl.share_projector='maybe': expected true/false"),
        ("perl", "steps", 1.5, "perl.steps=1.5: expected an integer"),
        ("perl", "split_layer", 4, "perl.split_layer=4 is outside 1..3 for the image tower of PERL-Toy-ViT"),
        ("evaluation", "precision", "fp16", "evaluation.precision='fp16'"),
        ("few_shot", "shots", 0, "few_shot.shots=0 must be >= 1"),
        ("data_source", "kind", "torrent", "data_source.kind='torrent'"),
        ("clip", "model_name", "ViT-Imaginary", "not an open_clip model config"),
    ],
)
def test_a_wrong_value_in_any_section_stops_the_run_before_any_node(section, key, value, message):
    params = copy.deepcopy(RAW)
    params[section][key] = value
    with pytest.raises(ConfigError, match=message):
        _run_hook(params)


def test_benchmark_blocks_and_toy_sections_are_checked_too(benchmark_params: dict):
    block = copy.deepcopy(benchmark_params["dtd"]["benchmark"])
    assert isinstance(check_parameters({"dtd.benchmark": block})["dtd.benchmark"], BenchmarkSpec)
    block["num_classes"] = 4.5
    with pytest.raises(ConfigError, match="benchmark 'dtd': key 'num_classes'=4.5: expected an integer"):
        _run_hook({"dtd.benchmark": block})
    with pytest.raises(ConfigError, match="toy_clip_pretraining.batch_size=0 must be >= 1"):
        _run_hook({"toy_clip_pretraining": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="toy_clip: unknown key"):
        _run_hook({"toy_clip": {"pair": 10}})
