"""The toy_clip pipeline through a real Kedro session: pairs, a short pretraining run, the probe."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
import torch

from perl_pipeline.models import load_clip
from perl_pipeline.models import loading as clip_loading
from tests.pipelines.conftest import demo_session

pytestmark = pytest.mark.slow

SHORT = {
    "toy_clip": {"pairs": 1024, "probe_images": 64},
    "toy_clip_pretraining": {
        "steps": 60,
        "batch_size": 64,
        "lr": 1e-3,
        "warmup": 10,
        "log_every": 15,
        "num_workers": 0,
    },
}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_toy_clip_pipeline_pretrains_and_probes_without_touching_the_shipped_weights(tmp_path):
    shipped = clip_loading.packaged_weights_path("PERL-Toy-ViT", "toy_world")
    before = _sha256(shipped)
    with demo_session(tmp_path, **SHORT) as session:
        session.run(pipeline_names=["toy_clip"])
    assert _sha256(shipped) == before  # the test wrote into its own folder

    pairs = pl.read_parquet(tmp_path / "data" / "02_intermediate" / "toy_clip" / "pairs.parquet")
    held_out = {"red square", "green cross", "blue hexagon", "yellow triangle"}
    concepts = {f"{c} {s}" for c, s in zip(pairs["colour"], pairs["shape"], strict=True)}
    assert pairs.height == 1024 and not concepts & held_out  # held-out concepts never appear
    for row in pairs.head(50).iter_rows(named=True):
        assert f"{row['colour']} {row['shape']}" in row["caption"]

    weights = tmp_path / "weights"
    record = json.loads((weights / "PERL-Toy-ViT_toy_world.pretraining.json").read_text())
    assert len(record["loss"]) == 4 and record["pairs"] == 1024
    assert record["loss"][-1] < record["loss"][0] - 0.5, record["loss"]  # the contrastive loss falls
    model = load_clip("PERL-Toy-ViT", str(weights / "PERL-Toy-ViT_toy_world.safetensors"))
    assert isinstance(model.logit_scale, torch.nn.Parameter)

    probe = json.loads((weights / "PERL-Toy-ViT_toy_world.probe.json").read_text())
    assert probe["chance"] == 1 / 64
    groups = [f"zero_shot_{w}_{g}" for w in ("pretraining", "shifted") for g in ("seen", "held_out")]
    assert set(probe) == {"chance", *groups}
    assert all(0.0 <= probe[g] <= 1.0 for g in groups)
