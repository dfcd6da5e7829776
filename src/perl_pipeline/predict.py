"""Classify image files or folders with a trained adapter: one CSV row per image.

    python -m perl_pipeline.predict ADAPTER IMAGES... [--classes FILE|a,b,c] [--top-k 5]
        [--step K] [--batch-size 64] [--device auto] --out predictions.csv [--overwrite]

Folders are searched recursively for image files by extension. A file that is not an image, fails
to decode or exceeds Pillow's decompression-bomb limit gets a row with its ``error`` and no classes.
``--classes`` replaces the adapter's classes (open-vocabulary); ``--step 0`` is zero-shot CLIP.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from perl_pipeline.benchmarks.layouts.image_folder import image_extensions, normalise_classname, walk_images
from perl_pipeline.models.adapter import AdapterClassifier

logger = logging.getLogger("perl_pipeline.predict")


def find_images(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the files to classify, the paths skipped while searching with the reason for each): files
    named directly (always tried), plus the image files under each folder (sorted, recursive)."""
    extensions = image_extensions()
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for given in map(Path, paths):
        if given.is_dir():
            walk_images(given, extensions, files, skipped, seen)
        elif given.is_file():
            files.append(given)
        elif given.is_symlink():
            skipped.append((given, "broken symlink"))
        else:
            skipped.append((given, "no such file or folder"))
    return files, skipped


def decode(path: Path) -> Image.Image:
    """Open and fully decode an image as RGB; ValueError for a non-image, damage or a decompression bomb."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"decompression bomb: more pixels than Pillow's limit Image.MAX_IMAGE_PIXELS="
            f"{Image.MAX_IMAGE_PIXELS} ({error})"
        ) from error
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ValueError(f"cannot decode: {type(error).__name__}: {error}") from error


class _Images(Dataset):
    """(image tensor, position, error) per file; a bad file gives a zero image and its error."""

    def __init__(self, files: Sequence[Path], transform, size: int) -> None:
        self.files, self.transform, self.size = list(files), transform, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            return self.transform(decode(self.files[i])), i, ""
        except ValueError as error:
            return torch.zeros(3, self.size, self.size), i, str(error)


def parse_classes(value: str) -> list[str]:
    """``--classes``: a file with one class name per line (``#`` comments ignored), or a,b,c."""
    path = Path(value)
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        names = [name.strip() for name in value.split(",") if name.strip()]
    return check_classnames(names)


def check_classnames(names: Sequence[str]) -> list[str]:
    """Refuse fewer than 2 class names or names that read the same in a prompt (naming them)."""
    if len(names) < 2:
        raise ValueError(f"need at least 2 class names to classify, got {list(names)}")
    first: dict[str, str] = {}
    for name in names:
        key = normalise_classname(name)
        if key in first:
            raise ValueError(f"class names {first[key]!r} and {name!r} collide: both read {key!r}")
        first[key] = name
    return list(names)


def predict_files(
    classifier: AdapterClassifier,
    files: Sequence[Path],
    *,
    skipped: Sequence[tuple[Path, str]] = (),
    top_k: int = 5,
    step: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | None = None,
    precision: str = "auto",
    progress: bool = True,
) -> tuple[list[dict], float]:
    """Classify `files` in batches; return (one row per file, in order, then one per path `skipped`
    while searching; images/s over those that decoded).

    A row holds ``path``, ``step``, ``class_i``/``prob_i`` for i = 1..k and ``error`` (empty, or why).
    """
    from perl_pipeline.benchmarks.images import test_transform
    from perl_pipeline.device import autocast

    device = device or next(classifier.parameters()).device
    step = classifier.steps if step is None else step
    k = min(top_k, len(classifier.classnames))
    blank = {f"{kind}_{i}": "" for i in range(1, k + 1) for kind in ("class", "prob")}
    for path, reason in skipped:
        logger.warning("skipping %s: %s", path, reason)
    images = _Images(files, test_transform(classifier.image_size), classifier.image_size)
    pin = device.type == "cuda"
    loader = DataLoader(
        images, batch_size=batch_size, num_workers=num_workers, pin_memory=pin, persistent_workers=False
    )
    rows: list[dict] = [{}] * len(files)
    good, start = 0, time.perf_counter()
    with tqdm(total=len(files), unit="img", desc="predict", disable=not progress) as bar:
        for batch, positions, errors in loader:
            ok = [j for j, error in enumerate(errors) if not error]
            if ok:
                with autocast(device, precision):
                    probs = classifier(batch[ok].to(device, non_blocking=True), step=step)
                top = probs.float().cpu().topk(k, dim=-1)
            for j, (position, error) in enumerate(zip(positions.tolist(), errors, strict=True)):
                row = {"path": str(files[position]), "step": step, **blank, "error": error}
                if error:
                    logger.warning("skipping %s: %s", files[position], error)
                else:
                    r = ok.index(j)
                    for i in range(k):
                        row[f"class_{i + 1}"] = classifier.classnames[int(top.indices[r, i])]
                        row[f"prob_{i + 1}"] = round(float(top.values[r, i]), 6)
                rows[position] = row
            good += len(ok)
            bar.update(len(errors))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    rows += [{"path": str(path), "step": step, **blank, "error": reason} for path, reason in skipped]
    return rows, (good / seconds if seconds > 0 else 0.0)


def write_predictions(rows: Sequence[dict], out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the rows as CSV atomically; an existing `out` is refused unless `overwrite`."""
    from perl_pipeline.provenance import write_text_atomic

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["path", "step", "error"])
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out, text.getvalue(), "predictions")
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m perl_pipeline.predict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("adapter", help="adapter file written by training (*.adapter.safetensors)")
    parser.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="CSV to write (refused if it exists)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--classes", help="a file (one name per line) or a,b,c: classify among these")
    parser.add_argument("--top-k", type=int, default=5, help="classes per row (default 5)")
    parser.add_argument("--step", type=int, default=None, help="refinement step (default K; 0: zero-shot)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda")
    parser.add_argument("--pretrained", help="backbone weights file, if not where training had it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0: written, 2: refused input)."""
    from perl_pipeline.config import EvalConfig
    from perl_pipeline.device import resolve_device
    from perl_pipeline.models.adapter import AdapterFileError, BackboneMismatchError, load_adapter

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")  # unless configured
    try:
        if args.top_k < 1:
            raise ValueError(f"--top-k {args.top_k}: expected an integer >= 1")
        if Path(args.out).exists() and not args.overwrite:
            raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
        classes = parse_classes(args.classes) if args.classes else None
        device = resolve_device(args.device)
        classifier = load_adapter(args.adapter, pretrained=args.pretrained, device=device)
        if args.step is not None and not 0 <= args.step <= classifier.steps:
            raise ValueError(f"--step {args.step} is outside 0..{classifier.steps} (the adapter's K)")
        if classes is not None:
            classifier.set_classes(classes)
        files, skipped = find_images(args.images)
        if not files:
            raise ValueError(f"no image files in {args.images}")
    except (ValueError, FileExistsError, AdapterFileError, BackboneMismatchError) as error:
        logger.error("%s", error)
        return 2
    workers = args.workers
    if workers is None:  # evaluation.num_workers' auto, at most 8; none on the CPU
        workers = min(8, EvalConfig().resolved_workers()) if device.type == "cuda" else 0
    rows, rate = predict_files(
        classifier,
        files,
        skipped=skipped,
        top_k=args.top_k,
        step=args.step,
        batch_size=args.batch_size,
        num_workers=workers,
        device=device,
        progress=not args.no_progress,
    )
    write_predictions(rows, args.out, overwrite=args.overwrite)
    bad = sum(1 for row in rows if row["error"])
    msg = "%d images classified (%d skipped, named above) at step %d among %d classes: %.1f images/s on %s; "
    step, n_classes = rows[0]["step"], len(classifier.classnames)
    logger.info(msg + "wrote %s", len(rows) - bad, bad, step, n_classes, rate, device, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
