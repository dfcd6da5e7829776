"""Each stage's real namespaced pipeline, run by Kedro's SequentialRunner on an in-memory catalog.

The catalog holds exactly the inputs written down here for each stage (parameters included), so a
stage that reads a wrong or extra dataset, or forgets a parameter, fails. Parameters go through
Kedro's own ParameterValidator, as in a KedroSession: the nodes get the typed configs their
annotations ask for. The stages are chained on a small miniature of dtd (4 classes, 16 px images)
and PERL-Tiny-ViT with random weights; the demo session (test_demo.py) stays the end-to-end test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import polars as pl
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner
from kedro.validation.parameter_validator import ParameterValidator

from perl_pipeline.benchmarks.few_shot import FEW_SHOT_SCHEMA, index_content_hash, index_order_hash
from perl_pipeline.benchmarks.index import INDEX_SCHEMA
from perl_pipeline.config import ClipConfig, PerlConfig
from perl_pipeline.evaluation.metrics import RUN_COLUMNS, TRAJECTORY_COLUMNS
from perl_pipeline.models import build_perl, load_backbone
from perl_pipeline.pipelines.data_preparation import pipeline as data_preparation
from perl_pipeline.pipelines.evaluation import pipeline as evaluation
from perl_pipeline.pipelines.evaluation.pipeline import runs as runs_name
from perl_pipeline.pipelines.evaluation.pipeline import trajectories as trajectories_name
from perl_pipeline.pipelines.few_shot_splits import pipeline as few_shot_splits
from perl_pipeline.pipelines.paper import pipeline as paper
from perl_pipeline.pipelines.reporting import pipeline as reporting
from perl_pipeline.pipelines.text_features import pipeline as text_features
from perl_pipeline.pipelines.training import pipeline as training
from perl_pipeline.pipelines.training.pipeline import projector, training_record
from perl_pipeline.protocols import SEEDS, SOURCE
from perl_pipeline.provenance import fingerprint
from tests.evaluation.test_metrics import make_runs

BENCHMARK = "dtd"
CLASSES = 4  # base: labels 0-1, novel: labels 2-3
PER_CLASS = {"train": 3, "val": 1, "test": 2}
SHOTS = 2
SEED = SEEDS[0]  # training and evaluation run one seed; the few-shot stage draws the protocol's
PERL_STEPS = 2
BATCH = 2

# Evaluation and reporting read other namespaces' datasets on purpose (pipeline_registry.py silences
# Kedro's warning about dots in dataset names the same way).
pytestmark = pytest.mark.filterwarnings("ignore:One or more dataset names contain '.':UserWarning")


def stage_params(data_root: Path, benchmark_block: dict) -> dict:
    """The parameters as conf/ would give them (raw YAML values), scaled to seconds of CPU."""
    return {
        "data_root": str(data_root),
        "device": "cpu",
        "report_label": "STAGE TEST",
        "data_source": {
            "kind": "miniature",
            "download": False,
            "tolerance": 0,
            "check_decode": True,
            "miniature": {"classes": CLASSES, "per_class": PER_CLASS, "image_size": 16, "seed": 0},
        },
        "clip": {"model_name": "PERL-Tiny-ViT", "pretrained": None, "cache_dir": None, "init_seed": 0},
        "perl": {
            "split_layer": 2,
            "steps": PERL_STEPS,
            "rank": 1,
            "modalities": ["image", "text"],
            "share_projector": True,
        },
        "few_shot": {"shots": SHOTS},
        "training": {
            "lr": 1.0e-3,
            "batch_size": BATCH,
            "epochs": 1,
            "anchor_weight": 1.0,
            "weight_decay": 0.01,
            "crop_scale": [0.5, 1.0],
            "precision": "fp32",
            "num_workers": 0,
            "log_every": 1,
        },
        "evaluation": {"batch_size": 8, "num_workers": 0, "precision": "fp32"},
        BENCHMARK: {"benchmark": copy.deepcopy(benchmark_block)},
    }


def _lookup(params: Mapping[str, Any], key: str) -> Any:
    """`params:a.b.c` as a KedroContext exposes it: through dicts and typed configs alike."""
    value: Any = params
    for part in key.split("."):
        value = value[part] if isinstance(value, Mapping) else getattr(value, part)
    return value


def run_stage(
    pipeline: Pipeline, params: dict, param_keys: Iterable[str], datasets: Mapping[str, Any]
) -> dict[str, Any]:
    """Run `pipeline` on a catalog of exactly `params:<key>` for `param_keys` plus `datasets`.

    The parameters are typed by Kedro's ParameterValidator from the pipeline's node annotations,
    as a KedroSession does. Returns the pipeline's outputs, loaded.
    """
    typed = ParameterValidator({"stage": pipeline}).validate_raw_params(params)
    entries = {f"params:{key}": _lookup(typed, key) for key in param_keys} | dict(datasets)
    assert pipeline.inputs() == set(entries), "the stage's inputs are not the ones it should read"
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in entries.items()})
    outputs = SequentialRunner().run(pipeline, catalog)
    return {name: dataset.load() for name, dataset in outputs.items()}


# ---- the chain: one module-scoped run per stage ------------------------------------------------


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory, benchmark_params: dict) -> dict:
    return stage_params(
        tmp_path_factory.mktemp("stages") / "01_raw", benchmark_params[BENCHMARK]["benchmark"]
    )


@pytest.fixture(scope="module")
def index(params: dict) -> pl.DataFrame:
    Path(params["data_root"]).mkdir(parents=True)
    outputs = run_stage(
        data_preparation.create_pipeline([BENCHMARK]),
        params,
        [f"{BENCHMARK}.benchmark", "data_root", "data_source"],
        {},
    )
    return outputs[f"{BENCHMARK}.index"]


@pytest.fixture(scope="module")
def few_shot(params: dict, index: pl.DataFrame) -> pl.DataFrame:
    outputs = run_stage(
        few_shot_splits.create_pipeline([BENCHMARK]),
        params,
        ["few_shot", "data_root", "data_source"],
        {f"{BENCHMARK}.index": index},
    )
    return outputs[f"{BENCHMARK}.few_shot"]


@pytest.fixture(scope="module")
def features(params: dict, index: pl.DataFrame) -> dict:
    outputs = run_stage(
        text_features.create_pipeline([BENCHMARK]),
        params,
        [f"{BENCHMARK}.benchmark.template", "clip", "perl.split_layer", "device"],
        {f"{BENCHMARK}.index": index},
    )
    return outputs[f"{BENCHMARK}.text_features"]


@pytest.fixture(scope="module")
def trained(params: dict, index: pl.DataFrame, few_shot: pl.DataFrame, features: dict) -> dict:
    return run_stage(
        training.create_pipeline(BENCHMARK, "base", seeds=(SEED,)),
        params,
        ["data_root", "clip", "perl", "training", "device"],
        {f"{BENCHMARK}.few_shot": few_shot, f"{BENCHMARK}.text_features": features},
    )


@pytest.fixture(scope="module")
def evaluated(
    params: dict, index: pl.DataFrame, few_shot: pl.DataFrame, features: dict, trained: dict
) -> dict:
    """The base_to_novel evaluation stage's outputs: the runs table, then (its second node, run
    on the runs table) the seed's adapter."""
    name = f"{BENCHMARK}.{projector('base', SEED)}"
    stage = evaluation.create_pipeline(BENCHMARK, "base_to_novel", seeds=(SEED,))
    adapters = stage.only_nodes_with_tags("adapters")
    scored = run_stage(
        stage - adapters,
        params,
        ["data_root", "clip", "perl", "evaluation", "device"],
        {f"{BENCHMARK}.index": index, f"{BENCHMARK}.text_features": features, name: trained[name]},
    )
    runs = scored[runs_name(BENCHMARK, "base_to_novel")]
    inputs = {f"{BENCHMARK}.text_features": features, runs_name(BENCHMARK, "base_to_novel"): runs}
    return scored | run_stage(adapters, params, ["clip", "perl"], inputs | {name: trained[name]})


@pytest.fixture(scope="module")
def runs(evaluated: dict) -> pl.DataFrame:
    return evaluated[runs_name(BENCHMARK, "base_to_novel")]


@pytest.fixture(scope="module")
def transfer_runs(params: dict, index: pl.DataFrame, few_shot: pl.DataFrame, features: dict) -> pl.DataFrame:
    """Cross-dataset evaluation of dtd, its all-class projectors standing in for the source's."""
    trained_all = run_stage(
        training.create_pipeline(BENCHMARK, "all", seeds=(SEED,)),
        params,
        ["data_root", "clip", "perl", "training", "device"],
        {f"{BENCHMARK}.few_shot": few_shot, f"{BENCHMARK}.text_features": features},
    )
    outputs = run_stage(
        evaluation.create_pipeline(BENCHMARK, "cross_dataset", seeds=(SEED,)),
        params,
        ["data_root", "clip", "perl", "evaluation", "device"],
        {
            f"{BENCHMARK}.index": index,
            f"{BENCHMARK}.text_features": features,
            f"{SOURCE}.{projector('all', SEED)}": trained_all[f"{BENCHMARK}.{projector('all', SEED)}"],
        },
    )
    return outputs[runs_name(BENCHMARK, "cross_dataset")]


# ---- the stages ---------------------------------------------------------------------------------


def test_data_preparation_writes_and_indexes_the_miniature(params: dict, index: pl.DataFrame) -> None:
    assert dict(index.schema) == INDEX_SCHEMA
    assert index["label"].n_unique() == CLASSES
    assert index["classname"].n_unique() == CLASSES
    sizes = dict(index.group_by("split").len().iter_rows())
    assert sizes == {split: CLASSES * n for split, n in PER_CLASS.items()}
    root = Path(params["data_root"])
    assert all((root / path).is_file() for path in index["path"])  # written under data_root


def test_few_shot_splits_draws_every_protocol_seed(few_shot: pl.DataFrame, index: pl.DataFrame) -> None:
    assert dict(few_shot.schema) == FEW_SHOT_SCHEMA
    assert sorted(few_shot["seed"].unique()) == sorted(SEEDS)  # the stage draws the protocol's seeds
    assert few_shot["source_hash"].unique().to_list() == [index_content_hash(index)]
    counts = few_shot.group_by("seed", "subset", "split", "original_label").len()
    train = counts.filter(pl.col("split") == "train")
    assert train["len"].unique().to_list() == [SHOTS]
    per_subset = dict(train.filter(pl.col("seed") == SEED).group_by("subset").len().iter_rows())
    assert per_subset == {"all": CLASSES, "base": CLASSES // 2, "novel": CLASSES // 2}
    val = counts.filter(pl.col("split") == "val")
    assert val["len"].unique().to_list() == [PER_CLASS["val"]]  # min(shots, 4) of a 1-image pool
    for seed in SEEDS:
        (recipe,) = few_shot.filter(pl.col("seed") == seed)["recipe"].unique().to_list()
        assert json.loads(recipe) == {
            "index": index_content_hash(index),
            "shots": SHOTS,
            "seed": seed,
            "draw": "coop",  # the default: CoOp's draw, which depends on the split file's order too
            "order": index_order_hash(index),
        }


def test_text_features_carry_their_classes_and_recipe(
    features: dict, index: pl.DataFrame, params: dict
) -> None:
    classnames = index.unique("label").sort("label")["classname"].to_list()
    assert features["classnames"] == classnames
    recipe = features["recipe"]
    assert recipe["split_layer"] == params["perl"]["split_layer"]
    assert recipe["model_name"] == "PERL-Tiny-ViT"
    assert recipe["template"] == params[BENCHMARK]["benchmark"]["template"]
    assert recipe["classes"] == CLASSES
    assert features["zero_shot"].shape == (CLASSES, 64)  # PERL-Tiny-ViT's embed_dim
    tokens, prefix = features["tokens"], features["prefix"]
    assert prefix.shape == (*tokens.shape, 64)  # the text tower's width
    assert features["eos_index"].shape == (CLASSES,)


def test_training_returns_projectors_with_their_recipe_and_a_record(params: dict, trained: dict) -> None:
    state = trained[f"{BENCHMARK}.{projector('base', SEED)}"]
    record = trained[f"{BENCHMARK}.{training_record('base', SEED)}"]
    images = CLASSES // 2 * SHOTS  # the base classes' shots
    assert (record["benchmark"], record["subset"], record["seed"]) == (BENCHMARK, "base", SEED)
    assert record["images"] == images
    assert record["steps"] == images // BATCH == len(record["loss"])  # one epoch, log_every 1
    assert record["projector"] == fingerprint(state["recipe"])
    tensors = {key for key, value in state.items() if isinstance(value, torch.Tensor)}
    assert set(state) - tensors == {"recipe"}
    clip = ClipConfig(**params["clip"])
    expected = build_perl(load_backbone(clip), PerlConfig(**params["perl"])).projector_state_dict()
    assert tensors == set(expected)  # the projectors, nothing of the frozen CLIP
    assert state["recipe"]["subset"] == "base"
    assert state["recipe"]["seed"] == SEED


def test_evaluation_scores_each_seed_subset_and_step(runs: pl.DataFrame, features: dict) -> None:
    assert set(runs.columns) == {*RUN_COLUMNS, "projector", "text_features"}
    assert runs.height == 1 * 2 * (PERL_STEPS + 1)  # seeds x (base, novel) x steps 0..K
    keys = runs.select("seed", "subset", "step").sort("subset", "step").rows()
    assert keys == [(SEED, s, k) for s in ("base", "novel") for k in range(PERL_STEPS + 1)]
    step0 = runs.filter(pl.col("step") == 0)
    assert step0["image_alignment"].to_list() == pytest.approx([1.0, 1.0])
    assert runs["n_images"].to_list() == [CLASSES // 2 * PER_CLASS["test"]] * runs.height
    assert runs["benchmark"].unique().to_list() == [BENCHMARK]
    assert runs["text_features"].unique().to_list() == [fingerprint(features["recipe"])]
    assert runs["projector"].unique().len() == 1


def test_evaluation_writes_an_adapter_that_predict_scores_as_evaluation_did(
    params: dict, index: pl.DataFrame, evaluated: dict, runs: pl.DataFrame, tmp_path: Path
) -> None:
    from perl_pipeline.models import load_adapter
    from perl_pipeline.pipelines.datasets import TensorDictDataset
    from perl_pipeline.pipelines.evaluation.pipeline import adapter
    from perl_pipeline.predict import predict_files

    path = tmp_path / "seed.adapter.safetensors"
    TensorDictDataset(filepath=str(path)).save(evaluated[f"{BENCHMARK}.{adapter('base', SEED)}"])
    classifier = load_adapter(path)
    record = classifier.adapter
    classnames = index.sort("label").unique("label", maintain_order=True)["classname"].to_list()
    assert classifier.classnames == tuple(classnames[: CLASSES // 2])  # the base classes it trained on
    assert record.extra["benchmark_classnames"] == classnames
    assert (record.extra["subset"], record.extra["seed"], record.perl["steps"]) == ("base", SEED, PERL_STEPS)
    assert record.backbone == {"model_name": "PERL-Tiny-ViT", "weights": "random:0", "pretrained": None}
    final = runs.filter(pl.col("step") == PERL_STEPS).sort("subset")["accuracy"].to_list()
    assert [record.metrics["accuracy"][s] for s in ("base", "novel")] == pytest.approx(final, abs=1e-3)
    assert record.metrics["hm"] == pytest.approx(2 * final[0] * final[1] / (final[0] + final[1]), abs=1e-3)
    # predict on the novel test images, open-vocabulary, scores exactly what evaluation scored
    test = index.filter((pl.col("split") == "test") & (pl.col("label") >= CLASSES // 2)).sort("path")
    classifier.set_classes(classnames[CLASSES // 2 :])
    files = [Path(params["data_root"]) / p for p in test["path"]]
    rows, _ = predict_files(classifier, files, top_k=1, progress=False)
    correct = sum(row["class_1"] == name for row, name in zip(rows, test["classname"], strict=True))
    assert 100 * correct / len(rows) == pytest.approx(record.metrics["accuracy"]["novel"], abs=1e-3)


def test_transfer_evaluation_reads_the_source_projectors(transfer_runs: pl.DataFrame) -> None:
    assert set(transfer_runs.columns) == {*RUN_COLUMNS, "projector", "text_features"}
    keys = transfer_runs.select("seed", "subset", "step").sort("step").rows()
    assert keys == [(SEED, "all", k) for k in range(PERL_STEPS + 1)]
    assert transfer_runs["n_images"].unique().to_list() == [CLASSES * PER_CLASS["test"]]
    assert transfer_runs.filter(pl.col("step") == 0)["image_alignment"].item() == pytest.approx(1.0)


def test_reporting_tables_two_benchmarks(benchmark_params: dict) -> None:
    benchmarks = ("dtd", "eurosat")
    record = "dtd.training_record_base_seed_1"
    pipeline = reporting.create_pipeline("base_to_novel", benchmarks, record)
    params = {b: {"benchmark": copy.deepcopy(benchmark_params[b]["benchmark"])} for b in benchmarks}
    params["report_label"] = "STAGE TEST"
    try:
        outputs = run_stage(
            pipeline,
            params,
            ["report_label", "dtd.benchmark", "eurosat.benchmark"],
            {
                record: {"trainable_parameters": 802},
                **{runs_name(b, "base_to_novel"): make_runs(benchmarks=(b,), steps=2) for b in benchmarks},
                **{
                    trajectories_name(b, "base_to_novel"): pl.DataFrame({"benchmark": [b]})
                    for b in benchmarks
                },
            },
        )
        table = outputs["base_to_novel.results_table"]
        markdown = outputs["base_to_novel.results_markdown"]
        assert {"dtd", "eurosat", "average (mean of HMs)"} <= set(table["benchmark"])
        assert {"base", "novel", "hm"} <= set(table.columns)
        assert "STAGE TEST" in markdown
        assert "| Method | DTD (B / N / HM) | EuroSAT (B / N / HM) |" in markdown
        assert set(outputs["base_to_novel.metrics"]) >= set(benchmarks)
        assert set(outputs["base_to_novel.per_step"]["benchmark"]) == set(benchmarks)
        assert set(outputs["base_to_novel.plots"]) == {
            "accuracy_per_step.png",
            "alignment_per_step.png",
            "dynamics_per_step.png",
            "params_vs_hm.png",
        }
        assert outputs["base_to_novel.trajectories"]["benchmark"].to_list() == list(benchmarks)
    finally:
        plt.close("all")


def test_paper_writes_table4_and_the_dynamics_from_its_tables() -> None:
    from perl_pipeline.evaluation.metrics import per_step_table
    from perl_pipeline.evaluation.paper import ablation_rows

    pipeline = paper.create_pipeline().only_nodes("paper_table4", "paper_dynamics_base_to_novel")
    definition = {"title": "Table 4", "rows": [{"name": "PERL-Shared", "set": []}]}
    metrics = {
        "average (mean of HMs)": {"base": 70.0, "novel": 60.0, "hm": 64.6, "zeroshot_hm": 60.0},
        "average (HM of means)": {"hm": 64.62},
        "trainable_parameters": 802,
    }
    per_step = [{"benchmark": "dtd", "subset": "base", "step": "0", "accuracy": "65.0"}]
    try:
        outputs = run_stage(
            pipeline,
            {"paper": {"table4": definition}, "report_label": "STAGE TEST"},
            ["paper.table4", "report_label"],
            {
                "paper.table4.rows": ablation_rows([("PERL-Shared", "", "HEAD", metrics, per_step)]),
                "base_to_novel.per_step": per_step_table(make_runs(benchmarks=("dtd", "eurosat"), steps=2)),
                "base_to_novel.trajectories": pl.DataFrame(
                    schema=dict.fromkeys(TRAJECTORY_COLUMNS, pl.String)
                ),
            },
        )
        table = outputs["paper.table4.markdown"]
        assert "| PERL-Shared | `defaults` | 802 | 70.00 | 60.00 | 64.60 | 64.62 | *6,402 | 73.97 |" in table
        assert "* PERL-Shared: reported as 6K." in table
        assert "> STAGE TEST" in table
        assert "(mean over 2 benchmarks)" in outputs["paper.dynamics_base_to_novel.markdown"]
        assert outputs["paper.dynamics_base_to_novel.figure"].axes[0].get_xlabel() == "step k"
    finally:
        plt.close("all")
