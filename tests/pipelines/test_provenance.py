"""Artefacts that know their inputs: recorded recipes, stale inputs refused, stale outputs rebuilt.

One demo benchmark (dtd) with one training epoch keeps each Kedro run short.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from safetensors import safe_open

from perl_pipeline.pipelines.datasets import METADATA_KEY
from perl_pipeline.pipelines.freshness import ArtefactProblem, sidecar_path
from perl_pipeline.protocols import SEEDS
from perl_pipeline.provenance import StaleArtefactError
from tests.pipelines.conftest import demo_session

pytestmark = pytest.mark.slow

FAST = {"training": {"epochs": 1}}
TEXT = Path("data/04_feature/dtd/text_features.safetensors")
INDEX = Path("data/03_primary/dtd/index.parquet")
FEW_SHOT = Path("data/05_model_input/dtd/few_shot.parquet")
RUNS = Path("data/07_model_output/base_to_novel/dtd/runs.parquet")


def _run(root: Path, **params) -> None:
    only_missing = params.pop("only_missing_outputs", False)
    tags = params.pop("tags", None)
    with demo_session(root, **{**FAST, **params}) as session:
        session.run(
            pipeline_names=["base_to_novel"], namespaces=["dtd"], only_missing_outputs=only_missing, tags=tags
        )


def _projector(root: Path, seed: int) -> Path:
    return root / "data" / "06_models" / "dtd" / "base" / f"seed_{seed}.safetensors"


def _copy(source: Path, target: Path) -> Path:
    """Another run folder with the data of `source` (copy2 keeps the times the records name)."""
    shutil.copytree(source / "data", target / "data")
    return target


@pytest.fixture(scope="module")
def dtd_run(tmp_path_factory) -> Path:
    """The demo's base_to_novel on dtd alone, at J = 2."""
    root = tmp_path_factory.mktemp("provenance")
    _run(root)
    return root


def test_every_stage_artefact_records_what_it_was_made_from(dtd_run):
    for path in (INDEX, FEW_SHOT, TEXT, RUNS, _projector(Path(), 1)):
        record = json.loads(sidecar_path(dtd_run / path).read_text())
        assert record["sha256"] and record["recipe"]["node"].startswith("dtd.")
    recipe = json.loads(sidecar_path(dtd_run / TEXT).read_text())["recipe"]
    assert recipe["params"]["perl.split_layer"] == 2
    assert recipe["params"]["clip"]["weights"].startswith("sha256:")
    assert set(recipe["inputs"]) == {"dtd.index"}

    with safe_open(str(dtd_run / TEXT), framework="pt") as handle:
        header = json.loads(handle.metadata()[METADATA_KEY])
    assert header["recipe"]["split_layer"] == 2 and header["recipe"]["model_name"] == "PERL-Toy-ViT"
    assert header["recipe"]["template"] == "{} texture." and len(header["classnames"]) == 20

    with safe_open(str(_projector(dtd_run, 1)), framework="pt") as handle:
        projector = json.loads(handle.metadata()[METADATA_KEY])["recipe"]
    record = json.loads(_projector(dtd_run, 1).with_suffix(".json").read_text())
    assert record["recipe"] == projector and projector["perl"]["split_layer"] == 2
    assert projector["training"]["epochs"] == 1 and projector["few_shot"] and projector["text_features"]
    assert record["few_shot_draw"] == "sorted" and record["projector_init"] == "default"  # the demo's
    assert projector["perl"]["projector_init"] == "default"
    runs = pl.read_parquet(dtd_run / RUNS)
    assert runs["projector"].n_unique() == len(SEEDS) and runs["text_features"].n_unique() == 1
    assert (dtd_run / TEXT).stat().st_mode & 0o044 == 0o044  # readable by the group and others


def test_changing_j_rebuilds_what_depends_on_it_and_equals_a_fresh_run(dtd_run, tmp_path):
    resumed = _copy(dtd_run, tmp_path / "resumed")
    before = {path: (resumed / path).read_bytes() for path in (INDEX, FEW_SHOT, TEXT)}
    _run(resumed, perl={"split_layer": 3}, only_missing_outputs=True)
    assert (resumed / INDEX).read_bytes() == before[INDEX]  # J does not reach the data
    assert (resumed / FEW_SHOT).read_bytes() == before[FEW_SHOT]
    assert (resumed / TEXT).read_bytes() != before[TEXT]  # the prefix depends on J: rebuilt

    fresh = tmp_path / "fresh"
    _run(fresh, perl={"split_layer": 3})
    assert pl.read_parquet(resumed / RUNS).equals(pl.read_parquet(fresh / RUNS))
    report = Path("data/08_reporting/base_to_novel/results.csv")  # the resumed run reports J = 3's runs
    assert pl.read_csv(resumed / report).equals(pl.read_csv(fresh / report))
    assert not pl.read_csv(resumed / report).equals(pl.read_csv(dtd_run / report))

    def step_zero(root: Path) -> pl.DataFrame:
        runs = pl.read_parquet(root / RUNS).filter(pl.col("step") == 0)
        return runs.select("seed", "subset", "accuracy").sort("seed", "subset")

    assert step_zero(resumed).equals(step_zero(dtd_run))  # zero-shot CLIP cannot depend on J


def test_a_stale_input_is_refused_before_any_work(dtd_run, tmp_path):
    root = _copy(dtd_run, tmp_path / "stale")
    runs = (root / RUNS).read_bytes()
    with pytest.raises(StaleArtefactError) as error:
        _run(root, training={"lr": 0.5}, tags=["evaluation"])  # projectors trained with lr 2e-2
    message = str(error.value)
    assert "dtd.projector_base_seed_1" in message and "training.lr" in message
    assert "0.02" in message and "0.5" in message
    assert "--only-missing-outputs" in message and "--pipelines training --namespaces dtd" in message
    assert (root / RUNS).read_bytes() == runs  # nothing was evaluated

    with pytest.raises(StaleArtefactError, match="perl.split_layer"):
        _run(root, perl={"split_layer": 3}, tags=["training"])  # text features made at J = 2


def test_a_damaged_artefact_is_rebuilt_or_refused(dtd_run, tmp_path):
    root = _copy(dtd_run, tmp_path / "damaged")
    projector = _projector(root, 2)
    good = projector.read_bytes()
    projector.write_bytes(good[: len(good) // 2])  # cut in half
    with pytest.raises(ArtefactProblem, match="modified or damaged"):
        _run(root, tags=["evaluation"])
    _run(root, only_missing_outputs=True)
    assert projector.read_bytes() == good  # rebuilt: training is deterministic
    assert pl.read_parquet(root / RUNS).equals(pl.read_parquet(dtd_run / RUNS))


def test_an_unchanged_resume_does_nothing(dtd_run, tmp_path, monkeypatch):
    import perl_pipeline.training as training

    root = _copy(dtd_run, tmp_path / "again")
    calls = []
    monkeypatch.setattr(training, "train_seeds", lambda *a, **k: calls.append(k) or None)
    _run(root, only_missing_outputs=True)
    assert calls == []


def test_a_namespaces_run_reports_the_benchmarks_present_as_partial(dtd_run):
    report = dtd_run / "data" / "08_reporting" / "base_to_novel"
    markdown = (report / "results.md").read_text()
    assert "PARTIAL: 1 of 12 benchmarks" in markdown  # the 11 and the demo's my_images
    assert "other settings: imagenet" in markdown
    table = pl.read_csv(report / "results.csv")
    assert table.filter(pl.col("role") == "benchmark")["benchmark"].to_list() == ["dtd"]
    assert (report / "plots" / "accuracy_per_step.png").read_bytes()[:4] == b"\x89PNG"


BF16_ACCURACY_POINTS = 5.0  # docs/method.md §3: a bf16 demo run within this many points of fp32's


def test_a_bf16_run_on_the_cpu_agrees_with_the_fp32_run(dtd_run, tmp_path):
    """The GPU's dtype path end to end on one benchmark: the precision is part of the training
    and evaluation recipes, so a resumed run under bf16 autocast redoes exactly those two stages."""
    root = _copy(dtd_run, tmp_path / "bf16")
    bf16 = {"training": {**FAST["training"], "precision": "bf16"}, "evaluation": {"precision": "bf16"}}
    _run(root, only_missing_outputs=True, **bf16)
    assert (root / TEXT).read_bytes() == (dtd_run / TEXT).read_bytes()  # not under autocast: kept
    assert _projector(root, 1).read_bytes() != _projector(dtd_run, 1).read_bytes()  # retrained
    record = json.loads((root / "data" / "06_models" / "dtd" / "base" / "seed_1.json").read_text())
    assert record["config"]["training"]["precision"] == "bf16"
    key = ["seed", "subset", "step"]
    ours, fp32 = (pl.read_parquet(r / RUNS).sort(key) for r in (root, dtd_run))
    assert ours.select(key).equals(fp32.select(key))
    gap = (ours["accuracy"] - fp32["accuracy"]).abs()
    assert gap.max() <= BF16_ACCURACY_POINTS, ours.with_columns(fp32=fp32["accuracy"])
    assert ((ours["image_alignment"] - fp32["image_alignment"]).abs() < 0.01).all()
