"""The registry: one namespaced copy of each stage per benchmark, protocols composed from stages."""

from __future__ import annotations

import pytest

from perl_pipeline.pipelines.registry import STAGES, register_pipelines
from perl_pipeline.protocols import BASE_TO_NOVEL, SEEDS


@pytest.fixture(scope="module")
def pipelines():
    return register_pipelines()


def _names(pipeline) -> set[str]:
    return {node.name for node in pipeline.nodes}


def test_protocols_and_stages_are_registered(pipelines):
    expected = {
        *STAGES,
        "base_to_novel",
        "cross_dataset",
        "domain_generalization",
        "toy_clip",
        "predict",
        "paper",
    }
    expected.add("__default__")
    assert set(pipelines) == expected


def test_toy_clip_stands_apart_from_the_protocols(pipelines):
    assert _names(pipelines["toy_clip"]) == {"make_pretraining_pairs", "pretrain_toy_clip", "probe_toy_clip"}
    assert not _names(pipelines["toy_clip"]) & _names(pipelines["__default__"])


def test_base_to_novel_is_one_template_per_benchmark(pipelines):
    names = _names(pipelines["base_to_novel"])
    for benchmark in BASE_TO_NOVEL:
        assert f"{benchmark}.prepare_benchmark" in names
        assert f"{benchmark}.draw_few_shot_splits" in names
        assert f"{benchmark}.encode_class_prompts" in names
        assert f"{benchmark}.train_base" in names  # every seed in one node
        assert f"{benchmark}.evaluate_base_to_novel" in names
        assert f"{benchmark}.package_adapters_base" in names  # one adapter file per seed
    assert {"base_to_novel.write_report", "base_to_novel.collect_trajectories"} <= names
    assert len(names) == len(BASE_TO_NOVEL) * 6 + 2


def test_transfer_protocols_train_only_the_imagenet_all_class_model(pipelines):
    for protocol in ("cross_dataset", "domain_generalization"):
        train = {n for n in _names(pipelines[protocol]) if ".train_" in n}
        assert train == {"imagenet.train_all"}
        node = next(n for n in pipelines[protocol].nodes if n.name == "imagenet.train_all")
        assert set(node.outputs) == {
            f"imagenet.{kind}_all_seed_{s}" for s in SEEDS for kind in ("projector", "training_record")
        }
    adapters = {n.name: n for n in pipelines["__default__"].nodes if ".package_adapters_all" in n.name}
    assert set(adapters) == {"imagenet.package_adapters_all"}  # written once, by cross_dataset
    assert set(adapters["imagenet.package_adapters_all"].outputs) == {
        f"imagenet.adapter_all_seed_{s}" for s in SEEDS
    }
    assert "imagenet.runs_cross_dataset" in adapters["imagenet.package_adapters_all"].inputs
    dg = pipelines["domain_generalization"]
    evaluate = next(n for n in dg.nodes if n.name == "imagenet_a.evaluate_domain_generalization")
    assert "imagenet.projector_all_seed_1" in evaluate.inputs
    assert "imagenet_a.text_features" in evaluate.inputs


def test_stage_pipelines_are_tag_slices(pipelines):
    assert _names(pipelines["training"]) == {n for n in _names(pipelines["__default__"]) if ".train_" in n}
    assert len(pipelines["reporting"].nodes) == 3 * 2  # write_report, collect_trajectories


OWN = {
    "benchmark": {
        "name": "mine",
        "layout": "image_folder",
        "folder": "mine",
        "title": "Mine",
        "template": "{}.",
    }
}


def test_benchmarks_of_your_own_join_base_to_novel_and_make_all_classes():
    from perl_pipeline.pipelines.registry import own_benchmarks, use_parameters

    parameters = {"mine": OWN, "dtd": {"benchmark": {}}, "perl": {"steps": 4}, "notes": "x"}
    assert own_benchmarks(parameters) == ("mine",)  # the paper's benchmarks and sections are not
    use_parameters(lambda: parameters)
    pipelines = register_pipelines()
    names = _names(pipelines["base_to_novel"])
    assert {"mine.prepare_benchmark", "mine.train_base", "mine.evaluate_base_to_novel"} <= names
    assert "mine.package_adapters_base" in names
    report = next(n for n in pipelines["base_to_novel"].nodes if n.name == "base_to_novel.write_report")
    assert "mine.runs_base_to_novel" in report.inputs and "params:mine.benchmark" in report.inputs
    assert _names(pipelines["all_classes"]) == {
        "mine.prepare_benchmark",
        "mine.draw_few_shot_splits",
        "mine.encode_class_prompts",
        "mine.train_all",
        "mine.evaluate_all_classes",
        "mine.package_adapters_all",
        "all_classes.write_report",
        "all_classes.collect_trajectories",
    }
    use_parameters(None)
    assert "all_classes" not in register_pipelines()  # no benchmark of your own: the paper's grid
