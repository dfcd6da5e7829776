"""Write (or reuse) the replica, run the real Kedro stages on it one by one, measure each, and
write ``rehearsal.json`` and ``rehearsal.md``.

The rehearsal's Kedro configuration is the project's own (``conf/``) copied to ``<out>/conf``
with one more environment, ``rehearsal``: data layers under ``<out>/data``, ``data_root`` at the
replica, nothing downloaded, the replica's split sizes in place of the protocol's, a small backbone
(or ViT-B/16's architecture with random weights) and one training epoch. Each stage is one
``KedroSession`` run of that stage's pipeline over all three protocols with
``only_missing_outputs``; the data stages are then run a second time on unchanged inputs, which
must do no work.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import yaml
from tqdm.auto import tqdm

from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.pipelines.registry import STAGES
from perl_pipeline.protocols import ALL_BENCHMARKS, SEEDS, project_root
from perl_pipeline.tools.rehearse.measure import StageRecord, measure
from perl_pipeline.tools.rehearse.projection import (
    TRAINED,
    CheckRates,
    GpuTarget,
    StageWork,
    count_flops,
    count_ops,
    cpu_seconds,
    protocol_counts,
    protocol_work,
)
from perl_pipeline.tools.rehearse.projection import project as project_seconds
from perl_pipeline.tools.sweep import merged
from perl_pipeline.toy.miniature import write_replica

logger = logging.getLogger(__name__)

DATA_STAGES = {"data_preparation": "03_primary", "few_shot_splits": "05_model_input"}
"""The data stages and the data layer each writes (conf/base/catalog.yml)."""
ENV = "rehearsal"
AGAIN = " (unchanged inputs)"
UNITS = {
    "replica": "files written",
    "data_preparation": "files indexed and checked",
    "few_shot_splits": "drawn images decoded",
    "text_features": "class prompts encoded",
    "training": "training images seen",
    "evaluation": "test images scored",
    "reporting": "reports written",
}


BACKBONES = {  # the model a rehearsal runs on each device: its name, ``clip`` settings and J
    "cuda": (
        "ViT-B/16 (random weights)",
        {"model_name": "ViT-B-16-quickgelu", "pretrained": None, "cache_dir": None, "init_seed": 0},
        7,
    ),
    "cpu": (  # shipped: 4 + 4 blocks, 64 px
        "PERL-Toy-ViT (4 + 4 blocks, 64 px)",
        {"model_name": "PERL-Toy-ViT", "pretrained": "toy_world", "cache_dir": None, "init_seed": 0},
        2,
    ),
}


def rehearsal_conf(
    project: Path,
    out: Path,
    replicas: dict[str, BenchmarkSpec],
    device: str,
    fraction: float,
    params: dict | None = None,
) -> Path:
    """``<out>/conf``: the project's configuration plus the ``rehearsal`` environment (``params``
    merged over its parameters, key by key), for the backbone of `device`."""
    name, clip, split_layer = BACKBONES[device]
    conf = out / "conf"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(project / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    env = conf / ENV
    env.mkdir()
    (env / "globals.yml").write_text(yaml.safe_dump({"data": str(out / "data")}))
    settings = {
        "report_label": (
            f"REHEARSAL: a replica at fraction {fraction} of the protocol's files (generated images) "
            f"and {name}; the accuracies mean nothing, the times and memory do."
        ),
        "device": device,
        "data_root": str(out / "replica"),
        "data_source": {"kind": "download", "download": False, "tolerance": 0, "check_decode": True},
        "clip": clip,
        "perl": {"split_layer": split_layer},
        "training": {"epochs": 1, "precision": "bf16" if device == "cuda" else "fp32"},
        "evaluation": {"precision": "bf16" if device == "cuda" else "fp32"},
        **{name: {"benchmark": {"split_sizes": spec.split_sizes}} for name, spec in replicas.items()},
    }
    (env / "parameters.yml").write_text(yaml.safe_dump(merged(settings, params or {}), sort_keys=False))
    return conf


def run_stage(project: Path, conf: Path, stage: str) -> None:
    """One stage over the three protocols, in its own Kedro session (resuming: finished work is kept)."""
    from kedro.framework.session import KedroSession

    with KedroSession.create(project_path=project, env=ENV, conf_source=str(conf)) as session:
        session.run(pipeline_names=[stage], only_missing_outputs=True)


def stage_items(stage: str, data: Path, replicas: dict[str, BenchmarkSpec]) -> int:
    """What a finished stage processed: the images drawn and trained on read back from its outputs,
    the rest from the replica's sizes as the full protocol's are counted."""
    if stage == "few_shot_splits":
        trained = sorted({b for names in TRAINED.values() for b in names})
        return sum(
            pl.read_parquet(data / "05_model_input" / b / "few_shot.parquet")["path"].n_unique()
            for b in trained
        )
    if stage == "training":
        records = [
            json.loads((data / "06_models" / b / subset / f"seed_{seed}.json").read_text())
            for subset, names in TRAINED.items()
            for b in names
            for seed in SEEDS
        ]
        return sum(r["images"] * r["config"]["training"]["epochs"] for r in records)
    return protocol_counts(replicas)[stage]


def _stamps(folder: Path) -> dict[Path, int]:
    """Modification time (ns) of every file under ``folder``."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def check_rates(data: Path, data_root: Path, *, sample: int = 2000) -> CheckRates:
    """Files per second on one thread for each check, on the first ``sample`` ImageNet train files
    (header reads) and test files (full decodes) of the rehearsal's index."""
    from perl_pipeline.benchmarks.validate import check_image_files

    index = pl.read_parquet(data / "03_primary" / "imagenet" / "index.parquet")
    rates = {}
    for mode, split in (("header", "train"), ("decode", "test")):
        paths = index.filter(pl.col("split") == split)["path"].head(sample).to_list()
        start = time.perf_counter()
        check_image_files(paths, data_root, mode=mode, workers=1, desc=f"{mode} on one core")
        rates[mode] = len(paths) / max(time.perf_counter() - start, 1e-9)
    return CheckRates(**rates)


def project_protocol(
    specs: dict[str, BenchmarkSpec], rates: CheckRates, target: GpuTarget, clip_model: str, project: Path
) -> dict:
    """The full protocol's projection with ``clip_model`` under the project's own parameters
    (``conf/base``: J, K, the batch sizes and ``training.seeds_together``, default true), for seeds
    trained together and apart: ``work`` and ``seconds`` for the configured setting, the seconds
    and training steps of both."""
    params = yaml.safe_load((project / "conf" / "base" / "parameters.yml").read_text())
    perl, training = params["perl"], params["training"]
    shape = {
        key: perl[key] for key in ("split_layer", "steps", "share_projector", "share_layers") if key in perl
    }
    flops = count_flops(clip_model, **shape)
    ops = count_ops(clip_model, **shape)  # the count does not grow with the batch
    configured = bool(training.get("seeds_together", True))
    projection = {
        "target": {**vars(target), "effective_tflops": target.flops_per_s / 1e12},
        "model_ops": vars(ops),
        "seeds_together": configured,
        "training_steps": {},
    }
    for together, key in ((True, "seeds_together"), (False, "seeds_apart")):
        work = protocol_work(
            specs,
            flops,
            ops,
            batch_size=training["batch_size"],
            eval_batch_size=params["evaluation"]["batch_size"],
            seeds_together=together,
        )
        seconds = project_seconds(work, rates, target)
        projection[f"seconds_{key}"] = seconds
        projection["training_steps"][key] = sum(w.steps for w in work if w.stage.startswith("training"))
        if together == configured:
            projection |= {"work": [vars(w) for w in work], "seconds": seconds}
    return projection


def machine() -> dict:
    """The machine the rehearsal ran on (the CPU, its cores and memory, a GPU if any)."""
    import torch

    from perl_pipeline.tools.bench.harness import device_description, load_average

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return {
        "cpu": device_description(torch.device("cpu")),
        "cores": cores,
        "memory_gib": round(memory, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "load_average_1min_before": load_average(),
    }


def rehearse_and_report(
    out: Path | str,
    *,
    fraction: float = 1.0,
    stages: str = "all",
    image_size: str = "tiny",
    device: str = "auto",
    projection_model: str | None = "ViT-B-16-quickgelu",
    target: GpuTarget | None = None,
    params: dict | None = None,
) -> tuple[Path, Path]:
    """Write (or reuse) the replica under ``<out>/replica``, run the real stages on it, measure the
    per-core check rates, project the full protocol and write both reports."""
    from kedro.framework.startup import bootstrap_project

    from perl_pipeline.device import resolve_device

    if stages not in ("data", "all"):
        raise ValueError(f"stages must be 'data' or 'all', got {stages!r}")
    out = Path(out).resolve()
    project = project_root().resolve()
    bootstrap_project(project)
    used = "cuda" if resolve_device(device).type == "cuda" else "cpu"
    benchmarks = yaml.safe_load((project / "conf" / "base" / "parameters_benchmarks.yml").read_text())
    specs = {name: BenchmarkSpec.from_params(benchmarks[name]["benchmark"]) for name in ALL_BENCHMARKS}
    replicas = {}  # every benchmark's replica (reused when unchanged), measured as one stage
    with measure("replica", unit=UNITS["replica"]) as record:
        for name in tqdm(specs, desc="replica", unit="benchmark"):
            replicas[name] = write_replica(
                specs[name], out / "replica", fraction=fraction, image_size=image_size
            )
        record.items = protocol_counts(replicas)["replica"]
    records = [record]
    conf = rehearsal_conf(project, out, replicas, used, fraction, params)
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    for stage in DATA_STAGES if stages == "data" else STAGES:
        logger.info("rehearsal: %s", stage)
        with measure(stage, unit=UNITS[stage], gpu=used == "cuda" and stage not in DATA_STAGES) as record:
            run_stage(project, conf, stage)
        record.items = stage_items(stage, data, replicas)
        records.append(record)
    for stage in DATA_STAGES:
        before = _stamps(data / DATA_STAGES[stage])
        with measure(stage + AGAIN, unit="outputs rewritten") as record:
            run_stage(project, conf, stage)
        after = _stamps(data / DATA_STAGES[stage])
        record.items = sum(after.get(path) != stamp for path, stamp in before.items())
        records.append(record)

    rates = check_rates(data, out / "replica")
    document = {
        "settings": {
            "fraction": fraction,
            "image_size": image_size,
            "stages": stages,
            "device": resolve_device(device).type,
            "backbone": BACKBONES[used][0],
            "params": params or {},
            "command": f"python -m perl_pipeline.rehearse --fraction {fraction} --out {out} "
            f"--stages {stages} --image-size {image_size}",
        },
        "machine": machine(),
        "stages": [r.to_dict() for r in records],
        "full_protocol_items": protocol_counts(specs),
        "check_rates_per_core": vars(rates),
        "projection": None
        if projection_model is None
        else project_protocol(specs, rates, target or GpuTarget(), projection_model, project),
    }
    json_path, md_path = out / "rehearsal.json", out / "rehearsal.md"
    json_path.write_text(json.dumps(document, indent=2))
    md_path.write_text(markdown(document, records))
    return json_path, md_path


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def markdown(document: Mapping, records: Sequence[StageRecord]) -> str:
    """The records as a table, the machine, and the projection."""
    s, m, full = document["settings"], document["machine"], document["full_protocol_items"]
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
    rates, projection = document["check_rates_per_core"], document["projection"]
    lines += [
        "",
        "Peak RSS: this process plus its data-loader workers, sampled every 0.2 s (a Python process "
        "keeps memory it once used, so a stage's figure includes what earlier stages left). "
        "'(unchanged inputs)': the stage run again with nothing changed; it must rewrite no output.",
        "",
        f"File checks on one core ({s['image_size']} JPEGs): decode {rates['decode']:.0f} files/s, "
        f"header read {rates['header']:.0f} files/s.",
    ]
    if projection:
        w = next(w for w in projection["work"] if w["stage"] == "data_preparation")
        work, check, host = StageWork(**w), CheckRates(**rates), projection["target"]["host_cores"]
        lines.append(
            f"At these rates, the checks of the protocol's {w['decodes'] + w['headers']:,} files "
            f"(data_preparation: {w['headers']:,} header reads, {w['decodes']:,} decodes) take "
            f"{_duration(cpu_seconds(work, check, m['cores']))} on this machine's {m['cores']} cores "
            f"and {_duration(cpu_seconds(work, check, host))} on {host}."
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
