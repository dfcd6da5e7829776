"""Result tables (results.csv) and Markdown reports (results.md) of the protocols.

Each report takes the per-run table and the benchmarks' `paper_names` and returns ``(table,
markdown)``: the protocol's summary from `metrics` with the paper's numbers added as
``perl_reported_<metric>`` / ``clip_reported_<metric>`` columns, and the paper's layout (one row per
`_METHOD_ROWS`). Averages, ours and the paper's alike, run over the benchmarks present, so a partial
run (the demo) stays comparable; the paper's own averages are listed apart.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import polars as pl

from perl_pipeline.evaluation.metrics import (
    AVERAGE_HM_OF_MEANS,
    AVERAGE_MEAN_OF_HMS,
    TARGET_AVERAGE,
    harmonic_mean,
    hm_rounding_tolerance,
    summarize_base_to_novel,
    summarize_transfer,
)
from perl_pipeline.evaluation.reference import load_reported
from perl_pipeline.protocols import ALL_BENCHMARKS, PROTOCOLS, SOURCE, Protocol

if TYPE_CHECKING:
    from perl_pipeline.benchmarks.spec import BenchmarkSpec

logger = logging.getLogger(__name__)


class Benchmark(NamedTuple):
    """How a benchmark appears in the paper."""

    reported: str
    title: str

    @classmethod
    def from_spec(cls, spec: BenchmarkSpec) -> Benchmark:
        """A benchmark's ``reported_as`` key and ``title``, from its spec."""
        return cls(spec.reported_name, spec.title)


def paper_names(specs: Mapping[str, BenchmarkSpec]) -> dict[str, Benchmark]:
    """{benchmark name: how the paper names it}, in the order of ``specs``."""
    return {name: Benchmark.from_spec(spec) for name, spec in specs.items()}


_UNIFIED = "unified_1epoch_16shot"
_DEFAULT = "baselines_default_settings"
_PAPER_TABLE = {
    (_UNIFIED, "base_to_novel"): "Tables 1 and 5",
    (_DEFAULT, "base_to_novel"): "Table 6",
    (_UNIFIED, "cross_dataset"): "Table 2",
    (_DEFAULT, "cross_dataset"): "Table 7",
    (_DEFAULT, "domain_generalization"): "Table 8",
    (_UNIFIED, "all_classes"): "none: not a protocol of the paper",
}
_AVERAGE_CONVENTION = {
    "hm_mean_of_datasets": "mean of the per-dataset HMs (PERL paper)",
    "hm": "HM of mean base and mean novel (CoOp lineage)",
}
_MISSING = "—"
_AVERAGE_TITLES = {AVERAGE_MEAN_OF_HMS: "Average", TARGET_AVERAGE: "Target average"}
_REPORTED_PROTOCOL = {"domain_generalization": _DEFAULT}  # reported_results.csv's; else _UNIFIED


def _reported_protocol(protocol: Protocol) -> str:
    return _REPORTED_PROTOCOL.get(protocol.name, _UNIFIED)


def _paper_table(protocol: Protocol) -> str:
    return _PAPER_TABLE[(_reported_protocol(protocol), protocol.name)]


class _MethodRow(NamedTuple):
    """A row of the comparison tables and where its numbers sit in the results table."""

    label: str
    prefix: str  # column prefix in the results table
    reported_method: str | None  # method in reported_results.csv; None for our own rows


_METHOD_ROWS = (
    _MethodRow("PERL (reported)", "perl_reported_", "PERL"),
    _MethodRow("CLIP (reported)", "clip_reported_", "CLIP"),
    _MethodRow("PERL (ours)", "", None),
    _MethodRow("CLIP zero-shot (ours, step 0)", "zeroshot_", None),
)
_REPORTED_ROWS = tuple(row for row in _METHOD_ROWS if row.reported_method)


# --------------------------------------------------------------------------- reference data


def _attach_reported(
    summary: pl.DataFrame, protocol: Protocol, metrics: Sequence[str], benchmarks: Mapping[str, Benchmark]
) -> pl.DataFrame:
    """Add the paper's PERL / CLIP numbers to a summary, re-averaged over the present benchmarks."""
    to_benchmark = {info.reported: name for name, info in benchmarks.items()}
    prefixes = {row.reported_method: row.prefix for row in _REPORTED_ROWS}
    columns = [f"{prefix}{metric}" for prefix in prefixes.values() for metric in metrics]
    wide = (
        load_reported()
        .filter(
            (pl.col("protocol") == _reported_protocol(protocol))
            & (pl.col("setting") == protocol.name)
            & pl.col("method").is_in(list(prefixes))
            & pl.col("metric").is_in(list(metrics))
            & pl.col("dataset").is_in(list(to_benchmark))
        )
        .select(
            pl.col("dataset").replace_strict(to_benchmark).alias("benchmark"),
            pl.col("method").replace_strict(prefixes) + pl.col("metric"),
            "value",
        )
        .pivot(on="method", index="benchmark", values="value")
    )
    table = (
        summary.join(wide, on="benchmark", how="left", maintain_order="left")
        .with_columns(pl.lit(None, pl.Float64).alias(c) for c in columns if c not in wide.columns)
        .select(*summary.columns, *columns)
    )
    averaged = table.filter(pl.col("role").is_in(["benchmark", "target"]))
    means = averaged.select(pl.col(columns).mean()).row(0, named=True)
    is_average = pl.col("role") == "average"
    updates = {
        c: pl.when(is_average).then(pl.lit(means[c], pl.Float64)).otherwise(pl.col(c)) for c in columns
    }
    for prefix in prefixes.values() if "hm" in metrics else ():
        base, novel = means[f"{prefix}base"], means[f"{prefix}novel"]
        hm_of_means = None if None in (base, novel) else harmonic_mean(base, novel)
        updates[f"{prefix}hm"] = (
            pl.when(pl.col("benchmark") == AVERAGE_HM_OF_MEANS)
            .then(pl.lit(hm_of_means, pl.Float64))
            .otherwise(updates[f"{prefix}hm"])
        )
    return table.with_columns(**updates)


# --------------------------------------------------------------------------- rendering


def _fmt(value: float | None, std: float | None = None, n_seeds: int = 1, digits: int = 2) -> str:
    """``value ± std`` to `digits` decimals; the std only with ≥ 2 seeds; "—" when missing."""
    if value is None or value != value:
        return _MISSING
    text = f"{value:.{digits}f}"
    if n_seeds >= 2 and std is not None and std == std:
        text += f" ± {std:.{digits}f}"
    return text


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, left_align: str = ":---"
) -> str:
    """A GitHub Markdown table, the first `left` columns left-aligned, the others right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([left_align] * left + ["---:"] * (len(header) - left)) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def _row_title(name: str, benchmarks: Mapping[str, Benchmark]) -> str:
    return benchmarks[name].title if name in benchmarks else name[:1].upper() + name[1:]


def _cell(row: dict | None, prefix: str, metric: str, with_std: bool, digits: int = 2) -> str:
    if row is None:
        return _MISSING
    std = row.get(f"{prefix}{metric}_std") if with_std else None
    return _fmt(row.get(f"{prefix}{metric}"), std, row.get("n_seeds") or 1, digits)


def _method_table(table: pl.DataFrame, columns: Sequence[tuple[str, str, Sequence[str]]]) -> str:
    """Paper layout: one row per method (`_METHOD_ROWS`), one column per (title, table row, metrics)."""
    by_benchmark = {row["benchmark"]: row for row in table.iter_rows(named=True)}
    rows = []
    for method in _METHOD_ROWS:
        cells = [method.label]
        for _, benchmark, metrics in columns:
            row = by_benchmark.get(benchmark)
            cells.append(
                " / ".join(_cell(row, method.prefix, m, not method.reported_method) for m in metrics)
            )
        rows.append(cells)
    return markdown_table(["Method", *(title for title, _, _ in columns)], rows)


def _select(
    runs: pl.DataFrame, protocol: Protocol, benchmarks: Mapping[str, Benchmark]
) -> tuple[pl.DataFrame, list[str], list[str]]:
    """The runs of a protocol's benchmarks, in paper order."""
    in_subsets = runs.filter(pl.col("subset").is_in(list(protocol.subsets)))
    names = in_subsets["benchmark"].unique(maintain_order=True).to_list()
    unknown = [name for name in names if name not in benchmarks]
    if unknown:
        logger.warning("benchmarks %s are not known to the report and are left out", unknown)
    present = [name for name in protocol.benchmarks if name in names]
    selected = in_subsets.filter(pl.col("benchmark").is_in(present)).sort(
        pl.col("benchmark").cast(pl.Enum(present)), maintain_order=True
    )
    return selected, present, unknown


def _alignment_section(
    table: pl.DataFrame, benchmarks: Mapping[str, Benchmark], subsets: Sequence[str] = ("",)
) -> tuple[str, str]:
    """The section of our image and text alignment with zero-shot CLIP, per subset: one row per
    benchmark and the first average row."""
    metrics = [
        (f"{tower}_alignment_{s}".rstrip("_"), f"cos({v}0, {v}K) {s}".rstrip())
        for tower, v in (("image", "v"), ("text", "t"))
        for s in subsets
    ]
    shown = pl.concat(
        [table.filter(pl.col("role") != "average"), table.filter(pl.col("role") == "average").head(1)]
    )
    rows = [
        [
            _AVERAGE_TITLES.get(row["benchmark"], _row_title(row["benchmark"], benchmarks)),
            *(_cell(row, "", m, True, digits=4) for m, _ in metrics),
        ]
        for row in shown.iter_rows(named=True)
    ]
    body = markdown_table(["Benchmark", *(title for _, title in metrics)], rows)
    return "Alignment with zero-shot CLIP at step K (ours)", body


def _seeds_line(runs: pl.DataFrame, present: Sequence[str], benchmarks: Mapping[str, Benchmark]) -> str:
    seeds = runs.group_by("benchmark", maintain_order=True).agg(pl.col("seed").unique().sort())
    per_benchmark = dict(seeds.iter_rows())
    counts = {len(s) for s in per_benchmark.values()}
    if len(counts) == 1:
        ids = sorted(set().union(*map(set, per_benchmark.values())))
        n = counts.pop()
        if len(ids) == n:
            spread = "mean ± sample std over seeds" if n >= 2 else "a single seed, so no std"
            return f"- Seeds: {n} ({', '.join(map(str, ids))}); our values are {spread}."
    listing = ", ".join(f"{_row_title(b, benchmarks)} {len(per_benchmark[b])}" for b in present)
    return f"- Seeds per benchmark: {listing}; ± std is shown where there are ≥ 2 seeds."


def _document(
    protocol: Protocol,
    label: str,
    runs: pl.DataFrame,
    table: pl.DataFrame,
    present: Sequence[str],
    unknown: Sequence[str],
    sections: Sequence[tuple[str, str]],
    benchmarks: Mapping[str, Benchmark],
    setup: str = "",
) -> str:
    """The report: heading, label, seeds/coverage/setup lines, then titled sections."""
    missing = ", ".join(_row_title(b, benchmarks) for b in protocol.benchmarks if b not in present)
    lines = [f"## {protocol.title}", "", *([f"> **{label}**", ""] if label else [])]
    lines.append(
        f"- Benchmarks present ({len(present)}/{len(protocol.benchmarks)}): "
        f"{', '.join(_row_title(b, benchmarks) for b in present) or 'none'}."
        + (f" Missing: {missing}." if missing else "")
    )
    if present:
        lines += [
            _seeds_line(runs, present, benchmarks),
            f'- "PERL (ours)" is step K = {table["final_step"][0]} of the recurrent loop; '
            '"CLIP zero-shot (ours, step 0)" is step 0 of the same runs.',
            "- Averages (ours and reported alike) are over the benchmarks present; reported "
            f"numbers are the PERL paper's ({_paper_table(protocol)}).",
        ]
    else:
        lines.append("- No benchmark of this protocol was evaluated.")
    if setup:
        lines.append(f"- {setup}")
    if unknown:
        lines.append(f"- Left out (not known to the report): {', '.join(unknown)}.")
    for row in _REPORTED_ROWS:
        columns = [c for c in table.columns if c.startswith(row.prefix)]
        if present and table.select(pl.all_horizontal(pl.col(columns).is_null()).all()).item():
            lines.append(f"- {row.label}: the paper reports no such row for this protocol.")
    for heading, body in sections:
        lines += ["", f"### {heading}", "", body]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- notes from the paper


def _published_averages(protocol: Protocol, metric_filter: Sequence[str]) -> pl.DataFrame:
    """The paper's own average rows for PERL and CLIP in a setting, one row per (table, method)."""
    reported = load_reported().filter(
        (pl.col("setting") == protocol.name)
        & pl.col("dataset").is_in(["average", "target_average"])
        & pl.col("method").is_in([row.reported_method for row in _REPORTED_ROWS])
        & pl.col("metric").is_in(list(metric_filter))
    )
    return reported.pivot(on="metric", index=["protocol", "method"], values="value")


def _base_to_novel_published() -> str:
    """The paper's base-to-novel averages for PERL and CLIP, with the convention of each table."""
    averages = _published_averages(PROTOCOLS["base_to_novel"], ["base", "novel", "hm", "hm_mean_of_datasets"])
    averages = averages.sort(
        pl.col("protocol").cast(pl.Enum([_UNIFIED, _DEFAULT])), "method", descending=[False, True]
    )
    rows, first_seen, repeats = [], {}, []
    for row in averages.iter_rows(named=True):
        hm_metric = "hm_mean_of_datasets" if row.get("hm_mean_of_datasets") is not None else "hm"
        values = (row["method"], row["base"], row["novel"], row[hm_metric])
        table = _PAPER_TABLE[(row["protocol"], "base_to_novel")]
        if values in first_seen:
            repeats.append(f"{row['method']}'s row in {table} repeats {first_seen[values]}.")
            continue
        first_seen[values] = table
        rows.append([row["method"], table, _AVERAGE_CONVENTION[hm_metric], *(_fmt(v) for v in values[1:])])
    header = ["Method", "Paper table", "HM average convention", "Base", "Novel", "HM"]
    return "\n\n".join(
        [
            "As printed, over all 11 datasets. CLIP's Table 6 row is the average published in the "
            "CoOp-lineage papers, so its novel average differs from the mean of the per-dataset "
            "values of Tables 1 and 5.",
            markdown_table(header, rows, left=3),
            *repeats,
        ]
    )


def _hm_consistency_notes(table: pl.DataFrame, benchmarks: Mapping[str, Benchmark]) -> str | None:
    """Reported per-dataset HMs that are not 2BN/(B+N) of the reported B and N within rounding."""
    notes = []
    for row in table.filter(pl.col("role") == "benchmark").iter_rows(named=True):
        for method in _REPORTED_ROWS:
            base, novel, hm = (row[f"{method.prefix}{m}"] for m in ("base", "novel", "hm"))
            if None in (base, novel, hm):
                continue
            recomputed = harmonic_mean(base, novel)
            if abs(hm - recomputed) > hm_rounding_tolerance(base, novel):
                notes.append(
                    f"- {method.label}, {_row_title(row['benchmark'], benchmarks)}: printed HM "
                    f"{hm:.2f}, but 2BN/(B+N) of the printed {base:.2f} / {novel:.2f} "
                    f"is {recomputed:.2f}."
                )
    if not notes:
        return None
    return (
        "The paper's HM is shown as printed; where it differs from 2BN/(B+N) of its own base "
        "and novel by more than rounding allows:\n\n" + "\n".join(notes)
    )


# --------------------------------------------------------------------------- the three reports


def base_to_novel_report(
    runs: pl.DataFrame, *, benchmarks: Mapping[str, Benchmark], label: str = "", setup: str = ""
) -> tuple[pl.DataFrame, str]:
    """Base-to-novel results beside the paper's (its Tables 1 and 5)."""
    protocol = PROTOCOLS["base_to_novel"]
    selected, present, unknown = _select(runs, protocol, benchmarks)
    # your own benchmarks (e.g. an ``image_folder`` block) have no reported numbers and stay out of the
    # averages: a number beside the paper's must mean the same thing
    yours = dataclasses.replace(protocol, benchmarks=tuple(b for b in benchmarks if b not in ALL_BENCHMARKS))
    own_runs, own, _ = _select(runs, yours, benchmarks)
    metrics = ("base", "novel", "hm")
    table = summarize_base_to_novel(selected)  # the averages are over the paper's benchmarks only
    if own:  # your own benchmarks: their rows, after the averages, never in them
        own_rows = summarize_base_to_novel(own_runs).filter(pl.col("role") == "benchmark")
        table = pl.concat([table, own_rows.select(table.columns)]) if table.height else own_rows
    table = _attach_reported(table, protocol, metrics, benchmarks)
    sections = []
    if present or own:
        averages = [
            ("Avg Base", AVERAGE_MEAN_OF_HMS, ("base",)),
            ("Avg Novel", AVERAGE_MEAN_OF_HMS, ("novel",)),
            ("Avg HM (mean of HMs)", AVERAGE_MEAN_OF_HMS, ("hm",)),
            ("Avg HM (HM of means)", AVERAGE_HM_OF_MEANS, ("hm",)),
        ]
        table1 = [(_row_title(b, benchmarks), b, ("hm",)) for b in present]
        table1 += (averages if present else []) + [
            (f"{_row_title(b, benchmarks)} (yours, not averaged)", b, ("hm",)) for b in own
        ]
        table5 = [(f"{_row_title(b, benchmarks)} (B / N / HM)", b, metrics) for b in present + own]
        sections += [
            (
                "HM per dataset and averages (layout of the paper's Table 1)",
                _method_table(table, table1)
                + '\n\n"mean of HMs" averages the per-dataset HMs (the PERL paper\'s convention); '
                '"HM of means" is the HM of Avg Base and Avg Novel (the CoOp lineage\'s).',
            ),
            ("Base / Novel / HM per dataset (layout of the paper's Table 5)", _method_table(table, table5)),
            _alignment_section(table, benchmarks, ("base", "novel")),
        ]
        notes = _hm_consistency_notes(table, benchmarks)
        if notes:
            sections.append(("Consistency of the reported HMs", notes))
    sections.append(("The paper's own averages", _base_to_novel_published()))
    return table, _document(protocol, label, selected, table, present, unknown, sections, benchmarks, setup)


def all_classes_report(
    runs: pl.DataFrame, *, benchmarks: Mapping[str, Benchmark], label: str = "", setup: str = ""
) -> tuple[pl.DataFrame, str]:
    """All-class few-shot results on your own benchmarks (K shots of every class, each scored on
    its own test split over all its classes): accuracy at step K beside zero-shot CLIP (step 0)."""
    title = "All-class few-shot (K shots of every class, its own test split)"
    protocol = Protocol("all_classes", title, tuple(benchmarks), tuple(benchmarks), "all")
    return _transfer_report(protocol, runs, benchmarks=benchmarks, label=label, setup=setup, source="")


def _transfer_report(
    protocol: Protocol,
    runs: pl.DataFrame,
    *,
    benchmarks: Mapping[str, Benchmark],
    label: str = "",
    setup: str = "",
    source: str = SOURCE,
) -> tuple[pl.DataFrame, str]:
    """Shared body of the cross-dataset, domain-generalisation and (no `source`) all-class reports."""
    selected, present, unknown = _select(runs, protocol, benchmarks)
    table = _attach_reported(summarize_transfer(selected, source=source), protocol, ("accuracy",), benchmarks)
    sections = []
    targets = [b for b in present if b != source]
    if present:
        columns = [
            (f"{_row_title(b, benchmarks)} (source)", b, ("accuracy",)) for b in present if b == source
        ]
        columns += [(_row_title(b, benchmarks), b, ("accuracy",)) for b in targets]
        if targets:
            average = f"{'Target average' if source else 'Average'} ({len(targets)})"
            columns.append((average, TARGET_AVERAGE, ("accuracy",)))
        if source:
            title = f"Top-1 accuracy (layout of the paper's {_paper_table(protocol)})"
            note = "\n\nThe target average excludes the source (ImageNet)."
        else:
            title, note = "Top-1 accuracy over all classes", ""
        sections += [(title, _method_table(table, columns) + note), _alignment_section(table, benchmarks)]
    if source:
        published = _published_averages(protocol, ["accuracy"])
        parts = [
            f"{row['method']} {_fmt(row['accuracy'])}"
            for row in published.iter_rows(named=True)
            if row["protocol"] == _reported_protocol(protocol)
        ]
        summary = f"Over all {len(protocol.benchmarks) - 1} targets ({_paper_table(protocol)})"
        sections.append(
            ("The paper's own target average", f"{summary}: {'; '.join(parts) or 'not reported'}.")
        )
    return table, _document(protocol, label, selected, table, present, unknown, sections, benchmarks, setup)


cross_dataset_report = partial(_transfer_report, PROTOCOLS["cross_dataset"])
"""Cross-dataset transfer beside the paper's Table 2 (source ImageNet, 10 targets)."""
domain_generalization_report = partial(_transfer_report, PROTOCOLS["domain_generalization"])
"""Domain generalisation beside the paper's Table 8 (source ImageNet; -V2, -Sketch, -A, -R)."""


PROTOCOL_REPORTS = {
    "base_to_novel": base_to_novel_report,
    "cross_dataset": cross_dataset_report,
    "domain_generalization": domain_generalization_report,
    "all_classes": all_classes_report,
}


def protocol_report(
    protocol: str,
    runs: Mapping[str, pl.DataFrame],
    blocks: Mapping[str, dict],
    training_record: dict,
    label: str = "",
) -> tuple[pl.DataFrame, str, dict, pl.DataFrame, dict]:
    """Every report of `protocol` over its benchmarks' per-run tables (`runs`, in their order), titled
    by their ``params:<b>.benchmark`` `blocks`; `training_record` gives the setup line and the
    trainable-parameter count. Returns the results table (CSV), results Markdown, DVC metrics
    (JSON), per-step table (CSV, DVC plots) and the figures {file name: Figure}.
    """
    from perl_pipeline.benchmarks.spec import BenchmarkSpec
    from perl_pipeline.evaluation import plots
    from perl_pipeline.evaluation.metrics import per_step_table

    if set(blocks) != set(runs):
        raise ValueError(
            f"the {protocol} report needs a runs table and a benchmark block for each of {list(runs)}, "
            f"got blocks for {list(blocks)}"
        )
    names = paper_names({name: BenchmarkSpec.from_params(blocks[name]) for name in runs})
    titles = {name: paper.title for name, paper in names.items()}
    combined = pl.concat(list(runs.values()), how="vertical")
    table, markdown = PROTOCOL_REPORTS[protocol](
        combined, benchmarks=names, label=label, setup=setup_line(training_record)
    )
    figures = {
        "accuracy_per_step.png": plots.accuracy_per_step_figure(combined, titles=titles),
        "alignment_per_step.png": plots.alignment_per_step_figure(combined, titles=titles),
        "dynamics_per_step.png": plots.dynamics_per_step_figure(combined),
    }
    parameters = training_record["trainable_parameters"]
    average = table.filter(pl.col("benchmark") == AVERAGE_MEAN_OF_HMS)
    if protocol == "base_to_novel" and average.height:  # no paper benchmark run: no average to place
        figures["params_vs_hm.png"] = plots.params_vs_hm_figure(average["hm"].item(), parameters)
    metrics = {**dvc_metrics(table), "trainable_parameters": parameters}
    return table, markdown, metrics, per_step_table(combined), figures


def setup_line(training_record: dict) -> str:
    """ "Few-shot draw: ...; projector init: ..." from a training record ("" if it names neither)."""
    parts = []
    draw = training_record.get("few_shot_draw")
    if draw:
        why = {"coop": "the CoOp lineage's images", "sorted": "paths sorted per class"}.get(draw, "")
        parts.append(f"Few-shot draw: {draw}" + (f" ({why})" if why else ""))
    init = training_record.get("projector_init")
    if init:
        parts.append(f"projector init: {init}")
    return "; ".join(parts) + "." if parts else ""


def dvc_metrics(table: pl.DataFrame) -> dict:
    """{benchmark or average row: {metric: value}} for `dvc metrics show` / `dvc exp show` (and the
    ablation table of ``perl_pipeline.tools.sweep``)."""
    columns = ("base", "novel", "hm", "accuracy", "zeroshot_base", "zeroshot_novel", "zeroshot_hm")
    columns += tuple(f"{c}_std" for c in ("base", "novel", "hm", "accuracy"))  # over seeds
    alignments = ("zeroshot_accuracy", "image_alignment_base", "text_alignment_base")
    keep = [c for c in (*columns, *alignments) if c in table.columns]
    return {
        row["benchmark"]: {c: round(row[c], 4) for c in keep if row[c] is not None}
        for row in table.select("benchmark", *keep).iter_rows(named=True)
    }
