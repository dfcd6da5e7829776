"""The full-scale rehearsal: the real protocol's volume, end to end, measured.

    python -m perl_pipeline.rehearse --fraction 1.0 --out /scratch/rehearsal [--stages data|all]
        [--image-size tiny|real]

writes (or reuses) a replica of all 15 benchmarks at their true class counts and ``fraction`` of
their split sizes (:func:`~perl_pipeline.toy.miniature.write_replica`), runs the real Kedro
stages on it (:mod:`.run`), measures each (:mod:`.measure`) and writes ``rehearsal.json`` and
``rehearsal.md`` with the full protocol's time projected for ViT-B/16 on one GPU
(:mod:`.projection`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from perl_pipeline.tools.rehearse.projection import GpuTarget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perl_pipeline.rehearse",
        description="Run the real pipelines on a replica of the protocol's files and measure every stage.",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the replica, outputs and records")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of every split (every class kept)")
    parser.add_argument("--stages", choices=("data", "all"), default="all")
    parser.add_argument("--image-size", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--projection-model",
        default="ViT-B-16-quickgelu",
        help="the architecture whose FLOPs and operator calls the projection counts ('none': none)",
    )
    parser.add_argument(
        "--params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter set over the rehearsal's (repeatable), e.g. perl.modalities=[image]",
    )
    parser.add_argument("--gpu-utilisation", type=float, default=GpuTarget.utilisation)
    parser.add_argument("--host-cores", type=int, default=GpuTarget.host_cores)
    parser.add_argument(
        "--launch-us",
        type=float,
        default=GpuTarget.launch_us,
        help="assumed microseconds per operator call on the GPU (dispatch and kernel launch)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    existing = next((p for p in (args.out, *args.out.parents) if p.exists()), None)  # before any work
    if existing is not None and not existing.is_dir():
        parser.error(
            f"--out {args.out}: {existing} is a file, not a folder; give a folder (created if missing) "
            "for the replica, the stages' outputs and the records, e.g. --out /scratch/rehearsal"
        )
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        parser.error(
            f"--out {args.out}: {existing} cannot be written by this user; give a folder you can write"
        )
    from perl_pipeline.tools.rehearse.run import rehearse_and_report
    from perl_pipeline.tools.sweep import fixed_params, parse_setting

    settings = []
    for argument in args.params:
        try:
            key, values = parse_setting(argument)
        except ValueError as exc:
            parser.error(f"--params {argument}: {exc}")
        settings.append((key, values[0] if len(values) == 1 else values))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    json_path, md_path = rehearse_and_report(
        args.out,
        fraction=args.fraction,
        stages=args.stages,
        image_size=args.image_size,
        device=args.device,
        projection_model=None if args.projection_model == "none" else args.projection_model,
        target=GpuTarget(
            utilisation=args.gpu_utilisation, host_cores=args.host_cores, launch_us=args.launch_us
        ),
        params=fixed_params(settings),
    )
    sys.stdout.write(md_path.read_text())
    logging.getLogger(__name__).info("written: %s and %s", json_path, md_path)
    return 0
