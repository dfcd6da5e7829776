"""paper: one node per artefact of the paper, each a pure function of the catalog's tables.

An ablation node reads ``paper.<artefact>.rows`` (written by ``python -m perl_pipeline.paper``
from DVC's records of its runs) and ``params:paper.<artefact>``; a dynamics node reads a
protocol's ``<protocol>.per_step``. Each writes a Markdown table and a figure under
``08_reporting/paper/``.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from perl_pipeline.evaluation.paper import ABLATIONS, ablation_report, dynamics_report
from perl_pipeline.pipelines._binding import bind
from perl_pipeline.protocols import PROTOCOLS


def create_pipeline(**kwargs) -> Pipeline:
    """Every artefact's node, tagged with its name (``--tags table4``)."""
    ablations = [
        Node(
            bind(ablation_report, artefact=artefact),
            {
                "rows": f"paper.{artefact}.rows",
                "definition": f"params:paper.{artefact}",
                "label": "params:report_label",
            },
            [f"paper.{artefact}.markdown", f"paper.{artefact}.figure"],
            name=f"paper_{artefact}",
            tags=["paper", artefact],
        )
        for artefact in ABLATIONS
    ]
    dynamics = [
        Node(
            bind(dynamics_report, protocol=protocol, targets=PROTOCOLS[protocol].targets),
            {
                "per_step": f"{protocol}.per_step",
                "trajectories": f"{protocol}.trajectories",
                "label": "params:report_label",
            },
            [f"paper.dynamics_{protocol}.markdown", f"paper.dynamics_{protocol}.figure"],
            name=f"paper_dynamics_{protocol}",
            tags=["paper", "dynamics"],
        )
        for protocol in PROTOCOLS
    ]
    return Pipeline([*ablations, *dynamics])
