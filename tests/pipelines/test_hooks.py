"""The pre-run hook: a wrong parameter or a weights problem stops the run before any node, data
preparation included."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline, node
from kedro.runner import SequentialRunner

from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.config import ClipConfig, ConfigError, PerlConfig
from perl_pipeline.models.loading import PretrainedWeightsUnavailable, WeightsFileError
from perl_pipeline.pipelines.hooks import CheckModelSettings, check_parameters


def _catalog(clip: dict | ClipConfig) -> DataCatalog:
    """Parameters as Kedro's catalog holds them (raw dicts or typed), plus the pipeline's input."""
    return DataCatalog(
        {
            "params:clip": MemoryDataset(clip),
            "params:perl": MemoryDataset({"split_layer": 2}),
            "params:device": MemoryDataset("cpu"),
            "raw": MemoryDataset(1),
        }
    )


@pytest.fixture
def recorded() -> tuple[Pipeline, list[str]]:
    """A two-node pipeline (data preparation, then a node using the backbone) that logs its nodes."""
    ran: list[str] = []

    def prepare(raw):
        ran.append("prepare")
        return raw

    def train(data, clip, perl, device):
        ran.append("train")
        return data

    pipeline = Pipeline(
        [
            node(prepare, "raw", "prepared", name="prepare"),
            node(train, ["prepared", "params:clip", "params:perl", "params:device"], "trained", name="train"),
        ]
    )
    return pipeline, ran


def _run(pipeline: Pipeline, catalog: DataCatalog) -> None:
    """What a KedroSession does: the before_pipeline_run hook, then the runner."""
    CheckModelSettings().before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)
    SequentialRunner().run(pipeline, catalog)


def test_a_missing_weights_file_stops_the_run_before_any_node(recorded, tmp_path):
    pipeline, ran = recorded
    missing = tmp_path / "ViT-B-16.pt"
    clip = {"model_name": "PERL-Tiny-ViT", "pretrained": str(missing), "cache_dir": None}
    with pytest.raises(WeightsFileError, match=f"{missing} does not exist .clip.pretrained."):
        _run(pipeline, _catalog(clip))
    assert ran == []


def test_weights_of_another_architecture_stop_the_run_before_any_node(recorded, tiny_clip, tmp_path):
    pipeline, ran = recorded
    path = tmp_path / "tiny.pt"
    torch.save(tiny_clip.state_dict(), path)
    clip = ClipConfig(model_name="PERL-Toy-ViT", pretrained=str(path), cache_dir=None)
    with pytest.raises(WeightsFileError, match="does not fit clip.model_name='PERL-Toy-ViT'"):
        _run(pipeline, _catalog(clip))
    assert ran == []


def test_a_tag_with_no_local_copy_offline_stops_the_run_in_seconds(recorded, tmp_path):
    pipeline, ran = recorded
    clip = {"model_name": "ViT-B-16-quickgelu", "pretrained": "openai", "cache_dir": str(tmp_path)}
    catalog = _catalog(clip)
    catalog["params:perl"] = MemoryDataset(PerlConfig())
    with pytest.raises(PretrainedWeightsUnavailable, match="seems to be offline"):  # HF_HUB_OFFLINE=1
        _run(pipeline, catalog)
    assert ran == []


def test_good_weights_let_the_run_go_on(recorded, tiny_clip, tmp_path):
    pipeline, ran = recorded
    path = tmp_path / "tiny.pt"
    torch.save(tiny_clip.state_dict(), path)
    _run(pipeline, _catalog({"model_name": "PERL-Tiny-ViT", "pretrained": str(path), "cache_dir": None}))
    assert ran == ["prepare", "train"]


def test_a_pipeline_without_the_backbone_is_not_checked(tmp_path):
    ran: list[str] = []
    pipeline = Pipeline([node(lambda raw: ran.append("prepare") or raw, "raw", "prepared", name="prepare")])
    broken = {"model_name": "PERL-Tiny-ViT", "pretrained": str(tmp_path / "missing.pt"), "cache_dir": None}
    _run(pipeline, _catalog(broken))
    assert ran == ["prepare"]


BENCHMARKS = Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters_benchmarks.yml"


def test_the_project_pipelines_are_checked_before_data_preparation(tmp_path):
    """The real base-to-novel pipeline starts with data preparation; the weights are checked first."""
    from perl_pipeline.pipelines.registry import register_pipelines

    pipeline = register_pipelines()["base_to_novel"]
    assert "params:clip" in pipeline.inputs()
    missing = tmp_path / "ViT-B-16.pt"
    catalog = _catalog({"model_name": "ViT-B-16-quickgelu", "pretrained": str(missing), "cache_dir": None})
    catalog["params:perl"] = MemoryDataset(PerlConfig())
    values = {**RAW, "report_label": "", **yaml.safe_load(BENCHMARKS.read_text(encoding="utf-8"))}
    for name in sorted(pipeline.inputs()):  # every other parameter the pipeline reads, as in conf/
        if name.startswith("params:") and name not in catalog:
            value = values
            for part in name.removeprefix("params:").split("."):
                value = value[part]
            catalog[name] = MemoryDataset(value)
    with pytest.raises(WeightsFileError, match="does not exist"):
        CheckModelSettings().before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)


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


@pytest.mark.parametrize("split_layer", [[1, 2, 3], "1 2 3"])  # YAML, kedro run --params
def test_a_list_of_depths_passes_and_is_typed(split_layer):
    params = copy.deepcopy(RAW)
    params["perl"] |= {"split_layer": split_layer, "share_layers": False}
    _run_hook(params)
    assert check_parameters(params)["perl"].split_layer == (1, 2, 3)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("training", "batch_size", 2.5, "training.batch_size=2.5: expected an integer >= 1"),
        ("training", "lr", "fast", "training.lr='fast': expected a number > 0"),
        ("perl", "share_projector", "maybe", "perl.share_projector='maybe': expected true/false"),
        ("perl", "steps", 1.5, "perl.steps=1.5: expected an integer"),
        ("perl", "split_layer", 4, "perl.split_layer=4 is outside 0..3 for the image tower of PERL-Toy-ViT"),
        ("perl", "split_layer", [1, 4], "perl.split_layer=\\[1, 4\\] is outside 0..3 for the image tower"),
        ("perl", "share_layers", "no", "perl.share_layers='no': expected true/false"),
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


# -- --params: sections no pipeline reads, keys of sections this run does not read ------------------


def _run_with(runtime_params: dict, reads: list[str], run_params: dict | None = None) -> None:
    """The hook on a pipeline reading `reads`, the catalog holding RAW merged with `runtime_params`
    (as Kedro merges --params into the parameters)."""
    from perl_pipeline.tools.sweep import merged

    params = merged(RAW, runtime_params)
    pipeline = Pipeline([Node(_never, [f"params:{name}" for name in reads], "out", name="reads")])
    catalog = DataCatalog({f"params:{k}": MemoryDataset(copy.deepcopy(v)) for k, v in params.items()})
    run = {"env": "local", **(run_params or {}), "runtime_params": runtime_params}
    CheckModelSettings().before_pipeline_run(run_params=run, pipeline=pipeline, catalog=catalog)


def test_a_misspelt_section_in_params_stops_the_run():
    with pytest.raises(
        ConfigError,
        match="--params trainig...: no pipeline .* reads a parameter 'trainig'.*did you mean 'training'",
    ):
        _run_with({"trainig": {"lr": 0.5}}, reads=["training", "perl"])
    _run_with({"training": {"lr": 0.5}}, reads=["training", "perl"])  # spelt right: runs


def test_a_wrong_key_in_a_section_this_run_does_not_read_stops_it_too():
    with pytest.raises(ConfigError, match="training: unknown key 'lrr' -- did you mean 'lr'\\?"):
        _run_with({"training": {"lrr": 0.5}}, reads=["perl"])  # e.g. --tags evaluation


def test_suggested_commands_repeat_the_environment_and_parameters(tmp_path):
    missing = str(tmp_path / "ViT-B-16.pt")
    user = {"clip": {"pretrained": missing}, "perl": {"steps": 2}}
    with pytest.raises(WeightsFileError) as error:
        _run_with(user, reads=["clip", "perl"], run_params={"env": "demo"})
    message = str(error.value)
    assert "kedro run --env demo --params clip.pretrained=/path/to/ViT-B-16.pt,perl.steps=2" in message
    assert "kedro run --env demo --params clip.pretrained=openai,perl.steps=2" in message
    assert "kedro run --params" not in message


def test_a_nodes_error_suggests_the_command_with_the_runs_settings():
    error = RuntimeError(
        "text features of dtd were made at J = 2; rebuild them: kedro run --pipelines text_features "
        "--namespaces dtd."
    )
    run_params = {"env": "demo", "runtime_params": {"perl": {"split_layer": 3, "modalities": ["image"]}}}
    CheckModelSettings().on_pipeline_error(error=error, run_params=run_params, pipeline=None, catalog=None)
    assert str(error).endswith(
        "kedro run --env demo --pipelines text_features --namespaces dtd "
        "--params 'perl.split_layer=3,perl.modalities=[image]'."
    )


def test_a_benchmark_block_in_conf_local_joins_the_protocols(tmp_path):
    """OwnBenchmarks hands the run's parameters to the registry: a block in conf/local/ (never
    committed) adds its benchmark to base_to_novel and makes all_classes."""
    import shutil

    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = Path(__file__).resolve().parents[2]
    conf = tmp_path / "conf"
    shutil.copytree(root / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    (conf / "local" / "parameters_mine.yml").write_text(
        "mine:\n  benchmark: {name: mine, title: Mine, folder: mine, layout: image_folder,"
        " template: 'a photo of a {}.'}\n"
    )
    bootstrap_project(root)
    with KedroSession.create(project_path=root, conf_source=str(conf)) as session:
        session.load_context()
        assert "mine.train_all" in {node.name for node in pipelines["all_classes"].nodes}
        assert "mine.evaluate_base_to_novel" in {node.name for node in pipelines["base_to_novel"].nodes}
    bootstrap_project(root)  # the next session's registry starts afresh


def test_a_later_session_of_another_environment_rebuilds_the_pipelines(tmp_path):
    """In one process (a notebook), a demo session's benchmark of your own does not linger in the
    next session's pipelines."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = Path(__file__).resolve().parents[2]
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env="demo") as session:
        session.load_context()
        assert "my_images.train_base" in {n.name for n in pipelines["base_to_novel"].nodes}
    conf = tmp_path / "conf"  # the project's conf without anything local
    import shutil

    shutil.copytree(root / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    with KedroSession.create(project_path=root, conf_source=str(conf)) as session:
        session.load_context()
        assert "all_classes" not in pipelines
        assert not any(n.name.startswith("my_images.") for n in pipelines["base_to_novel"].nodes)
