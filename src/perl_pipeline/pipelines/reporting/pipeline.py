"""reporting: one node per protocol (namespace = the protocol), over its benchmarks' runs."""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Pipeline

from perl_pipeline.pipelines._binding import bind, stage_node
from perl_pipeline.pipelines.evaluation.pipeline import runs, trajectories
from perl_pipeline.pipelines.reporting.nodes import collect_trajectories, write_report

OUTPUTS = ["results_table", "results_markdown", "metrics", "per_step", "plots"]


def create_pipeline(protocol: str, benchmarks: Sequence[str], training_record: str, **kwargs) -> Pipeline:
    """Report `protocol` over `benchmarks` (and their ``params:<b>.benchmark`` blocks);
    `training_record` names one of its training records. A second node gathers the trajectories."""
    inputs = {"training_record": training_record} | {f"runs_{b}": runs(b, protocol) for b in benchmarks}
    blocks = {f"benchmark_{b}": f"params:{b}.benchmark" for b in benchmarks}
    node = stage_node(
        bind(write_report, protocol=protocol, benchmarks=tuple(benchmarks)),
        {"label": "params:report_label"} | {name: name for name in inputs} | blocks,
        OUTPUTS,
        "reporting",
    )
    paths = {f"trajectories_{b}": trajectories(b, protocol) for b in benchmarks}
    gather = stage_node(collect_trajectories, {name: name for name in paths}, "trajectories", "reporting")
    return Pipeline(
        [node, gather],
        namespace=protocol,
        inputs=inputs | paths,
        parameters={"params:report_label", *blocks.values()},
    )
