"""The demo's base_to_novel through the real Kedro session: reports, resumption, parameter errors."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from perl_pipeline.protocols import BASE_TO_NOVEL, SEEDS
from tests.pipelines.conftest import demo_session

pytestmark = pytest.mark.slow


def test_demo_writes_every_report(demo_run):
    report = demo_run.data / "08_reporting" / "base_to_novel"
    for name in ("results.csv", "results.md", "metrics.json", "per_step.csv", "trajectories.csv"):
        assert (report / name).stat().st_size > 0, name
    for plot in (
        "accuracy_per_step.png",
        "alignment_per_step.png",
        "dynamics_per_step.png",
        "params_vs_hm.png",
    ):
        assert (report / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    markdown = (report / "results.md").read_text()
    assert "DEMO" in markdown and "PERL (reported)" in markdown and "PERL (ours)" in markdown
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(BASE_TO_NOVEL) <= set(metrics)


def test_demo_hm_is_the_harmonic_mean_of_its_base_and_novel(demo_run):
    table = pl.read_csv(demo_run.data / "08_reporting" / "base_to_novel" / "results.csv")
    rows = table.filter(pl.col("role") == "benchmark")
    assert sorted(rows["benchmark"]) == sorted([*BASE_TO_NOVEL, "my_images"])  # the demo's folder of your own
    for row in rows.iter_rows(named=True):
        base, novel = row["base"], row["novel"]
        expected = 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)
        assert math.isclose(row["hm"], expected, abs_tol=1e-9), row["benchmark"]
        assert row["n_seeds"] == len(SEEDS)
    averages = table.filter(pl.col("benchmark") == "average (HM of means)").row(0, named=True)
    assert math.isclose(
        averages["hm"], 2 * averages["base"] * averages["novel"] / (averages["base"] + averages["novel"])
    )


def test_demo_reports_the_dynamics_per_step(demo_run):
    """docs/method.md §6.10: per_step.csv carries the dynamics, trajectories.csv the largest changes."""
    report = demo_run.data / "08_reporting" / "base_to_novel"
    per_step = pl.read_csv(report / "per_step.csv")
    assert per_step["confidence"].is_between(0, 100).all() and per_step["brier"].is_between(0, 2).all()
    # the demo measures 2 images per benchmark: each benchmark has the norm in the subsets they fall in
    measured = per_step.group_by("benchmark").agg(pl.col("jacobian_norm").is_not_null().any())
    assert measured["jacobian_norm"].all()
    counts = per_step.select(pl.sum_horizontal(f"n_{g}" for g in ("cc", "wc", "cw", "ww")))
    assert counts.to_series().to_list() == pytest.approx(per_step["n_images"].to_list())
    assert (per_step.filter(pl.col("step") == 0)["kl_median_cc"].drop_nulls() == 0).all()  # KL(p_0 ‖ p_0)
    trajectories = pl.read_csv(report / "trajectories.csv")
    assert set(trajectories["benchmark"]) == {*BASE_TO_NOVEL, "my_images"}
    assert (
        set(trajectories["role"]) == {"target", "step0_winner"} and trajectories["path"].is_not_null().all()
    )
    assert trajectories["probability"].is_between(0, 1).all()


def test_demo_runs_cover_every_seed_subset_and_step(demo_run):
    runs = pl.read_parquet(demo_run.data / "07_model_output" / "base_to_novel" / "dtd" / "runs.parquet")
    assert runs.height == len(SEEDS) * 2 * 5  # seeds x (base, novel) x steps 0..4
    assert runs.filter(pl.col("step") == 0)["image_alignment"].to_list() == pytest.approx([1.0] * 6)
    record = json.loads((demo_run.data / "06_models" / "dtd" / "base" / "seed_1.json").read_text())
    assert record["steps"] == 120 and record["images"] == 160  # 16 shots x 10 base classes, batch 4, 3 epochs
    assert record["trainable_parameters"] == 5 * (96 + 64) + 2
    assert record["shortcuts"] == {"last_block_readout_only": True, "seeds_together": list(SEEDS)}


def test_interrupted_run_resumes_without_redoing_and_matches(demo_run, tmp_path, monkeypatch):
    import perl_pipeline.training as training

    calls, failures = [], []
    real = training.train_seeds

    def flaky(models, *args, **kwargs):  # the first training node dies
        calls.append(sorted(models))
        if not failures:
            failures.append(True)
            raise RuntimeError("interrupted on purpose")
        return real(models, *args, **kwargs)

    monkeypatch.setattr(training, "train_seeds", flaky)
    with demo_session(tmp_path) as session, pytest.raises(RuntimeError, match="interrupted on purpose"):
        session.run(pipeline_names=["base_to_novel"], namespaces=["dtd"])
    models = tmp_path / "data" / "06_models" / "dtd" / "base"
    assert not list(models.glob("seed_*.safetensors"))  # nothing half-made
    features = tmp_path / "data" / "04_feature" / "dtd" / "text_features.safetensors"
    written = features.stat().st_mtime_ns

    calls.clear()
    with demo_session(tmp_path) as session:
        session.run(pipeline_names=["base_to_novel"], namespaces=["dtd"], only_missing_outputs=True)
    assert calls == [sorted(SEEDS)]  # every seed in one node, trained once
    assert features.stat().st_mtime_ns == written  # finished stages are not redone

    for seed in SEEDS:  # bit for bit what the uninterrupted demo produced
        ours = (models / f"seed_{seed}.safetensors").read_bytes()
        assert (
            ours == (demo_run.data / "06_models" / "dtd" / "base" / f"seed_{seed}.safetensors").read_bytes()
        )
    resumed = pl.read_parquet(
        tmp_path / "data" / "07_model_output" / "base_to_novel" / "dtd" / "runs.parquet"
    )
    full = pl.read_parquet(demo_run.data / "07_model_output" / "base_to_novel" / "dtd" / "runs.parquet")
    assert resumed.equals(full)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"perl": {"steps": -1}}, "perl.steps=-1 must be >= 0"),
        ({"training": {"lr": 0}}, "training.lr=0 must be > 0"),
        ({"perl": {"split_layer": 4}}, "perl.split_layer=4 is outside 0..3"),
        ({"few_shot": {"shots": 0}}, "few_shot.shots=0 must be >= 1"),
        ({"clip": {"pretrained": "nowhere/ViT-B-16.pt"}}, "nowhere/ViT-B-16.pt does not exist"),
        ({"clip": {"model_name": "ViT-B-16-quickgelu", "pretrained": "openai"}}, "seems to be offline"),
    ],
)
def test_a_parameter_error_stops_the_run_before_any_data_or_model(tmp_path, params, message):
    with demo_session(tmp_path, **params) as session, pytest.raises(Exception, match=message):
        session.run(pipeline_names=["base_to_novel"])
    assert not (tmp_path / "data").exists()


def test_demo_transfer_protocols_reuse_the_imagenet_all_class_model(demo_run):
    with demo_session(demo_run.root) as session:
        session.run(pipeline_names=["cross_dataset", "domain_generalization"], only_missing_outputs=True)
    for protocol, targets in (("cross_dataset", 10), ("domain_generalization", 4)):
        table = pl.read_csv(demo_run.data / "08_reporting" / protocol / "results.csv")
        assert table.filter(pl.col("role") == "source")["benchmark"].to_list() == ["imagenet"]
        target_rows = table.filter(pl.col("role") == "target")
        assert target_rows.height == targets
        average = table.filter(pl.col("role") == "average")["accuracy"].item()
        assert math.isclose(average, target_rows["accuracy"].mean(), abs_tol=1e-9)
    models = demo_run.data / "06_models" / "imagenet" / "all"
    expected = [f"seed_{s}{kind}.safetensors" for s in SEEDS for kind in (".adapter", "")]
    assert sorted(p.name for p in models.glob("*.safetensors")) == expected  # projectors, adapters


def test_demo_folder_of_your_own_is_split_once_and_leaves_adapters(demo_run):
    """my_images (conf/demo/parameters_my_images.yml): class folders split 50/20/30 per class into
    a CoOp split file, trained base-to-novel, one adapter file per seed that loads and knows its
    own results."""
    from perl_pipeline.models import load_adapter

    split = json.loads((demo_run.data / "01_raw" / "my_images" / "split_perl.json").read_text())
    assert {s: len(rows) for s, rows in split.items()} == {
        "train": 420,
        "val": 160,
        "test": 260,
    }  # 20 x 21/8/13
    runs = pl.read_parquet(demo_run.data / "07_model_output" / "base_to_novel" / "my_images" / "runs.parquet")
    for seed in SEEDS:
        path = demo_run.data / "06_models" / "my_images" / "base" / f"seed_{seed}.adapter.safetensors"
        classifier = load_adapter(path)
        assert len(classifier.classnames) == 10 and classifier.steps == 4
        final = runs.filter((pl.col("seed") == seed) & (pl.col("step") == 4)).sort("subset")
        expected = dict(zip(final["subset"], final["accuracy"], strict=True))
        assert classifier.adapter.metrics["accuracy"] == pytest.approx(expected, abs=1e-3)
