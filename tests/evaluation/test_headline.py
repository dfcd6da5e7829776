"""One seed's headline metrics, as an adapter file records them."""

from __future__ import annotations

import pytest

from perl_pipeline.evaluation.headline import headline_metrics
from tests.evaluation.test_metrics import make_runs


def accuracy(benchmark: str, seed: int, subset: str, step: int) -> float:
    return {"base": 50.0, "novel": 30.0, "all": 40.0}[subset] + step * seed


def test_base_to_novel_headline_is_step_k_beside_step_0_with_hms():
    metrics = headline_metrics(make_runs(benchmarks=("mine",), accuracy=accuracy), seed=2)
    assert metrics["step"] == 4
    assert metrics["accuracy"] == {"base": 58.0, "novel": 38.0}
    assert metrics["zero_shot"] == {"base": 50.0, "novel": 30.0}
    assert metrics["hm"] == pytest.approx(2 * 58 * 38 / 96, abs=1e-4)
    assert metrics["zero_shot_hm"] == pytest.approx(37.5)
    assert metrics["test_images"] == {"base": 100, "novel": 100}


def test_all_class_headline_has_no_hm_and_an_absent_seed_is_refused():
    runs = make_runs(benchmarks=("mine",), subsets=("all",), accuracy=accuracy)
    metrics = headline_metrics(runs, seed=1)
    assert metrics["accuracy"] == {"all": 44.0} and "hm" not in metrics
    with pytest.raises(ValueError, match="no rows for seed 7"):
        headline_metrics(runs, seed=7)
