"""One-factor ablation sweeps of base_to_novel (docs/method.md §7) as DVC experiments.

    python -m perl_pipeline.sweep --jobs 2 perl.steps=0,1,2,3,4,5 "perl.modalities=[image],[text]"

A front end over DVC's experiment queue. Each ``key=v1,v2,...`` argument varies one parameter
(values are YAML; commas inside brackets belong to the value); every setting is checked before
anything is queued. Each setting is then queued as one experiment of the ``base_to_novel`` stage
(its value written into params.yaml's ``params_file``, stashed by ``dvc exp run --queue``, the file
restored), ``dvc exp run --run-all --jobs N`` runs them, each in a workspace of its own reusing
the unchanged stages from DVC's cache, and the rows are read from DVC's records (``dvc exp show``,
``dvc plots diff``) into ``ablations.table`` / ``ablations.markdown`` (``08_reporting/ablations/``).
The workspace's own outputs are never touched.

DVC runs experiments from the last commit: run ``dvc repro`` and commit ``dvc.lock`` first (the
demo: params.yaml's ``kedro_env: demo``, see the README). A raw-data folder inside the project is
copied into each experiment (``--copy-paths``); keep real datasets outside it.
``--with key=value`` (repeatable) holds a setting fixed under every row; ``--table`` rebuilds the
latest sweep's table from DVC's records without running anything (docs/sharing.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import yaml

from perl_pipeline.config import ConfigError
from perl_pipeline.evaluation.metrics import AVERAGE_HM_OF_MEANS, AVERAGE_MEAN_OF_HMS, step_means

logger = logging.getLogger(__name__)

STAGE = "base_to_novel"  # the dvc.yaml stage every experiment reproduces (and all it depends on)
LOCK = ".dvc/tmp/perl-sweep.lock"  # held by the one sweep running in a project (under the project)

REPORT = "08_reporting/base_to_novel"  # under params.yaml's data folder


class SweepBusy(ConfigError):
    """Another sweep is running in the same project (nothing was queued)."""


def parse_setting(argument: str) -> tuple[str, list]:
    """'perl.steps=0,1,2' -> ('perl.steps', [0, 1, 2]): the values read as one YAML list, so
    brackets keep their commas."""
    key, sep, values = argument.partition("=")
    if not sep or not key or not values:
        raise ValueError(f"expected key=value[,value...], got {argument!r}")
    try:
        return key, [_value(value) for value in yaml.safe_load(f"[{values}]")]
    except yaml.YAMLError:
        raise ValueError(f"unbalanced brackets in {argument!r} (or a value that is not YAML)") from None


def _value(value):
    """A YAML value, with the numbers YAML 1.1 leaves as strings (1e-3) made numbers."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def nested(key: str, value) -> dict:
    """'perl.steps', 2 -> {'perl': {'steps': 2}} (Kedro merges runtime parameters deeply)."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def fixed_params(fixed: Sequence[tuple[str, object]]) -> dict:
    """The ``--with`` settings as one nested parameters dict."""
    return functools.reduce(merged, (nested(key, value) for key, value in fixed), {})


def parse_fixed(argument: str) -> tuple[str, object]:
    """'training.lr=1e-4' -> ('training.lr', 1e-4): one value, set under every row."""
    key, values = parse_setting(argument)
    if len(values) != 1:
        raise ValueError(f"--with takes one value, got {argument!r}; sweep several as a setting")
    return key, values[0]


def summarize(metrics: Mapping[str, Any], per_step: Iterable[Mapping[str, Any]]) -> dict:
    """One sweep row from a base_to_novel report's DVC metrics and per-step rows."""
    mean_of_hms = metrics[AVERAGE_MEAN_OF_HMS]
    return {
        "trainable_parameters": int(metrics["trainable_parameters"]),
        **{key: mean_of_hms[key] for key in ("base", "novel", "hm")},
        "hm_of_means": metrics[AVERAGE_HM_OF_MEANS]["hm"],
        **{key: mean_of_hms[key] for key in ("zeroshot_base", "zeroshot_novel", "zeroshot_hm")},
        "image_alignment": mean_of_hms["image_alignment_base"],
        "text_alignment": mean_of_hms["text_alignment_base"],
        "base_steps": step_means(per_step, "base"),  # every benchmark, your own too
    }


def to_markdown(table: pl.DataFrame, fixed: Sequence[tuple[str, object]] = ()) -> str:
    """The sweep as a markdown table (accuracies in %, alignments as cosines); ``fixed`` (the
    ``--with`` settings) is named under the title."""
    lines = [
        "# Ablations (base_to_novel, averages over benchmarks and seeds)",
        "",
        *([f"Every row also sets {', '.join(f'{k}={_flow(v)}' for k, v in fixed)}.", ""] if fixed else []),
        "| parameter | value | trainable | base | novel | HM (mean of HMs) | HM of means "
        "| base at steps 0 / 1 / ... / K | cos v(0),v(K) | cos t(0),t(K) | experiment |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in table.iter_rows(named=True):
        lines.append(
            f"| {row['parameter']} | {row['value']} | {row['trainable_parameters']:,} | {row['base']:.2f} "
            f"| {row['novel']:.2f} | {row['hm']:.2f} | {row['hm_of_means']:.2f} | {row['base_steps']} "
            f"| {row['image_alignment']:.3f} | {row['text_alignment']:.3f} | {row['experiment']} |"
        )
    first = table.row(0, named=True)
    lines += [
        "",
        f"Zero-shot CLIP (step 0): base {first['zeroshot_base']:.2f}, novel {first['zeroshot_novel']:.2f}, "
        f"HM {first['zeroshot_hm']:.2f}.",
    ]
    return "\n".join(lines) + "\n"


def check_rows(
    rows: Sequence[tuple[str, Sequence[tuple[str, Any]]]], params: Mapping[str, Any], used: Sequence[str]
) -> None:
    """Check each (label, [(key, value), ...]) with its values merged into `params` together: the
    typed configuration and the backbone's architecture, as a run would before any work."""
    from perl_pipeline.pipelines.hooks import check_parameters

    for label, values in rows:
        values_set = merged(params, fixed_params(values))
        try:
            check_parameters({name: _get(values_set, name) for name in used})
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{label}: {exc}") from exc


def run_sweep(
    settings: Sequence[tuple[str, list]],
    *,
    env: str | None = None,
    project_path: Path | str = ".",
    conf_source: str | None = None,
    fixed: Sequence[tuple[str, object]] = (),
    jobs: int = 1,
) -> pl.DataFrame:
    """Queue one DVC experiment per (key, value), run the queue with `jobs` workers, tabulate.

    Every setting is checked before anything is queued; ``fixed`` is set under every setting."""
    project_path = Path(project_path).resolve()
    with one_sweep_at_a_time(project_path):
        project = Project.open(project_path, env, conf_source)
        params = merged(project.params, fixed_params(fixed))
        for key, values in settings:
            if (section := key.split(".")[0]) not in params:
                raise ConfigError(f"sweep argument {key}: no parameter {section!r} (known: {sorted(params)})")
            check_rows(
                [(f"sweep argument {key}={_flow(value)}", [(key, value)]) for value in values],
                params,
                project.used,
            )
        project.check_env("sweep")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        rows = [(key, value) for key, values in settings for value in values]
        named = [
            (
                re.sub(r"[^A-Za-z0-9._=-]+", "_", f"{i:02d}-{key}={_flow(value)}-{stamp}"),
                [*fixed, (key, value)],
            )
            for i, (key, value) in enumerate(rows, start=1)
        ]
        names = run_experiments(project, named, jobs)
        queued = [(key, value, name) for (key, value), name in zip(rows, names, strict=True)]
        table = tabulate(project_path, queued, data=project.stages["data"])
        with project.session() as session:
            save_table(session, table, fixed)
    return table


def save_table(session, table: pl.DataFrame, fixed: Sequence[tuple[str, object]] = ()) -> None:
    """Save the sweep's table as ``ablations.table`` and ``ablations.markdown`` in `session`'s catalog."""
    catalog = session.load_context().catalog
    catalog.save("ablations.table", table)
    catalog.save("ablations.markdown", to_markdown(table, fixed))


@contextlib.contextmanager
def one_sweep_at_a_time(project_path: Path) -> Iterator[None]:
    """Hold the project's sweep lock (``.dvc/tmp/perl-sweep.lock``) for the whole sweep.

    Two sweeps at once would queue each other's settings and fight over DVC's lock. The lock is an
    flock: it goes with the process, so a killed sweep leaves none behind."""
    import fcntl

    lock = Path(project_path) / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "its details unknown"
            raise SweepBusy(
                f"another sweep is running in {project_path} ({holder}): two sweeps at once would queue "
                "experiments with each other's settings. Wait for it to finish (`dvc queue status` lists "
                "its experiments), then sweep again, or give all the settings to one sweep; nothing was "
                "queued"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            handle.write(f"pid {os.getpid()}, started {started}: {' '.join(sys.argv) or 'run_sweep'}")
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


class Project(NamedTuple):
    """A DVC-run Kedro project as sweeps see it: params.yaml (DVC's view), the Kedro environment
    its stages run, that environment's parameters and those the swept stage reads."""

    path: Path
    stages: dict
    env: str
    conf_source: str | None
    params: dict
    used: list[str]

    @classmethod
    def open(cls, path: Path, env: str | None = None, conf_source: str | None = None) -> Project:
        from kedro.framework.project import pipelines
        from kedro.framework.startup import bootstrap_project

        stages = yaml.safe_load((path / "params.yaml").read_text())
        bootstrap_project(path)
        project = cls(path, stages, env or stages["kedro_env"], conf_source, {}, [])
        with project.session() as session:
            params = session.load_context().config_loader["parameters"]
        used = [n.removeprefix("params:") for n in pipelines[STAGE].inputs() if n.startswith("params:")]
        return project._replace(params=params, used=used)

    def session(self):
        """A Kedro session of the project in its environment."""
        from kedro.framework.session import KedroSession

        return KedroSession.create(project_path=self.path, env=self.env, conf_source=self.conf_source)

    def check_env(self, what: str) -> None:
        """Refuse an environment other than the one DVC's stages run (params.yaml's kedro_env)."""
        if self.env != self.stages["kedro_env"]:
            raise ConfigError(
                f"--env {self.env}: DVC's stages run the Kedro environment {self.stages['kedro_env']!r} "
                f"(params.yaml's kedro_env); set kedro_env: {self.env}, params_file: "
                f"conf/{self.env}/parameters.yml and its data folder in params.yaml, run dvc repro and "
                f"commit, then run the {what} again"
            )


def run_experiments(
    project: Project,
    settings: Sequence[tuple[str, Sequence[tuple[str, Any]]]],
    jobs: int,
    *,
    reuse: bool = False,
) -> list[str]:
    """Queue one experiment of the ``base_to_novel`` stage per (name, [(key, value), ...]) and
    run DVC's queue with `jobs` workers; return each setting's DVC name (or revision).

    With `reuse`, a setting whose whole params file DVC already recorded on the current commit
    (or one of its experiments) is not queued again. Call with the sweep lock held."""
    project_path = project.path
    params_file = project_path / project.stages["params_file"]
    copied = _inside(Path(project.params["data_root"]), project_path)
    current = yaml.safe_load(params_file.read_text())
    done = {}  # {name or revision: its params file} of the current commit and finished experiments
    if reuse:
        shown = json.loads(_dvc(project_path, "exp", "show", "--json"))
        records = _experiments(shown, with_params=project.stages["params_file"])
        done = {name: record["params"] for name, record in records.items() if record["metrics"]}
    names, queued = [], 0
    for name, values in settings:
        wanted = merged(current, fixed_params(values))
        found = next((rev for rev, recorded in done.items() if recorded == wanted), None)
        if found is not None:
            logger.info("%s: already run as %s, reused", name, found)
            names.append(found)
            continue
        with _set_in(params_file, values):  # the queued experiment takes the edit
            _dvc(project_path, "exp", "run", "--queue", "-n", name, *copied, STAGE)
        names.append(name)
        queued += 1
    if queued:
        logger.info("%d experiments queued; DVC runs them with %d workers", queued, jobs)
        # DVC starts `jobs` queue workers and waits for them; a failed experiment is named later
        _dvc(project_path, "exp", "run", "--run-all", "--jobs", str(jobs), capture=False, check=False)
    return names


def tabulate(project_path: Path, experiments: Sequence[tuple[str, Any, str]], data: str) -> pl.DataFrame:
    """The sweep's rows from DVC's records of its experiments ((key, value, name) each): their
    metrics from ``dvc exp show --json``, their per-step accuracy from ``dvc plots diff --json``."""
    results = recorded_results(project_path, [name for *_, name in experiments], data)
    return pl.DataFrame(
        {"parameter": key, "value": _flow(value), "experiment": name, **summarize(metrics, per_step)}
        for (key, value, name), (metrics, per_step) in zip(experiments, results, strict=True)
    )


def recorded_results(project_path: Path, names: Sequence[str], data: str) -> list[tuple[dict, list[dict]]]:
    """(report metrics, per-step rows) of each named experiment (or commit) from DVC's records."""
    metrics_file, per_step_file = f"{data}/{REPORT}/metrics.json", f"{data}/{REPORT}/per_step.csv"
    records = _experiments(json.loads(_dvc(project_path, "exp", "show", "--json")))
    failed = [name for name in names if metrics_file not in records.get(name, {}).get("metrics", {})]
    if failed:
        raise RuntimeError(
            f"experiment(s) {', '.join(failed)} did not finish with a report ({metrics_file}); "
            f"`dvc queue logs <name>` shows what each ran and why it stopped"
        )
    revs = list(dict.fromkeys(records[name]["rev"] for name in names))
    plots = json.loads(_dvc(project_path, "plots", "diff", *revs, "--targets", per_step_file, "--json"))
    points: dict[str, list[dict]] = {}
    for renderer in plots["data"][per_step_file]:
        for point in renderer["content"]["data"]["values"]:
            points.setdefault(point["rev"], []).append(point)
    return [(records[name]["metrics"][metrics_file]["data"], points[records[name]["rev"]]) for name in names]


NAME = re.compile(r"^(?P<index>\d{2,})-(?P<key>[A-Za-z0-9_.]+)=(?P<value>.*)-(?P<stamp>\d{8}-\d{6})$")


def sweep_experiments(shown: list[dict], params_file: str) -> list[tuple[str, Any, str]]:
    """The experiments of the latest sweep among DVC's records (``dvc exp show --json``), as
    (key, value, name) in their queue order: those a sweep named ``<nn>-<key>=<value>-<stamp>``,
    the newest stamp's. The value is the one DVC recorded in the experiment's params file (the
    name's text when the file does not hold it). Experiments pulled from a git remote (``dvc exp
    pull``) are DVC records like any other."""
    found: list[tuple[str, int, str, Any, str]] = []
    for name, record in _experiments(shown, with_params=params_file).items():
        match = NAME.match(name or "")
        if not match:
            continue
        try:
            value = _get(record["params"] or {}, match["key"])
        except (KeyError, TypeError):
            value = _value(yaml.safe_load(match["value"]))
        found.append((match["stamp"], int(match["index"]), match["key"], value, name))
    latest = max((stamp for stamp, *_ in found), default="")
    return [(key, value, name) for stamp, _, key, value, name in sorted(found) if stamp == latest]


def rebuild_table(
    project_path: Path | str = ".", *, env: str | None = None, conf_source: str | None = None
) -> pl.DataFrame:
    """The latest sweep's table from DVC's records alone, e.g. of experiments pulled from a git
    remote with ``dvc exp pull`` on another machine (their metrics and per-step plots are in git);
    nothing is run. Saved like a sweep's (``ablations.table`` / ``ablations.markdown``)."""
    project_path = Path(project_path).resolve()
    project = Project.open(project_path, env, conf_source)
    shown = json.loads(_dvc(project_path, "exp", "show", "--json"))
    experiments = sweep_experiments(shown, project.stages["params_file"])
    if not experiments:
        raise ConfigError(
            f"no sweep experiment on the current commit of {project_path}: run a sweep, or fetch one "
            "with `dvc exp pull <git remote> <name>` (`dvc exp list <git remote>` lists them)"
        )
    logger.info("sweep table: %d experiments from DVC's records", len(experiments))
    table = tabulate(project_path, experiments, data=project.stages["data"])
    with project.session() as session:
        save_table(session, table)
    return table


def _experiments(shown: list[dict], with_params: str | None = None) -> dict[str, dict]:
    """{name: {"rev", "metrics"}} of the current commit (by its name or revision) and its
    experiments, from ``dvc exp show --json``; with `with_params`, also that params file's data."""

    def record(rev: dict) -> dict:
        data = rev.get("data") or {}
        # a failed or killed experiment still shows its baseline's files: it has no results of its own
        metrics = {} if rev.get("error") else data.get("metrics") or {}
        out = {"rev": data.get("rev") or rev["rev"], "metrics": metrics}
        if with_params:
            out["params"] = ((data.get("params") or {}).get(with_params) or {}).get("data")
        return out

    found: dict[str, dict] = {}
    for baseline in shown:
        if baseline.get("rev") != "workspace":  # the commit itself (a reused setting)
            found[baseline.get("name") or baseline["rev"]] = record(baseline)
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                found[rev.get("name") or experiment.get("name")] = record(rev)
    return found


@contextlib.contextmanager
def _set_in(params_file: Path, values: Sequence[tuple[str, Any]]):
    """`params_file` with `values` set (its layout and comments kept), restored afterwards.

    ``dvc exp run -S`` would round-trip the whole file through OmegaConf, losing ``${globals:...}``."""
    from dvc.utils.serialize import modify_yaml

    original = params_file.read_bytes()
    try:
        with modify_yaml(params_file) as data:
            for key, value in values:
                *parents, last = key.split(".")
                section = data
                for part in parents:
                    section = section.setdefault(part, {})
                section[last] = value
        yield
    finally:
        params_file.write_bytes(original)


def _inside(path: Path, project_path: Path) -> list[str]:
    """``--copy-paths`` for a raw-data folder inside the project, which an experiment's fresh
    workspace lacks (DVC does not track raw data)."""
    absolute = path if path.is_absolute() else project_path / path
    try:
        relative = absolute.resolve().relative_to(project_path)
    except ValueError:
        return []
    return [f"--copy-paths={relative.as_posix()}"] if absolute.exists() else []


def _dvc(project_path: Path, *args: str, capture: bool = True, check: bool = True) -> str:
    """Run a DVC command in the project (DVC's stages find `kedro` beside this Python)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project_path, env=env, capture_output=capture, text=True
    )
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-2000:] if capture else "(output above)"
        raise RuntimeError(f"dvc {' '.join(args)} failed ({result.returncode}): {detail}")
    return result.stdout or ""


def merged(base: Mapping, override: Mapping) -> dict:
    """`override` merged into a deep copy of `base`, mapping by mapping."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _get(params: Mapping, name: str) -> Any:
    """The value of ``params:<name>`` in a nested parameters dict ('dtd.benchmark')."""
    value: Any = params
    for part in name.split("."):
        value = value[part]
    return value


def _flow(value) -> str:
    """A value as it would be typed: 2, [image, text], false."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("settings", nargs="*", help="key=value[,value...], e.g. perl.steps=0,1,2")
    parser.add_argument(
        "--table",
        action="store_true",
        help="rebuild the latest sweep's table from DVC's records (e.g. experiments fetched with "
        "dvc exp pull); runs nothing",
    )
    parser.add_argument(
        "--env", help="Kedro environment (default: params.yaml's kedro_env, which it must be)"
    )
    parser.add_argument("--jobs", "-j", type=int, default=1, help="experiments run at a time (default 1)")
    parser.add_argument(
        "--with",
        dest="fixed",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting held fixed under every row, e.g. training.lr=1e-4 (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.table and (args.settings or args.fixed):
        parser.error("--table rebuilds a table from DVC's records: it takes no settings")
    if not args.table and not args.settings:
        parser.error("give at least one key=value[,value...] setting (or --table)")
    try:
        settings = [parse_setting(s) for s in args.settings]
        fixed = [parse_fixed(s) for s in args.fixed]
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:  # a ConfigError comes before any run
        if args.table:
            table = rebuild_table(env=args.env)
        else:
            table = run_sweep(settings, env=args.env, fixed=fixed, jobs=args.jobs)
    except ConfigError as exc:
        parser.error(str(exc))
    logger.info("sweep %s:\n%s", "table" if args.table else "finished", to_markdown(table, fixed))


if __name__ == "__main__":
    main()
