"""Every table and figure of the paper's evidence, from one command (docs/paper.md).

    python -m perl_pipeline.paper table4          # Table 4: the six reasoning loops
    python -m perl_pipeline.paper fig3 layer      # Fig. 3a: injection layer (fig3 steps: Fig. 3b)
    python -m perl_pipeline.paper table3 dynamics # Table 3 (modalities); Figs. 4-7 (dynamics)
    python -m perl_pipeline.paper all --jobs 2

Each ablation artefact is a list of base_to_novel runs (the ``paper`` parameters,
conf/base/parameters_paper.yml; the demo's in conf/demo). Every row's settings are checked first,
then the runs go to DVC's experiment queue through the sweep machinery (perl_pipeline.tools.sweep): a
setting DVC already recorded on the current commit, the commit itself or any experiment, is
reused, not rerun. The rows are read from DVC's records and saved as
``08_reporting/paper/<artefact>_runs.csv``; then the ``paper`` pipeline writes each artefact's
Markdown table and figure beside them, the paper's numbers beside ours. The dynamics (Figs. 4-7)
need no new run: they are read from the protocols' per-step tables the workspace already has.

Like a sweep, it runs from the last commit: run ``dvc repro`` and commit ``dvc.lock`` first.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

from perl_pipeline.config import ConfigError
from perl_pipeline.evaluation.paper import ABLATIONS, ablation_rows
from perl_pipeline.protocols import PROTOCOLS
from perl_pipeline.tools.sweep import (
    Project,
    check_rows,
    one_sweep_at_a_time,
    parse_fixed,
    recorded_results,
    run_experiments,
)

logger = logging.getLogger(__name__)

ARTEFACTS = (*ABLATIONS, "dynamics")
# what users type -> artefacts: each artefact's name, fig3 for both panels, all
_WORDS = {a: (a,) for a in ARTEFACTS} | {"fig3": ("fig3_layer", "fig3_steps"), "all": ARTEFACTS}


def parse_artefacts(words: Sequence[str]) -> list[str]:
    """``["fig3", "layer", "table4"]`` -> ``["fig3_layer", "table4"]`` (order kept, no repeats)."""
    found: list[str] = []
    words = list(words)
    while words:
        word = words.pop(0).lower()
        if word == "fig3" and words and words[0].lower() in ("layer", "steps"):
            word = f"fig3_{words.pop(0).lower()}"
        if word not in _WORDS:
            raise ConfigError(
                f"unknown paper artefact {word!r}: choose among table3, table4, fig3 layer, fig3 steps, "
                "fig3, dynamics, all"
            )
        found += [a for a in _WORDS[word] if a not in found]
    return found


def plan(params: dict, artefacts: Sequence[str]) -> list[tuple[str, str, list[tuple[str, object]]]]:
    """(artefact, row name, [(key, value), ...]) of every run the ablation artefacts need."""
    runs = []
    for artefact in artefacts:
        if artefact not in ABLATIONS:
            continue
        definition = (params.get("paper") or {}).get(artefact)
        if not isinstance(definition, dict) or not definition.get("rows"):
            raise ConfigError(
                f"paper.{artefact}: no rows in this environment's parameters; define them as in "
                "conf/base/parameters_paper.yml"
            )
        for row in definition["rows"]:
            try:
                runs.append((artefact, str(row["name"]), [parse_fixed(s) for s in row.get("set") or []]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"paper.{artefact}.rows: {row!r}: {exc} (a row is {{name, set: [key=value]}})"
                ) from exc
    return runs


def run_paper(
    artefacts: Sequence[str],
    *,
    env: str | None = None,
    project_path: Path | str = ".",
    conf_source: str | None = None,
    jobs: int = 1,
) -> dict[str, Path]:
    """Run (or reuse) every run the artefacts need, then write them under ``08_reporting/paper/``.

    Every row's settings, DVC's environment and the dynamics' per-step tables are checked first."""
    project_path = Path(project_path).resolve()
    project = Project.open(project_path, env, conf_source)
    runs = plan(project.params, artefacts)
    check_rows(
        [(f"paper.{a} row {name!r}", values) for a, name, values in runs], project.params, project.used
    )
    project.check_env("paper command")
    protocols = _dynamics_protocols(project) if "dynamics" in artefacts else []

    rows: dict[str, list] = {}
    if runs:
        with one_sweep_at_a_time(project_path):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            distinct: dict[str, tuple[str, list]] = {}  # one run per setting, whichever rows share it
            for artefact, name, values in runs:
                label = re.sub(r"[^A-Za-z0-9._=-]+", "_", f"paper-{artefact}-{name}-{stamp}")
                distinct.setdefault(_key(values), (label, values))
            names = run_experiments(project, list(distinct.values()), jobs, reuse=True)
            rev_of = dict(zip(distinct, names, strict=True))
            revs = [rev_of[_key(values)] for *_, values in runs]
            results = recorded_results(project_path, revs, project.stages["data"])
        for (artefact, name, values), rev, (metrics, per_step) in zip(runs, revs, results, strict=True):
            setting = ", ".join(f"{k}={v}" for k, v in values)
            rows.setdefault(artefact, []).append((name, setting, rev, metrics, per_step))

    outputs = [*rows, *(f"dynamics_{p}" for p in protocols)]  # each one node's Markdown table
    with project.session() as session:
        catalog = session.load_context().catalog
        for artefact, results in rows.items():
            catalog.save(f"paper.{artefact}.rows", ablation_rows(results))
    with project.session() as session:
        session.run(pipeline_names=["paper"], node_names=[f"paper_{name}" for name in outputs])
    data = project_path / project.stages["data"] / "08_reporting" / "paper"
    return {name: data / f"{name}.md" for name in outputs}


def _key(values: Sequence[tuple[str, object]]) -> str:
    """The same settings in any order give the same key."""
    return json.dumps(sorted(values, key=lambda kv: kv[0]))


def _dynamics_protocols(project: Project) -> list[str]:
    """The protocols whose per-step table the workspace has (at least one, or ConfigError)."""
    with project.session() as session:
        catalog = session.load_context().catalog
        present = [
            p for p in PROTOCOLS if catalog.exists(f"{p}.per_step") and catalog.exists(f"{p}.trajectories")
        ]
    if not present:
        raise ConfigError(
            "dynamics: no protocol's per-step table and trajectories yet; run a protocol first (dvc "
            f"repro, or kedro run --env {project.env} --pipelines base_to_novel)"
        )
    missing = [p for p in PROTOCOLS if p not in present]
    if missing:
        logger.warning(
            "dynamics: no per-step table for %s yet (run those protocols for theirs)", ", ".join(missing)
        )
    return present


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("artefacts", nargs="+", help="table3, table4, fig3 [layer|steps], dynamics or all")
    parser.add_argument("--env", help="Kedro environment (default: params.yaml's kedro_env)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="experiments run at a time (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        written = run_paper(parse_artefacts(args.artefacts), env=args.env, jobs=args.jobs)
    except ConfigError as exc:  # before anything ran
        parser.error(str(exc))
    for path in written.values():
        logger.info("%s\n%s", path, path.read_text())


if __name__ == "__main__":
    main()
