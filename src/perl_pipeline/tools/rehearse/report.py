"""``rehearsal.json`` and ``rehearsal.md``: the stages' figures, the machine and the projection."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from perl_pipeline.tools.rehearse.measure import StageRecord
from perl_pipeline.tools.rehearse.projection import CheckRates, StageWork, cpu_seconds


def write_reports(out: Path, document: Mapping, records: Sequence[StageRecord]) -> tuple[Path, Path]:
    """Write ``document`` as ``rehearsal.json`` and its Markdown into ``out``; return their paths."""
    json_path, md_path = out / "rehearsal.json", out / "rehearsal.md"
    json_path.write_text(json.dumps(document, indent=2))
    md_path.write_text(markdown(document, records))
    return json_path, md_path


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def markdown(document: Mapping, records: Sequence[StageRecord]) -> str:
    """The records as a table, the machine, and the projection."""
    s, m = document["settings"], document["machine"]
    full = document["full_protocol_items"]
    lines = [
        "# Full-scale rehearsal",
        "",
        f"Replica at fraction {s['fraction']} of the protocol's files ({s['image_size']} JPEGs), "
        f"backbone {s['backbone']} on {s['device']}, stages: {s['stages']}.",
        "",
        f"Machine: {m['cpu']}; {m['cores']} cores, {m['memory_gib']} GiB; GPU: {m['gpu'] or 'none'}; "
        f"torch {m['torch']}; 1-minute load average before the run {m['load_average_1min_before']:.1f}.",
        "",
        "| stage | seconds | peak RSS (MiB) | peak GPU (MiB) | items | items/s | what | in the protocol |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in records:
        gpu = "" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:.0f}"
        lines.append(
            f"| {r.stage} | {r.seconds:.1f} | {r.peak_rss_mb:.0f} | {gpu} | {r.items} | "
            f"{r.items_per_s:.1f} | {r.unit} | {full.get(r.stage, '')} |"
        )
    lines += [
        "",
        "Peak RSS: this process plus its data-loader workers, sampled every 0.2 s (a Python process "
        "keeps memory it once used, so a stage's figure includes what earlier stages left). "
        "'(unchanged inputs)': the stage run again with nothing changed; it must rewrite no output.",
    ]
    rates = document["check_rates_per_core"]
    projection = document["projection"]
    if rates:
        lines += [
            "",
            f"File checks on one core ({s['image_size']} JPEGs): decode {rates['decode']:.0f} files/s, "
            f"header read {rates['header']:.0f} files/s.",
        ]
    if rates and projection:
        check = CheckRates(**rates)
        for w in projection["work"]:
            if w["stage"] == "data_preparation":
                work = StageWork(**w)
                lines.append(
                    f"At these rates, the checks of the protocol's {w['decodes'] + w['headers']:,} files "
                    f"(data_preparation: {w['headers']:,} header reads, {w['decodes']:,} decodes) take "
                    f"{_duration(cpu_seconds(work, check, m['cores']))} on this machine's {m['cores']} cores "
                    f"and {_duration(cpu_seconds(work, check, projection['target']['host_cores']))} on "
                    f"{projection['target']['host_cores']}."
                )
    if projection:
        t, ops, steps = projection["target"], projection["model_ops"], projection["training_steps"]
        together, apart = projection["seconds_seeds_together"], projection["seconds_seeds_apart"]
        configured = "together" if projection["seeds_together"] else "apart"
        lines += [
            "",
            f"## Projection: the full protocol with ViT-B/16 on {t['name']}",
            "",
            f"FLOPs and operator calls counted on the real ViT-B/16 architecture ({ops['train_step']:,} "
            f"per training step of one seed, {ops['train_seeds_step']:,} per step of the 3 seeds together, "
            f"{ops['eval_batch']:,} per evaluation batch; the count does not grow with "
            f"the batch). Assumed, not measured: an effective throughput of {t['effective_tflops']:.0f} "
            f"TFLOP/s ({t['utilisation']:.0%} of a {t['peak_tflops']:.0f} TFLOP/s bf16 peak) and "
            f"{t['launch_us']:g} µs per operator call (eager dispatch and kernel launch). The GPU takes the "
            f"larger of compute and steps × calls × latency; JPEG work runs on {t['host_cores']} host "
            f"cores at this run's per-core rates; a stage takes the larger of the GPU and the host. "
            f"Training takes {steps['seeds_together']:,} optimiser steps with the 3 seeds together "
            f"(`training.seeds_together: true`, each step carries every seed's batch) and "
            f"{steps['seeds_apart']:,} with them apart; this configuration trains them {configured}.",
            "",
            f"| stage | TFLOPs | steps or batches (seeds {configured}) | operator calls (seeds {configured}) "
            "| decodes | header reads | seeds together | seeds apart |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for w in projection["work"]:
            lines.append(
                f"| {w['stage']} | {w['flops'] / 1e12:,.0f} | {w['steps']:,} | {w['steps'] * w['ops']:,} | "
                f"{w['decodes']:,} | {w['headers']:,} | {_duration(together[w['stage']])} | "
                f"{_duration(apart[w['stage']])} |"
            )
        lines.append(
            f"| **total** | | | | | | **{_duration(together['total'])}** | **{_duration(apart['total'])}** |"
        )
    return "\n".join(lines) + "\n"
