"""The hook's recipes of the real stage nodes carry what the nodes no longer re-check themselves:
the text features' backbone, J, template and class list; the draw and features a projector was
trained on; the projectors an evaluation scored; and the precision and decoding a device resolves to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.text import TextDataset

import perl_pipeline.device
from perl_pipeline.config import EvalConfig, TrainConfig
from perl_pipeline.pipelines.evaluation import pipeline as evaluation
from perl_pipeline.pipelines.freshness import Provenance
from perl_pipeline.pipelines.text_features import pipeline as text_features
from perl_pipeline.pipelines.training import pipeline as training
from perl_pipeline.provenance import StaleArtefactError, recipe_params

RUN = {"pipeline_names": ["base_to_novel"]}
CLIP = {"model_name": "PERL-Tiny-ViT", "pretrained": None, "init_seed": 0, "cache_dir": None}
PARAMS = {
    "dtd.benchmark.template": "a photo of a {}, a texture.",
    "clip": CLIP,
    "perl.split_layer": 2,
    "perl": {"split_layer": 2, "steps": 2},
    "training": TrainConfig(),
    "evaluation": EvalConfig(),
    "device": "auto",
    "data_root": "/data/one",
}


def _node(pipeline: Pipeline, tag: str) -> Node:
    return next(node for node in pipeline.nodes if tag in node.tags)


ENCODE = _node(text_features.create_pipeline(["dtd"]), "text_features")
TRAIN = _node(training.create_pipeline("dtd", "base", seeds=(1,)), "training")
EVALUATE = evaluation.create_pipeline("dtd", "base_to_novel", seeds=(1,)).nodes[0]


def _hook(tmp_path: Path, monkeypatch, node: Node, **params) -> tuple[Provenance, DataCatalog]:
    """A hook bound to a catalog of `node`'s inputs (files with records) and `node`'s first output,
    written with its record under PARAMS, then `params` set as this run's."""
    monkeypatch.setattr(Provenance, "_registered", staticmethod(lambda run_params: Pipeline([node])))
    files = [name for name in [*node.inputs, node.outputs[0]] if not name.startswith("params:")]
    catalog = DataCatalog(
        {f"params:{key}": MemoryDataset(value, copy_mode="assign") for key, value in PARAMS.items()}
        | {name: TextDataset(filepath=str(tmp_path / f"{name}.txt")) for name in files}
    )
    hook = Provenance()
    hook.bind(catalog, RUN)
    for name in files:  # every input with a record, as an earlier run leaves it
        catalog.save(name, f"{name} as made")
        hook.after_dataset_saved(
            name, None, Node(lambda: None, [], name, name=f"make_{name}", tags=["training"])
        )
    hook.after_dataset_saved(node.outputs[0], None, node)
    for key, value in params.items():
        catalog[f"params:{key}"] = MemoryDataset(value, copy_mode="assign")
    return hook, catalog


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"dtd.benchmark.template": "a photo of a {}."}, "params.dtd.benchmark.template"),
        ({"perl.split_layer": 3}, "params.perl.split_layer"),
        ({"clip": {**CLIP, "init_seed": 1}}, "params.clip.weights"),
    ],
)
def test_the_text_features_recipe_has_the_backbone_j_and_the_template(tmp_path, monkeypatch, change, setting):
    """The template changes every prompt, so it is part of the features' recipe (it was left out of
    the features' own check before the hook decided alone)."""
    hook, catalog = _hook(tmp_path, monkeypatch, ENCODE, **change)
    with pytest.raises(StaleArtefactError, match=setting):
        hook.check_artefact("dtd.text_features", ENCODE)


def test_the_text_features_recipe_has_the_class_list(tmp_path, monkeypatch):
    hook, catalog = _hook(tmp_path, monkeypatch, ENCODE)
    hook.check_artefact("dtd.text_features", ENCODE)  # current
    catalog.save("dtd.index", "another class list")
    hook.after_dataset_saved(
        "dtd.index", None, Node(lambda: None, [], "dtd.index", name="prepare", tags=["training"])
    )
    with pytest.raises(StaleArtefactError, match="inputs.dtd.index"):
        hook.check_artefact("dtd.text_features", ENCODE)


def test_projectors_record_their_draw_and_features_and_runs_their_projectors(tmp_path, monkeypatch):
    hook, _ = _hook(tmp_path, monkeypatch, TRAIN)
    recipe = hook.recipe(TRAIN)
    assert set(recipe["inputs"]) == {"dtd.few_shot", "dtd.text_features"} and all(recipe["inputs"].values())
    assert set(recipe["params"]) == {"clip", "perl", "training"}  # data_root and device change no result
    assert "seeds_together" not in recipe["params"]["training"]
    hook, _ = _hook(tmp_path / "evaluation", monkeypatch, EVALUATE)
    recipe = hook.recipe(EVALUATE)
    assert set(recipe["inputs"]) == {"dtd.index", "dtd.text_features", "dtd.projector_base_seed_1"}


def test_an_artefact_made_on_a_gpu_is_stale_on_a_cpu(tmp_path, monkeypatch):
    """`device` is resolved, not recorded: the recipe has the precision and decoding it gives."""
    params = {"training": TrainConfig(), "evaluation": EvalConfig(gpu_decode=True)}
    gpu, cpu = recipe_params(params, "cuda"), recipe_params(params, "cpu")
    assert (gpu["training"]["precision"], gpu["evaluation"]["precision"]) == ("bf16", "bf16")
    assert (cpu["training"]["precision"], cpu["evaluation"]["precision"]) == ("fp32", "fp32")
    assert (gpu["evaluation"]["decode"], cpu["evaluation"]["decode"]) == ("gpu", "pil")
    exact = {"training": TrainConfig(precision="fp32"), "evaluation": EvalConfig(precision="fp32")}
    assert recipe_params(exact, "cuda") == recipe_params(exact, "cpu")  # the defaults decode with PIL

    monkeypatch.setattr(perl_pipeline.device, "resolve_device", lambda name="auto": torch.device("cuda"))
    hook, catalog = _hook(tmp_path, monkeypatch, TRAIN)  # trained on a GPU
    monkeypatch.setattr(perl_pipeline.device, "resolve_device", lambda name="auto": torch.device("cpu"))
    with pytest.raises(
        StaleArtefactError, match=r'params.training.precision: "bf16" when it was made, "fp32" now'
    ):
        hook.check_artefact("dtd.projector_base_seed_1", TRAIN)
