"""A rehearsal at a small fraction runs every real stage and writes both records."""

from __future__ import annotations

import json

import polars as pl
import pytest

from perl_pipeline.benchmarks.few_shot import subset_labels
from perl_pipeline.pipelines.registry import STAGES
from perl_pipeline.protocols import SEEDS
from perl_pipeline.tools.rehearse.projection import PROTOCOL_BENCHMARKS, TRAINED
from perl_pipeline.tools.rehearse.run import AGAIN, DATA_STAGES, rehearse_and_report
from perl_pipeline.toy.miniature import replica_split_sizes

FRACTION = 0.0005


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    # the image projector only, K = 1, in batches of 256: training then refines the class prompts once,
    # not at every step (1000 ImageNet classes per step would take most of the CI budget on a CPU)
    json_path, md_path = rehearse_and_report(
        out,
        fraction=FRACTION,
        device="cpu",
        projection_model="PERL-Tiny-ViT",
        params={
            "perl": {"modalities": ["image"], "steps": 1},
            "evaluation": {"num_workers": 0, "jacobian_images": 2},
            "training": {"batch_size": 256, "num_workers": 0},
        },
    )
    return out, json.loads(json_path.read_text()), md_path.read_text()


@pytest.mark.slow
def test_every_stage_is_measured_with_the_replicas_counts(rehearsal, benchmark_specs):
    out, document, markdown = rehearsal
    stages = [r["stage"] for r in document["stages"]]
    assert stages == ["replica", *STAGES, *(s + AGAIN for s in DATA_STAGES)]
    for record in document["stages"]:
        assert {"stage", "seconds", "peak_rss_mb", "items", "items_per_s"} <= set(record)
        assert f"| {record['stage']} |" in markdown
    items = {r["stage"]: r["items"] for r in document["stages"]}
    sizes = {name: replica_split_sizes(spec, FRACTION) for name, spec in benchmark_specs.items()}
    files = sum(n for split in sizes.values() for n in split.values())
    assert items["replica"] == items["data_preparation"] == files  # every file written is indexed
    assert items["text_features"] == sum(spec.num_classes for spec in benchmark_specs.values())
    shots = 0  # each seed trains on min(16, the class's training images) of every class of its subset
    for subset, names in TRAINED.items():
        for b in names:
            index = pl.read_parquet(out / "data" / "03_primary" / b / "index.parquet")
            labels = subset_labels(subset, benchmark_specs[b].num_classes)
            train = index.filter((pl.col("split") == "train") & pl.col("label").is_in(list(labels)))
            shots += sum(min(16, n) for n in train.group_by("label").len()["len"].to_list())
    assert items["training"] == len(SEEDS) * shots
    tested = sum(sizes[b]["test"] for names in PROTOCOL_BENCHMARKS.values() for b in names)
    assert items["evaluation"] == tested and items["reporting"] == len(PROTOCOL_BENCHMARKS)
    for stage in DATA_STAGES:  # unchanged inputs: nothing is redone
        assert items[stage + AGAIN] == 0
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
