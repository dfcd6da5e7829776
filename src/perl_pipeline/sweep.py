"""One-factor ablation sweeps of base_to_novel (docs/method.md §7), each setting a real Kedro run.

    python -m perl_pipeline.sweep --env demo perl.steps=0,1,2,3,4,5 "perl.modalities=[image],[text]"

Each ``key=v1,v2,...`` argument varies one parameter from the environment's settings (values are
YAML; commas inside brackets belong to the value). Data preparation, few-shot draws and text
features run once when missing (again per setting only when the swept key changes them:
``perl.split_layer``, ``clip.*``); every setting retrains, re-evaluates and re-reports, and its
averages become one row of ``ablations.table`` / ``ablations.markdown``
(``08_reporting/ablations/``). A last run with the environment's own settings leaves the
protocol's outputs as a plain ``kedro run`` would.

``--with key=value`` (repeatable) holds a setting fixed under every row, e.g. the paper's own
budget on the demo under both projector initialisations:

    python -m perl_pipeline.sweep --env demo --with training.lr=1e-4 --with training.epochs=1 \
        perl.projector_init=default,zero_out
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import yaml

from perl_pipeline.evaluation.metrics import AVERAGE_HM_OF_MEANS, AVERAGE_MEAN_OF_HMS
from perl_pipeline.protocols import BASE_TO_NOVEL, SEEDS

logger = logging.getLogger(__name__)

PREPARATION = ("data_preparation", "few_shot_splits", "text_features")
PER_SETTING = ("training", "evaluation", "reporting")
FEATURE_KEYS = ("perl.split_layer", "clip.")  # keys whose change invalidates the text features
PREPARATION_KEYS = ("data_root", "data_source", "few_shot")  # keys a --with may not hold fixed


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


def merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested dictionaries key by key (neither is modified)."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = merged(out[key], value) if both else value
    return out


def parse_fixed(argument: str) -> tuple[str, object]:
    """'training.lr=1e-4' -> ('training.lr', 1e-4): one value, for a setting of training onwards."""
    key, values = parse_setting(argument)
    if len(values) != 1:
        raise ValueError(f"--with takes one value, got {argument!r}; sweep several as a setting")
    if key.split(".")[0] in PREPARATION_KEYS:
        raise ValueError(
            f"--with {argument}: the sweep prepares data once with the environment's settings; set "
            f"{key} in conf/<env>/parameters.yml instead"
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


def run_sweep(
    settings: Sequence[tuple[str, list]],
    *,
    env: str | None = None,
    project_path: Path | str = ".",
    conf_source: str | None = None,
    fixed: Sequence[tuple[str, object]] = (),
) -> pl.DataFrame:
    """Run base_to_novel once per (key, value) and save the table of their averages.

    ``fixed`` ((key, value) pairs, see :func:`parse_fixed`) is set under every setting's run.

    Returns:
        One row per setting: parameter, value, then :func:`summarize`'s columns.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from perl_pipeline.pipelines.training.pipeline import training_record

    project_path = Path(project_path).resolve()
    bootstrap_project(project_path)

    def session(params: dict | None = None) -> KedroSession:
        return KedroSession.create(
            project_path=project_path, env=env, conf_source=conf_source, runtime_params=params
        )

    base: dict = {}
    for key, value in fixed:
        base = merged(base, nested(key, value))
    fixed_features = any(key.startswith(FEATURE_KEYS) for key, _ in fixed)
    with session() as prepare:
        prepare.run(pipeline_names=["base_to_novel"], tags=list(PREPARATION), only_missing_outputs=True)
    rows = []
    for key, values in settings:
        tags = _tags(rebuild_features=fixed_features or key.startswith(FEATURE_KEYS))
        for value in values:
            logger.info("sweep: %s=%s", key, value)
            with session(merged(base, nested(key, value))) as run:
                run.run(pipeline_names=["base_to_novel"], tags=tags)
                catalog = run.load_context().catalog
                record = catalog.load(f"{BASE_TO_NOVEL[0]}.{training_record('base', SEEDS[0])}")
                summary = summarize(catalog.load("base_to_novel.results_table"), record)
            rows.append({"parameter": key, "value": _flow(value), **summary})
            logger.info("sweep: %s=%s -> %s", key, value, summary)
    table = pl.DataFrame(rows)
    with session() as restore:
        restore.run(
            pipeline_names=["base_to_novel"],
            tags=_tags(
                rebuild_features=fixed_features or any(key.startswith(FEATURE_KEYS) for key, _ in settings)
            ),
        )
        catalog = restore.load_context().catalog
        catalog.save("ablations.table", table)
        catalog.save("ablations.markdown", to_markdown(table, fixed))
    return table


def _tags(*, rebuild_features: bool) -> list[str]:
    """The stages a setting reruns: training onwards, plus text features when J or the backbone moved."""
    return [*PER_SETTING, *(["text_features"] if rebuild_features else [])]


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
    settings = [parse_setting(s) for s in args.settings]  # errors before any run
    fixed = [parse_fixed(s) for s in args.fixed]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    table = run_sweep(settings, env=args.env, fixed=fixed)
    logger.info("sweep finished:\n%s", to_markdown(table, fixed))


if __name__ == "__main__":
    main()
