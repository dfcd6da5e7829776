"""A report over the benchmarks present, when a run is limited to some of them (``--namespaces``).

Kedro leaves out a protocol's reporting node then (it lives in the protocol's namespace), so this
hook writes the report after the run over every benchmark whose per-run table is current (one made
with other settings is left out, never mixed in), labelled partial when some are missing. A run
limited by ``--tags`` to stages other than reporting (DVC's per-benchmark stages) writes none.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from perl_pipeline.pipelines.evaluation.pipeline import runs, trajectories
from perl_pipeline.pipelines.freshness import ArtefactProblem, Provenance, unwrap, user_command, user_params
from perl_pipeline.pipelines.reporting.nodes import collect_trajectories, write_report
from perl_pipeline.pipelines.reporting.pipeline import OUTPUTS
from perl_pipeline.pipelines.training.pipeline import training_record
from perl_pipeline.protocols import SEEDS
from perl_pipeline.provenance import StaleArtefactError

logger = logging.getLogger(__name__)


class PartialReport:
    """Kedro hook: after a ``--namespaces`` run of a protocol, report the benchmarks present."""

    @hook_impl
    def after_pipeline_run(self, run_params: dict, run_result: Any, pipeline: Pipeline, catalog) -> None:
        tags = run_params.get("tags") or ()
        if not run_params.get("namespaces") or (tags and "reporting" not in tags):
            return  # not limited to some benchmarks, or limited to stages without the report
        from kedro.framework.project import pipelines

        for protocol in run_params.get("pipeline_names") or []:
            name = f"{protocol}.write_report"
            node = next((n for n in pipelines.get(protocol, Pipeline([])).nodes if n.name == name), None)
            if node is not None and name not in {n.name for n in pipeline.nodes}:
                benchmarks = node.func.keywords["benchmarks"]
                present = _current_runs(catalog, run_params, protocol, benchmarks)
                rerun = f"{user_command(run_params)} --pipelines {protocol} --only-missing-outputs"
                write_partial_report(
                    catalog, protocol, benchmarks, node.outputs, present, rerun + user_params(run_params)
                )


STALE_BANNER = "> **STALE REPORT**"


def _exists(catalog, name: str) -> bool:
    """Whether the artefact exists on disk (a stale marker set by --only-missing-outputs aside)."""
    dataset = unwrap(catalog.get(name))
    return dataset is not None and dataset.exists()


def _mark_stale(catalog, markdown: str, rerun: str) -> None:
    """Put a banner at the top of an earlier results.md that no current run backs any more."""
    dataset = unwrap(catalog.get(markdown))
    if dataset is None or not dataset.exists() or (text := dataset.load()).startswith(STALE_BANNER):
        return
    dataset.save(
        f"{STALE_BANNER}: none of its benchmarks' runs matches the last run's settings or artefacts, "
        f"so these numbers are not theirs. Report again over current runs: `{rerun}`\n\n{text}"
    )
    logger.warning("the earlier report %s is marked stale: no current run backs it", markdown)


def _current_runs(catalog, run_params: dict, protocol: str, benchmarks: tuple[str, ...]) -> list[str]:
    """The benchmarks whose runs exist and were made with this run's settings (no stale number)."""
    checker = Provenance()
    producers = checker.bind(catalog, run_params)
    current = []
    for benchmark in benchmarks:
        name = runs(benchmark, protocol)
        try:
            checker.check_artefact(name, producers.get(name))
        except (ArtefactProblem, StaleArtefactError) as problem:
            logger.info("%s left out of the partial report: %s", benchmark, str(problem).splitlines()[0])
            continue
        current.append(benchmark)
    return current


def write_partial_report(
    catalog,
    protocol: str,
    benchmarks: tuple[str, ...],
    outputs: list[str],
    present: list[str],
    rerun: str = "kedro run",
) -> None:
    """Report `protocol` over `present` (those of `benchmarks` with current runs), through `catalog`;
    when none is current, mark an earlier report stale at its top (naming `rerun`), so it is never
    read as this run's."""
    missing = [b for b in benchmarks if b not in present]
    records = (f"{b}.{training_record(s, seed)}" for b in present for s in ("base", "all") for seed in SEEDS)
    record = next((name for name in records if _exists(catalog, name)), None)  # rebuilt by this run, perhaps
    if record is None:
        logger.warning("no %s report written: no benchmark of it has been evaluated yet", protocol)
        _mark_stale(catalog, outputs[OUTPUTS.index("results_markdown")], rerun)
        return
    label = catalog.load("params:report_label")
    if missing:
        note = (
            f"PARTIAL: {len(present)} of {len(benchmarks)} benchmarks; missing or evaluated with "
            f"other settings: {', '.join(missing)}"
        )
        label = f"{label} {note}" if label else note
    report = write_report(
        label,
        catalog.load(record),
        protocol=protocol,
        benchmarks=tuple(present),
        **{f"runs_{b}": catalog.load(runs(b, protocol)) for b in present},
        **{f"benchmark_{b}": catalog.load(f"params:{b}.benchmark") for b in present},
    )
    for name, value in zip(outputs, report, strict=True):
        catalog.save(name, value)
    tables = [trajectories(b, protocol) for b in present if _exists(catalog, trajectories(b, protocol))]
    if tables and f"{protocol}.trajectories" in catalog:  # made by the same node as the runs
        catalog.save(f"{protocol}.trajectories", collect_trajectories(**{t: catalog.load(t) for t in tables}))
    partial = f" (partial: missing {', '.join(missing)})" if missing else ""
    logger.warning(
        "%s report written over %d of %d benchmarks%s", protocol, len(present), len(benchmarks), partial
    )
