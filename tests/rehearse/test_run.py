"""A rehearsal at a small fraction runs every real stage and writes both records."""

from __future__ import annotations

import json

import polars as pl
import pytest

from perl_pipeline.pipeline_registry import STAGES
from perl_pipeline.rehearse.run import AGAIN, DATA_STAGES, rehearse_and_report
from perl_pipeline.toy.miniature import replica_split_sizes

FRACTION = 0.0005


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    # the image projector only, in batches of 256: training then refines the class prompts once,
    # not at every step (1000 ImageNet classes per step would take most of the CI budget on a CPU)
    json_path, md_path = rehearse_and_report(
        out,
        fraction=FRACTION,
        device="cpu",
        projection_model="PERL-Tiny-ViT",
        params={
            "perl": {"modalities": ["image"]},
            "evaluation": {"num_workers": 0},
            "training": {"batch_size": 256, "num_workers": 0},
        },
    )
    return out, json.loads(json_path.read_text()), md_path.read_text()


@pytest.mark.slow
def test_every_stage_is_measured(rehearsal):
    _, document, markdown = rehearsal
    stages = [r["stage"] for r in document["stages"]]
    assert stages == ["replica", *STAGES, *(s + AGAIN for s in DATA_STAGES)]
    for record in document["stages"]:
        assert {"stage", "seconds", "peak_rss_mb", "items", "items_per_s"} <= set(record)
        assert record["seconds"] > 0 and record["peak_rss_mb"] > 100
        assert f"| {record['stage']} |" in markdown
    by_stage = {r["stage"]: r for r in document["stages"]}
    for stage in STAGES:
        assert by_stage[stage]["items"] > 0, stage
    for stage in DATA_STAGES:  # unchanged inputs: nothing is redone
        assert by_stage[stage + AGAIN]["items"] == 0
    assert document["projection"]["seconds"]["total"] > 0
    assert "## Projection" in markdown and document["machine"]["cores"] >= 1


@pytest.mark.slow
def test_indexes_hold_the_scaled_sizes_and_every_class(rehearsal, benchmark_specs):
    out, _, _ = rehearsal
    for name, spec in benchmark_specs.items():
        index = pl.read_parquet(out / "data" / "03_primary" / name / "index.parquet")
        sizes = dict(index.group_by("split").len().iter_rows())
        assert sizes == replica_split_sizes(spec, FRACTION), name
        assert index["label"].n_unique() == spec.num_classes, name
    for protocol in ("base_to_novel", "cross_dataset", "domain_generalization"):
        assert (out / "data" / "08_reporting" / protocol / "results.md").is_file()
