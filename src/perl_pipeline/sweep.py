"""One-factor ablation sweeps of base_to_novel (docs/method.md §7), each setting a real Kedro run.

    python -m perl_pipeline.sweep --env demo perl.steps=0,1,2,3,4,5 "perl.modalities=[image],[text]"

Each ``key=v1,v2,...`` argument varies one parameter from the environment's settings (values are
YAML; commas inside brackets belong to the value). Every setting is checked (its typed
configuration and the backbone's architecture) before the first run. Data preparation, few-shot
draws and text features run once, into the environment's data folder, when missing; each setting
then retrains, re-evaluates and re-reports into its own folder, ``<data>/09_sweeps/<nn>_<key>=<value>/``,
reading the prepared data through hard links (and rerunning the few-shot draws or the text
features there when the swept key changes them: ``few_shot.*``, ``perl.split_layer``,
``clip.*``). The protocol's own outputs are never written. The settings' averages become the
rows of ``ablations.table`` / ``ablations.markdown`` (``08_reporting/ablations/``).

``--with key=value`` (repeatable) holds a setting fixed under every row, e.g. the paper's own
budget on the demo under both projector initialisations:

    python -m perl_pipeline.sweep --env demo --with training.lr=1e-4 --with training.epochs=1 \
        perl.projector_init=default,zero_out
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from perl_pipeline.config import ConfigError
from perl_pipeline.evaluation.metrics import AVERAGE_HM_OF_MEANS, AVERAGE_MEAN_OF_HMS
from perl_pipeline.protocols import BASE_TO_NOVEL, SEEDS

logger = logging.getLogger(__name__)

PREPARATION = ("data_preparation", "few_shot_splits", "text_features")
PER_SETTING = ("training", "evaluation", "reporting")
# preparation stages a setting reruns into its own folder when its key starts with one of these
RERUN_FOR = {"few_shot_splits": ("few_shot.",), "text_features": ("perl.split_layer", "clip.")}
PREPARED = {
    "data_preparation": "03_primary",
    "few_shot_splits": "05_model_input",
    "text_features": "04_feature",
}
SHARED_KEYS = ("data_root", "data_source")  # keys every setting's prepared data depends on
SWEEPS = "09_sweeps"  # per-setting data folders, under the environment's data folder


def parse_setting(argument: str) -> tuple[str, list]:
    """'perl.steps=0,1,2' -> ('perl.steps', [0, 1, 2]); brackets keep their commas."""
    key, sep, values = argument.partition("=")
    if not sep or not key or not values:
        raise ValueError(f"expected key=value[,value...], got {argument!r}")
    parts, depth, current = [], 0, ""
    for char in values:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise ValueError(f"unbalanced brackets in {argument!r}")
    return key, [_value(part) for part in [*parts, current]]


def _value(text: str):
    """YAML, plus the numbers YAML 1.1 leaves as strings (1e-3)."""
    value = yaml.safe_load(text)
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
    out: dict = {}
    for key, value in fixed:
        out = merged(out, nested(key, value))
    return out


def parse_fixed(argument: str) -> tuple[str, object]:
    """'training.lr=1e-4' -> ('training.lr', 1e-4): one value, for a setting of training onwards."""
    key, values = parse_setting(argument)
    if len(values) != 1:
        raise ValueError(f"--with takes one value, got {argument!r}; sweep several as a setting")
    if key.startswith(SHARED_KEYS) or ".benchmark" in key:
        raise ValueError(
            f"--with {argument}: every setting shares the raw data prepared with the environment's "
            f"settings; set {key} in conf/<env>/parameters.yml instead"
        )
    return key, values[0]


def summarize(results: pl.DataFrame, record: dict) -> dict:
    """One sweep row from a base_to_novel results table and a training record."""
    mean_of_hms = results.filter(pl.col("benchmark") == AVERAGE_MEAN_OF_HMS).row(0, named=True)
    hm_of_means = results.filter(pl.col("benchmark") == AVERAGE_HM_OF_MEANS).row(0, named=True)
    benchmarks = results.filter(pl.col("role") == "benchmark")
    return {
        "trainable_parameters": record["trainable_parameters"],
        "base": mean_of_hms["base"],
        "novel": mean_of_hms["novel"],
        "hm": mean_of_hms["hm"],
        "hm_of_means": hm_of_means["hm"],
        "zeroshot_base": mean_of_hms["zeroshot_base"],
        "zeroshot_novel": mean_of_hms["zeroshot_novel"],
        "zeroshot_hm": mean_of_hms["zeroshot_hm"],
        "image_alignment": benchmarks["image_alignment_base"].mean(),
        "text_alignment": benchmarks["text_alignment_base"].mean(),
    }


def to_markdown(table: pl.DataFrame, fixed: Sequence[tuple[str, object]] = ()) -> str:
    """The sweep as a markdown table (accuracies in %, alignments as cosines); ``fixed`` (the
    ``--with`` settings) is named under the title."""
    lines = [
        "# Ablations (base_to_novel, averages over benchmarks and seeds)",
        "",
        *([f"Every row also sets {', '.join(f'{k}={_flow(v)}' for k, v in fixed)}.", ""] if fixed else []),
        "| parameter | value | trainable | base | novel | HM (mean of HMs) | HM of means | cos v(0),v(K) "
        "| cos t(0),t(K) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.iter_rows(named=True):
        lines.append(
            f"| {row['parameter']} | {row['value']} | {row['trainable_parameters']:,} | {row['base']:.2f} "
            f"| {row['novel']:.2f} | {row['hm']:.2f} | {row['hm_of_means']:.2f} "
            f"| {row['image_alignment']:.3f} | {row['text_alignment']:.3f} |"
        )
    first = table.row(0, named=True)
    lines += [
        "",
        f"Zero-shot CLIP (step 0): base {first['zeroshot_base']:.2f}, novel {first['zeroshot_novel']:.2f}, "
        f"HM {first['zeroshot_hm']:.2f}.",
    ]
    return "\n".join(lines) + "\n"


def check_settings(
    settings: Sequence[tuple[str, list]], params: Mapping[str, Any], used: Sequence[str]
) -> None:
    """Check every setting before the first run: the typed configuration built with the value
    merged in, plus the backbone's architecture check.

    Args:
        settings: (key, values) pairs as :func:`parse_setting` gives them.
        params: the environment's parameters (resolved).
        used: the parameter names the swept pipeline reads (``params:<name>`` without the prefix).

    Raises:
        ConfigError: naming the sweep argument and the problem.
    """
    from perl_pipeline.hooks import check_parameters

    for key, values in settings:
        section = key.split(".")[0]
        if section not in params:
            raise ConfigError(f"sweep argument {key}: no parameter {section!r} (known: {sorted(params)})")
        if key.startswith(SHARED_KEYS) or ".benchmark" in key:
            raise ConfigError(
                f"sweep argument {key}: it changes the raw data every setting shares; sweep it with "
                f"one run per value, e.g. kedro run --pipelines base_to_novel --params {key}=<value>"
            )
        for value in values:
            values_set = merged(params, nested(key, value))
            try:
                check_parameters({name: _get(values_set, name) for name in used})
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"sweep argument {key}={_flow(value)}: {exc}") from exc


def run_sweep(
    settings: Sequence[tuple[str, list]],
    *,
    env: str | None = None,
    project_path: Path | str = ".",
    conf_source: str | None = None,
    fixed: Sequence[tuple[str, object]] = (),
) -> pl.DataFrame:
    """Run base_to_novel once per (key, value) into its own data folder and save their averages.

    Every setting is checked before the first run. Each runs with the environment's parameters
    (the swept key overridden) into ``<data>/09_sweeps/<nn>_<key>=<value>/``, reading the
    prepared index, few-shot draws and text features of the environment's data folder through
    hard links (or copies); the protocol's own outputs are never written.

    ``fixed`` ((key, value) pairs, see :func:`parse_fixed`) is set under every setting's run.

    Returns:
        One row per setting: parameter, value, then :func:`summarize`'s columns.

    Raises:
        ConfigError: an invalid setting, before any run.
    """
    from kedro.framework.project import pipelines
    from kedro.framework.project import settings as kedro_settings
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from perl_pipeline.pipelines.training.pipeline import training_record

    project_path = Path(project_path).resolve()
    bootstrap_project(project_path)
    conf = Path(conf_source) if conf_source else project_path / kedro_settings.CONF_SOURCE
    run_env = env or kedro_settings.CONFIG_LOADER_ARGS.get("default_run_env", "local")

    def session(params: dict | None = None, conf_dir: Path = conf) -> KedroSession:
        return KedroSession.create(
            project_path=project_path, env=env, conf_source=str(conf_dir), runtime_params=params
        )

    with session() as base:
        loader = base.load_context().config_loader
        params, data = loader["parameters"], Path(loader["globals"]["data"])
    data = data if data.is_absolute() else project_path / data
    used = [n.removeprefix("params:") for n in pipelines["base_to_novel"].inputs() if n.startswith("params:")]
    params = merged(params, fixed_params(fixed))
    check_settings(settings, params, used)

    with session() as prepare:
        prepare.run(pipeline_names=["base_to_novel"], tags=list(PREPARATION), only_missing_outputs=True)
    rows = []
    held = [k for k, _ in fixed]
    with tempfile.TemporaryDirectory(prefix="perl-sweep-conf-") as scratch:
        number = 0
        for key, values in settings:
            rerun = [s for s, keys in RERUN_FOR.items() if any(k.startswith(keys) for k in (key, *held))]
            for value in values:
                number += 1
                tag = re.sub(r"[^A-Za-z0-9._=-]+", "_", f"{number:02d}_{key}={_flow(value)}")
                folder = data / SWEEPS / tag
                logger.info("sweep: %s=%s into %s", key, _flow(value), folder)
                setting_conf = _setting_conf(conf, Path(scratch) / tag, run_env, folder)
                _share_prepared(data, folder, skip=rerun)
                # the environment's parameters as resolved once (data_root, cache_dir included)
                with session(merged(params, nested(key, value)), setting_conf) as run:
                    run.run(pipeline_names=["base_to_novel"], tags=[*PER_SETTING, *rerun])
                    catalog = run.load_context().catalog
                    record = catalog.load(f"{BASE_TO_NOVEL[0]}.{training_record('base', SEEDS[0])}")
                    summary = summarize(catalog.load("base_to_novel.results_table"), record)
                rows.append({"parameter": key, "value": _flow(value), **summary})
                logger.info("sweep: %s=%s -> %s", key, _flow(value), summary)
    table = pl.DataFrame(rows)
    with session() as report:
        catalog = report.load_context().catalog
        catalog.save("ablations.table", table)
        catalog.save("ablations.markdown", to_markdown(table, fixed))
    return table


def _setting_conf(conf: Path, target: Path, run_env: str, folder: Path) -> Path:
    """A copy of the configuration whose data layers live in `folder` (its run environment's
    globals.yml moved there)."""
    shutil.copytree(conf, target)
    globals_file = target / run_env / "globals.yml"
    globals_file.parent.mkdir(parents=True, exist_ok=True)
    values = yaml.safe_load(globals_file.read_text()) if globals_file.exists() else None
    globals_file.write_text(yaml.safe_dump({**(values or {}), "data": str(folder)}))
    return target


def _share_prepared(data: Path, folder: Path, skip: Sequence[str]) -> None:
    """A fresh `folder` holding the prepared inputs of `data` (hard links, or copies across
    devices), but for the stages in `skip`, which the setting reruns into it."""
    if folder.exists():
        shutil.rmtree(folder)  # this setting's own outputs of an earlier sweep
    for stage, layer in PREPARED.items():
        if stage in skip or not (data / layer).is_dir():
            continue
        for source in (data / layer).rglob("*"):
            if source.is_file():
                target = folder / source.relative_to(data)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)


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
    parser.add_argument("settings", nargs="+", help="key=value[,value...], e.g. perl.steps=0,1,2")
    parser.add_argument("--env", default=None, help="Kedro environment (e.g. demo)")
    parser.add_argument(
        "--with",
        dest="fixed",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting held fixed under every row, e.g. training.lr=1e-4 (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        settings = [parse_setting(s) for s in args.settings]
        fixed = [parse_fixed(s) for s in args.fixed]
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        table = run_sweep(settings, env=args.env, fixed=fixed)
    except ConfigError as exc:  # raised by check_settings, before any run
        parser.error(str(exc))
    logger.info("sweep finished:\n%s", to_markdown(table, fixed))


if __name__ == "__main__":
    main()
