"""Speed and memory of PERL against zero-shot CLIP, measured in one run.

    python -m perl_pipeline.bench                 # ViT-B/16 (random weights), best device
    python -m perl_pipeline.bench --quick         # a fast smoke run
    python -m perl_pipeline.bench --json out.json # also write every figure as JSON

Image side: zero-shot `clip.encode_image`, PERL inference `model.encode_image` (no grad) and a PERL
training step (prefix under no_grad, refinement with grad, loss against a fixed text feature matrix,
backward, AdamW step) at a small and a large batch. Text side: PERL text features for N CoOp-style
class prompts with and without the EOS cut. Every figure is the median of a few timed repeats
after warm-up, with a device synchronisation around each call. Ratios come from the same run and are
printed next to the theory: (J + (K+1)(L-J)) / L block evaluations per zero-shot forward (32/12 for
ViT-B/16).
Weights are random: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import open_clip
import torch
from torch import nn

from perl_pipeline.device import autocast, resolve_device
from perl_pipeline.models import PERL, load_clip, perl_loss

logger = logging.getLogger(__name__)

INFERENCE_RATIO_TARGET = 2.9  # PERL inference time per image / zero-shot, at most
TEXT_SPEEDUP_TARGET = 3.0  # uncut (77 tokens) / cut text feature time, at least
TEMPLATE = "a photo of a {}, a type of pet."  # CoOp's OxfordPets prompt
PET_BREEDS = (
    "abyssinian", "american bulldog", "american pit bull terrier", "basset hound", "beagle",
    "bengal", "birman", "bombay", "boxer", "british shorthair", "chihuahua", "egyptian mau",
    "english cocker spaniel", "english setter", "german shorthaired", "great pyrenees", "havanese",
    "japanese chin", "keeshond", "leonberger", "maine coon", "miniature pinscher", "newfoundland",
    "persian", "pomeranian", "pug", "ragdoll", "russian blue", "saint bernard", "samoyed",
    "scottish terrier", "shiba inu", "siamese", "sphynx", "staffordshire bull terrier",
    "wheaten terrier", "yorkshire terrier",
)  # fmt: skip
MODIFIERS = (
    "black", "white", "long haired", "short haired", "young", "old", "spotted", "striped",
    "fluffy", "miniature", "giant", "sleeping", "wet", "muddy", "happy", "grumpy", "tiny",
    "brown and white", "golden", "grey", "curly haired", "show quality", "rescued", "playful",
    "well groomed", "three legged", "blue eyed",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures (resolved from the command line and the device)."""

    model: str
    device: str
    batch_sizes: tuple[int, ...]
    text_sizes: tuple[int, ...]
    warmup: int
    repeats: int
    budget_s: float
    split_layer: int
    steps: int
    train_classes: int
    threads: int
    seed: int


@dataclass(frozen=True)
class Timing:
    """Median wall time of `repeats` timed calls after warm-up, and the peak memory they reached."""

    seconds: float
    repeats: int
    times: tuple[float, ...]
    peak_memory_mb: float


@dataclass(frozen=True)
class ImageRow:
    """One image-side measurement: a workload at a batch size."""

    workload: str
    batch: int
    seconds: float
    repeats: int
    images_per_s: float
    ms_per_image: float
    peak_memory_mb: float
    times: tuple[float, ...]


@dataclass(frozen=True)
class TextRow:
    """One text-side measurement: PERL text features for `prompts` prompts, cut or not."""

    prompts: int
    cut: bool
    tokens: int
    seconds: float
    repeats: int
    prompts_per_s: float
    peak_memory_mb: float
    times: tuple[float, ...]


@dataclass(frozen=True)
class Target:
    """A speed target checked on this run's figures."""

    name: str
    value: float
    threshold: float
    passed: bool


WORKLOADS = ("zero_shot", "perl_inference", "perl_train_step")
WORKLOAD_LABELS = {
    "zero_shot": "zero-shot CLIP",
    "perl_inference": "PERL inference",
    "perl_train_step": "PERL train step",
}


# -- device, precision, memory ------------------------------------------------------------------


def dtype_name(device: torch.device) -> str:
    """The compute precision `autocast(device)` gives."""
    return "bfloat16 autocast (fp32 weights)" if device.type in ("cuda", "mps") else "float32"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a wall-clock interval covers the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak for the next measurement (CUDA only: a process RSS peak cannot reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory since the last reset. Elsewhere: the process peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def memory_kind(device: torch.device) -> str:
    """What the peak memory column means on this device."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated (model included), reset per measurement"
    return "process peak RSS (resource.getrusage; cumulative over the run, includes the model)"


def device_description(device: torch.device) -> str:
    """A human-readable name of the device the run uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = _cpu_model() or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"


def load_average() -> float | None:
    """The 1-minute system load before the run (other processes slow a CPU run down)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return busy, usage.ru_utime + usage.ru_stime


def others_cpu_share(start: tuple[float, float] | None, wall_s: float) -> float | None:
    """Share of the machine's CPU time that other processes used since `start` (0 = quiet)."""
    end = cpu_seconds()
    if start is None or end is None or wall_s <= 0:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, others) / (wall_s * (os.cpu_count() or 1))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# -- the one timing helper ------------------------------------------------------------------------


def measure(
    calls: Mapping[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
    budget_s: float,
    before: Callable[[str], object] | None = None,
) -> dict[str, Timing]:
    """Median wall time of each call, timed in interleaved rounds.

    Every round times each call once, so a slow spell of the machine (other processes on a shared
    CPU) hits all of them alike and their ratios stay fair. `warmup` untimed rounds come first. The
    number of timed rounds is `repeats`, lowered (to at least one) so that they take about
    `budget_s` seconds per call given the last warm-up round: minute-long CPU calls stay affordable.
    `before(name)` runs untimed before each call (e.g. to switch train / eval mode).
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    peaks = dict.fromkeys(calls, 0.0)

    def call(name: str) -> float:
        if before is not None:
            before(name)
        reset_peak_memory(device)
        seconds = _timed_call(calls[name], device)
        peaks[name] = max(peaks[name], peak_memory_mb(device))
        return seconds

    round_s = 0.0
    for _ in range(warmup):
        round_s = sum(call(name) for name in calls)
    if round_s > 0 and budget_s > 0:
        repeats = max(1, min(repeats, int(budget_s * len(calls) / round_s)))
    for _ in range(repeats):
        for name in calls:
            times[name].append(call(name))
    return {
        name: Timing(statistics.median(ts), len(ts), tuple(ts), peaks[name]) for name, ts in times.items()
    }


def _timed_call(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


# -- inputs ---------------------------------------------------------------------------------------


def class_prompts(count: int) -> list[str]:
    """`count` distinct CoOp-style prompts over pet-like class names of one to six words."""
    names = list(PET_BREEDS) + [f"{mod} {breed}" for mod in MODIFIERS for breed in PET_BREEDS]
    if count > len(names):
        raise ValueError(f"at most {len(names)} distinct class prompts, asked for {count}")
    return [TEMPLATE.format(name) for name in names[:count]]


def random_images(clip: nn.Module, batch: int, seed: int, device: torch.device) -> torch.Tensor:
    """A batch of normalised-image-like noise at the backbone's input size."""
    size = clip.visual.image_size
    height, width = size if isinstance(size, tuple) else (size, size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator).to(device)


def cut_length(model: PERL, tokens: torch.Tensor) -> int:
    """Tokens left by the EOS cut: up to and including the longest prompt's EOS."""
    return int(model.eos_index(tokens).max()) + 1


# -- workloads --------------------------------------------------------------------------------


def image_workloads(
    model: PERL,
    images: torch.Tensor,
    labels: torch.Tensor,
    fixed_text: torch.Tensor,
    optimizer: torch.optim.Optimizer,
) -> dict[str, Callable[[], object]]:
    """The three image-side calls to time, keyed by WORKLOADS."""
    device = images.device

    def zero_shot() -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return model.clip.encode_image(images)

    def perl_inference() -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return model.encode_image(images)

    def perl_train_step() -> torch.Tensor:
        with autocast(device):
            with torch.no_grad():
                prefix = model.image_prefix(images)
            image_steps = model.refine_image(prefix)
            loss = perl_loss(image_steps, fixed_text, labels, model.logit_scale).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return {
        "zero_shot": zero_shot,
        "perl_inference": perl_inference,
        "perl_train_step": perl_train_step,
    }


def text_features(model: PERL, tokens: torch.Tensor, cut: bool = True) -> torch.Tensor:
    """PERL text features for every step, no grad: text_prefix (cut or not), then refine_text."""
    with torch.no_grad(), autocast(tokens.device):
        return model.refine_text(model.text_prefix(tokens, cut=cut))


# -- the run ----------------------------------------------------------------------------------


def bench_images(
    model: PERL, settings: Settings, device: torch.device, tokenizer: Callable
) -> list[ImageRow]:
    """Zero-shot, PERL inference and PERL training step at every batch size."""
    tokens = tokenizer(class_prompts(settings.train_classes)).to(device)
    fixed_text = text_features(model, tokens).float()  # [K + 1, C, D], precomputed once
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    rows = []
    for batch in settings.batch_sizes:
        images = random_images(model.clip, batch, settings.seed, device)
        generator = torch.Generator().manual_seed(settings.seed)
        labels = torch.randint(settings.train_classes, (batch,), generator=generator).to(device)
        workloads = image_workloads(model, images, labels, fixed_text, optimizer)
        logger.info("timing %s at batch %d", ", ".join(WORKLOAD_LABELS.values()), batch)
        timings = measure(
            workloads,
            device,
            *_repeat_settings(settings),
            before=lambda name: model.train(name == "perl_train_step"),
        )
        for name in WORKLOADS:
            timing = timings[name]
            rows.append(
                ImageRow(
                    workload=name,
                    batch=batch,
                    seconds=timing.seconds,
                    repeats=timing.repeats,
                    images_per_s=batch / timing.seconds,
                    ms_per_image=1000 * timing.seconds / batch,
                    peak_memory_mb=timing.peak_memory_mb,
                    times=timing.times,
                )
            )
    model.eval()
    return rows


def bench_text(model: PERL, settings: Settings, device: torch.device, tokenizer: Callable) -> list[TextRow]:
    """PERL text features with and without the EOS cut, at every prompt count."""
    rows = []
    for count in settings.text_sizes:
        tokens = tokenizer(class_prompts(count)).to(device)
        logger.info("timing PERL text features for %d prompts, uncut and cut", count)
        calls = {cut: partial(text_features, model, tokens, cut) for cut in (False, True)}
        timings = measure(calls, device, *_repeat_settings(settings))
        for cut, timing in timings.items():
            rows.append(
                TextRow(
                    prompts=count,
                    cut=cut,
                    tokens=cut_length(model, tokens) if cut else tokens.shape[1],
                    seconds=timing.seconds,
                    repeats=timing.repeats,
                    prompts_per_s=count / timing.seconds,
                    peak_memory_mb=timing.peak_memory_mb,
                    times=timing.times,
                )
            )
    return rows


def _repeat_settings(settings: Settings) -> tuple[int, int, float]:
    return settings.warmup, settings.repeats, settings.budget_s


def theoretical_ratio(model: PERL) -> float:
    """Block evaluations per image relative to zero-shot: (J + (K + 1)(L - J)) / L."""
    depth = len(model.clip.visual.transformer.resblocks)
    j, k = model.split_layer, model.steps
    return (j + (k + 1) * (depth - j)) / depth


def compute_ratios(image_rows: Sequence[ImageRow], text_rows: Sequence[TextRow]) -> dict:
    """Per-image time ratios to zero-shot (per batch size) and uncut/cut text speed-ups."""
    seconds = {(row.workload, row.batch): row.seconds for row in image_rows}
    batches = sorted({row.batch for row in image_rows})
    text = {(row.prompts, row.cut): row.seconds for row in text_rows}
    counts = sorted({row.prompts for row in text_rows})
    return {
        "inference_vs_zero_shot": {
            str(b): seconds["perl_inference", b] / seconds["zero_shot", b] for b in batches
        },
        "train_step_vs_zero_shot": {
            str(b): seconds["perl_train_step", b] / seconds["zero_shot", b] for b in batches
        },
        "text_uncut_vs_cut": {str(n): text[n, False] / text[n, True] for n in counts},
    }


def check_targets(ratios: dict) -> list[Target]:
    """The speed targets: the inference ratio per batch size, the text speed-up per prompt count."""
    inference, limit = ratios["inference_vs_zero_shot"], INFERENCE_RATIO_TARGET
    speedup, floor = ratios["text_uncut_vs_cut"], TEXT_SPEEDUP_TARGET
    targets = [
        Target(f"PERL inference / zero-shot at batch {b} <= {limit}", v, limit, v <= limit)
        for b, v in inference.items()
    ]
    targets += [
        Target(f"text uncut / cut speed-up at {n} prompts >= {floor}", v, floor, v >= floor)
        for n, v in speedup.items()
    ]
    return targets


def run(settings: Settings) -> dict:
    """Measure everything `settings` asks for and return every figure as a JSON-able dict."""
    started, load_at_start, cpu_at_start = time.perf_counter(), load_average(), cpu_seconds()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    logger.info("building %s with random weights", settings.model)
    clip = load_clip(settings.model, pretrained=None, init_seed=settings.seed).to(device)
    model = PERL(clip, settings.split_layer, settings.steps, seed=settings.seed).to(device)
    tokenizer = open_clip.get_tokenizer(settings.model)
    image_rows = bench_images(model, settings, device, tokenizer)
    text_rows = bench_text(model, settings, device, tokenizer)
    ratios = compute_ratios(image_rows, text_rows)
    header = {
        "device": device.type,
        "device_name": device_description(device),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "dtype": dtype_name(device),
        "model": settings.model,
        "blocks": len(clip.visual.transformer.resblocks),
        "theoretical_ratio": theoretical_ratio(model),
        "memory": memory_kind(device),
        "load_average_start": load_at_start,
        "others_cpu_share": others_cpu_share(cpu_at_start, time.perf_counter() - started),
        "cpu_threads": torch.get_num_threads(),
    }
    return {
        "header": header,
        "settings": asdict(settings),
        "image": [asdict(row) for row in image_rows],
        "text": [asdict(row) for row in text_rows],
        "ratios": ratios,
        "targets": [asdict(target) for target in check_targets(ratios)],
        "total_seconds": time.perf_counter() - started,
    }


# -- report ----------------------------------------------------------------------------------------


def format_report(result: dict) -> str:
    """The figures as plain-text tables."""
    h, s = result["header"], result["settings"]
    j, k, depth = s["split_layer"], s["steps"], h["blocks"]
    blocks = j + (k + 1) * (depth - j)
    theory = f"{h['theoretical_ratio']:.2f} = (J + (K+1)(L-J))/L = {blocks}/{depth}"
    lines = [
        f"PERL benchmark | {h['device']}: {h['device_name']} | torch {h['torch']} | "
        f"open_clip {h['open_clip']} | {h['dtype']}",
        f"model {h['model']} (random weights), J={j} K={k} L={depth} | warm-up {s['warmup']}, "
        f"median of up to {s['repeats']} repeats (~{s['budget_s']:g} s per measurement)",
        f"peak memory: {h['memory']}",
        f"other processes: 1-min load {_number(h['load_average_start'])} before the run, "
        f"{_percent(h['others_cpu_share'])} of all CPU time during it (they skew the figures)",
        "",
        f"{'image encoder':<18}{'batch':>6}{'median s':>11}{'reps':>6}{'images/s':>11}"
        f"{'ms/image':>11}{'peak MiB':>10}",
    ]
    for row in result["image"]:
        lines.append(
            f"{WORKLOAD_LABELS[row['workload']]:<18}{row['batch']:>6}{row['seconds']:>11.4f}"
            f"{row['repeats']:>6}{row['images_per_s']:>11.2f}{row['ms_per_image']:>11.2f}"
            f"{row['peak_memory_mb']:>10.0f}"
        )
    lines += [
        "",
        f"{'PERL text features':<20}{'cut':>5}{'tokens':>8}{'median s':>11}{'reps':>6}"
        f"{'prompts/s':>11}{'peak MiB':>10}",
    ]
    for row in result["text"]:
        lines.append(
            f"{str(row['prompts']) + ' prompts':<20}{'yes' if row['cut'] else 'no':>5}"
            f"{row['tokens']:>8}{row['seconds']:>11.4f}{row['repeats']:>6}"
            f"{row['prompts_per_s']:>11.1f}{row['peak_memory_mb']:>10.0f}"
        )
    ratios = result["ratios"]
    lines += ["", "ratios (same run)"]
    lines.append(
        "PERL inference / zero-shot, per image: "
        + ", ".join(f"batch {b}: {v:.2f}" for b, v in ratios["inference_vs_zero_shot"].items())
        + f"   (theory {theory})"
    )
    lines.append(
        "PERL train step / zero-shot, per image: "
        + ", ".join(f"batch {b}: {v:.2f}" for b, v in ratios["train_step_vs_zero_shot"].items())
    )
    lines.append(
        "text uncut / cut speed-up: "
        + ", ".join(f"{n} prompts: {v:.2f}x" for n, v in ratios["text_uncut_vs_cut"].items())
    )
    lines += ["", "targets"]
    for target in result["targets"]:
        verdict = "PASS" if target["passed"] else "FAIL"
        lines.append(f"{verdict}  {target['name']}: {target['value']:.2f}")
    lines.append(f"\ntotal {result['total_seconds']:.0f} s")
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


# -- command line ----------------------------------------------------------------------------------


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, Path | None]:
    """Command-line options, with device-dependent defaults filled in."""
    parser = argparse.ArgumentParser(
        prog="python -m perl_pipeline.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--model", default="ViT-B-16-quickgelu", help="open_clip config or PERL-Tiny-ViT")
    add("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    add("--batch-sizes", type=int, nargs="+", help="image batches (default: 4 256 GPU, 4 16 CPU)")
    add("--text-sizes", type=int, nargs="+", help="prompt counts (default: 100 1000 GPU, 100 CPU)")
    add("--warmup", type=int, help="untimed calls before timing (default: 3 GPU, 1 CPU)")
    add("--repeats", type=int, help="timed calls, median reported (default: 10 GPU, 3 CPU)")
    add("--budget", type=float, default=35.0, help="seconds of timed calls per measurement")
    add("--split-layer", type=int, default=7, help="J, frozen blocks before the refinement")
    add("--steps", type=int, default=4, help="K, refinement steps")
    add("--train-classes", type=int, help="classes of the fixed text features (default: 100)")
    add("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    add("--seed", type=int, default=0, help="seeds the random weights and inputs")
    add("--quick", action="store_true", help="smoke run: batches 1 2, 10 prompts, 1 repeat")
    add("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)

    gpu = resolve_device(args.device).type != "cpu"
    if args.quick:
        defaults = dict(batch_sizes=(1, 2), text_sizes=(10,), warmup=1, repeats=1, classes=10)
    elif gpu:
        defaults = dict(batch_sizes=(4, 256), text_sizes=(100, 1000), warmup=3, repeats=10, classes=100)
    else:  # the uncut 77-token text pass over 1000 prompts alone takes minutes on a small CPU
        defaults = dict(batch_sizes=(4, 16), text_sizes=(100,), warmup=1, repeats=3, classes=100)

    def pick(value, key):
        return defaults[key] if value is None else value

    settings = Settings(
        model=args.model,
        device=args.device,
        batch_sizes=tuple(pick(args.batch_sizes, "batch_sizes")),
        text_sizes=tuple(pick(args.text_sizes, "text_sizes")),
        warmup=pick(args.warmup, "warmup"),
        repeats=max(1, pick(args.repeats, "repeats")),
        budget_s=args.budget,
        split_layer=args.split_layer,
        steps=args.steps,
        train_classes=pick(args.train_classes, "classes"),
        threads=args.threads,
        seed=args.seed,
    )
    return settings, args.json


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the report to stdout and, if asked, the figures to JSON."""
    logging.basicConfig(format="%(asctime)s %(message)s", stream=sys.stderr)  # others: WARNING
    logger.setLevel(logging.INFO)
    settings, json_path = parse_settings(argv)
    result = run(settings)
    sys.stdout.write(format_report(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        logger.info("figures written to %s", json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
