"""The partial report of a ``--namespaces`` run, on an in-memory catalog (no Kedro run): artefacts
rebuilt by an ``--only-missing-outputs`` run count, and an earlier report no run backs is marked."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro_datasets.text import TextDataset

from perl_pipeline.pipelines.evaluation.pipeline import runs
from perl_pipeline.pipelines.freshness import _Stale
from perl_pipeline.pipelines.reporting import partial
from perl_pipeline.pipelines.reporting.pipeline import OUTPUTS
from perl_pipeline.pipelines.training.pipeline import training_record
from perl_pipeline.protocols import SEEDS

PROTOCOL, BENCHMARKS = "base_to_novel", ("dtd", "eurosat")
NAMES = [f"{PROTOCOL}.{name}" for name in OUTPUTS]


@pytest.fixture
def reported(monkeypatch) -> list[tuple]:
    """The calls of write_report (a stub returning one value per output)."""
    calls: list[tuple] = []

    def write_report(label, record, *, protocol, benchmarks, **inputs):
        calls.append((label, record, inputs, protocol, benchmarks))
        return tuple(f"{name} over {list(benchmarks)}" for name in OUTPUTS)

    monkeypatch.setattr(partial, "write_report", write_report)
    return calls


def _catalog(tmp_path) -> DataCatalog:
    catalog = DataCatalog(
        {
            "params:report_label": MemoryDataset("DEMO"),
            **{f"params:{b}.benchmark": MemoryDataset({"name": b}) for b in BENCHMARKS},
            **{name: MemoryDataset() for name in NAMES},
        }
    )
    catalog[f"{PROTOCOL}.results_markdown"] = TextDataset(filepath=str(tmp_path / "results.md"))
    return catalog


def test_artefacts_rebuilt_by_a_resumed_run_are_reported(tmp_path, reported):
    catalog = _catalog(tmp_path)
    # what --only-missing-outputs leaves: dtd's records and runs marked stale, then rebuilt, in
    # this process (saved through the marker) or on a Dask worker (the file is there)
    catalog[runs("dtd", PROTOCOL)] = _Stale(MemoryDataset())
    catalog.save(runs("dtd", PROTOCOL), "dtd's runs at J = 3")
    for subset in ("base", "all"):
        for seed in SEEDS:
            name = f"dtd.{training_record(subset, seed)}"
            catalog[name] = _Stale(MemoryDataset({"trainable_parameters": 802, "seed": seed}))
            if seed == SEEDS[0]:
                catalog.save(name, {"trainable_parameters": 802, "seed": seed})
    partial.write_partial_report(catalog, PROTOCOL, BENCHMARKS, NAMES, ["dtd"])
    ((label, record, inputs, _, benchmarks),) = reported
    assert benchmarks == ("dtd",) and inputs["runs_dtd"] == "dtd's runs at J = 3"
    assert label == "DEMO PARTIAL: 1 of 2 benchmarks; missing or evaluated with other settings: eurosat"
    assert (tmp_path / "results.md").read_text() == "results_markdown over ['dtd']"


def test_an_earlier_report_no_current_run_backs_is_marked_stale(tmp_path, reported):
    catalog = _catalog(tmp_path)
    (tmp_path / "results.md").write_text("# Base-to-novel\n| dtd | 61.2 |\n")
    rerun = "kedro run --env demo --pipelines base_to_novel --only-missing-outputs --params perl.steps=2"
    partial.write_partial_report(catalog, PROTOCOL, BENCHMARKS, NAMES, [], rerun=rerun)
    assert reported == []
    text = (tmp_path / "results.md").read_text()
    assert text.startswith("> **STALE REPORT**: none of its benchmarks' runs matches")
    assert f"`{rerun}`" in text and text.endswith("# Base-to-novel\n| dtd | 61.2 |\n")
    partial.write_partial_report(catalog, PROTOCOL, BENCHMARKS, NAMES, [], rerun=rerun)
    assert (tmp_path / "results.md").read_text() == text  # marked once
