"""What the benchmark times: its settings, inputs and workloads, and the JSON rows they produce."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import yaml
from torch import nn

from perl_pipeline.config import EvalConfig, TrainConfig, split_depths
from perl_pipeline.device import autocast
from perl_pipeline.models import PERL
from perl_pipeline.protocols import project_root
from perl_pipeline.tools.bench.harness import Timing, measure
from perl_pipeline.tools.sweep import parse_fixed
from perl_pipeline.training import training_step, training_step_together

logger = logging.getLogger(__name__)

TRAIN_CONFIG = TrainConfig()  # the training defaults: bf16 autocast on GPUs, anchor weight 1

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
    seeds: int = 3
    train_batch: int = 4
    eval_images: int = 32


WORKLOADS = ("zero_shot", "perl_inference", "perl_inference_full", "perl_train_step")
WORKLOAD_LABELS = {
    "zero_shot": "zero-shot CLIP",
    "perl_inference": "PERL inference",  # the last block at the read-out only (the default)
    "perl_inference_full": "PERL, full last",  # the last block on every token (the paper's count)
    "perl_train_step": "PERL train step",
}
SEEDS_WORKLOADS = ("train_one_seed", "train_seeds_together")
EVAL_WORKLOADS = ("decode_only", "evaluate", "evaluate_jacobian", "zero_shot_evaluate", "predict")


def table4_loops() -> dict[str, dict]:
    """Table 4's reasoning loops (docs/method.md §2.7) at ViT-B/16's depths (L = 12): the rows of
    ``paper.table4`` in conf/base/parameters_paper.yml over conf/base/parameters.yml's ``perl``.
    Read when the loops are timed, not at import."""
    conf = project_root() / "conf" / "base"
    default = yaml.safe_load((conf / "parameters.yml").read_text())["perl"]["split_layer"]
    rows = yaml.safe_load((conf / "parameters_paper.yml").read_text())["paper"]["table4"]["rows"]
    loops = {}
    for row in rows:
        settings = {key.removeprefix("perl."): value for key, value in map(parse_fixed, row["set"])}
        loops[row["name"]] = {"split_layer": default, **settings}
    return loops


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


def _timed(settings: Settings, calls: dict[str, Callable[[], object]], device: torch.device, **kwargs):
    """`measure` with the run's warm-up, repeats and budget."""
    return measure(calls, device, settings.warmup, settings.repeats, settings.budget_s, **kwargs)


def _row(fields: dict, timing: Timing, **rates: float) -> dict:
    """One JSON row: what was measured, its median time, `rates`, peak memory and counted work."""
    return {
        **fields,
        "seconds": timing.seconds,
        "repeats": timing.repeats,
        **rates,
        "peak_memory_mb": timing.peak_memory_mb,
        "times": timing.times,
        "flops": timing.flops,
        "ops": timing.ops,
    }


def _no_grad(encode: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), autocast(inputs.device):
        return encode(inputs)


def text_features(model: PERL, tokens: torch.Tensor, cut: bool = True) -> torch.Tensor:
    """PERL text features for every step, no grad: text_prefix (cut or not), then refine_text."""
    with torch.no_grad(), autocast(tokens.device):
        return model.refine_text(model.text_prefix(tokens, cut=cut))


def bench_images(model: PERL, settings: Settings, device: torch.device, tokenizer: Callable) -> list[dict]:
    """Zero-shot, PERL inference (with and without the last-block shortcut) and a PERL training
    step at every batch size."""
    tokens = tokenizer(class_prompts(settings.train_classes)).to(device)
    fixed_text = text_features(model, tokens).float()  # [K + 1, C, D], precomputed once
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)

    def full_last_block(images: torch.Tensor) -> torch.Tensor:
        model.last_block_readout_only = False
        try:
            return model.encode_image(images)
        finally:
            model.last_block_readout_only = True

    rows = []
    for batch in settings.batch_sizes:
        images = random_images(model.clip, batch, settings.seed, device)
        generator = torch.Generator().manual_seed(settings.seed)
        labels = torch.randint(settings.train_classes, (batch,), generator=generator).to(device)
        workloads = {
            "zero_shot": partial(_no_grad, model.clip.encode_image, images),
            "perl_inference": partial(_no_grad, model.encode_image, images),
            "perl_inference_full": partial(_no_grad, full_last_block, images),
            "perl_train_step": partial(
                training_step, model, images, labels, fixed_text, optimizer, TRAIN_CONFIG
            ),
        }
        logger.info("timing %s at batch %d", ", ".join(WORKLOAD_LABELS.values()), batch)
        timings = _timed(
            settings,
            workloads,
            device,
            before=lambda name: model.train(name == "perl_train_step"),
            count=True,
        )
        for name, timing in timings.items():
            rates = {"images_per_s": batch / timing.seconds, "ms_per_image": 1000 * timing.seconds / batch}
            rows.append(_row({"workload": name, "batch": batch}, timing, **rates))
    model.eval()
    return rows


def bench_text(model: PERL, settings: Settings, device: torch.device, tokenizer: Callable) -> list[dict]:
    """PERL text features with and without the EOS cut, at every prompt count."""
    rows = []
    for count in settings.text_sizes:
        tokens = tokenizer(class_prompts(count)).to(device)
        logger.info("timing PERL text features for %d prompts, uncut and cut", count)
        calls = {cut: partial(text_features, model, tokens, cut) for cut in (False, True)}
        cut_length = int(model.eos_index(tokens).max()) + 1  # up to and including the longest EOS
        for cut, timing in _timed(settings, calls, device, count=True).items():
            fields = {"prompts": count, "cut": cut, "tokens": cut_length if cut else tokens.shape[1]}
            rows.append(_row(fields, timing, prompts_per_s=count / timing.seconds))
    return rows


def bench_loops(model: PERL, settings: Settings, device: torch.device) -> list[dict]:
    """Each of Table 4's variants' PERL inference (no grad) at the smallest batch, next to zero-shot
    timed in the same measurement. Each depth is scaled to J·L/12 of this backbone's L blocks,
    rounded down, repeats dropped (the paper's depths when L = 12)."""
    batch = min(settings.batch_sizes)
    images = random_images(model.clip, batch, settings.seed, device)
    blocks = len(model.clip.visual.transformer.resblocks)
    variants = {}
    for name, loop in table4_loops().items():
        depths = sorted({j * blocks // 12 for j in split_depths(loop["split_layer"])})
        loop = {**loop, "split_layer": depths[0] if len(depths) == 1 else tuple(depths)}
        variants[name] = PERL(model.clip, steps=settings.steps, seed=settings.seed, **loop).to(device)
    calls = {"zero_shot": partial(_no_grad, model.clip.encode_image, images)}
    calls |= {name: partial(_no_grad, variant.encode_image, images) for name, variant in variants.items()}
    logger.info("timing PERL inference of Table 4's %d reasoning loops at batch %d", len(variants), batch)
    timings = _timed(settings, calls, device, count=True)
    return [
        {
            "variant": name,
            "split_layer": variant.split_layer,
            "share_projector": variant.share_projector,
            "share_layers": variant.share_layers,
            "parameters": sum(p.numel() for p in variant.trainable_parameters()),
            "batch": batch,
            "seconds": timings[name].seconds,
            "repeats": timings[name].repeats,
            "ms_per_image": 1000 * timings[name].seconds / batch,
            "vs_zero_shot": timings[name].seconds / timings["zero_shot"].seconds,
            "flops": timings[name].flops,
        }
        for name, variant in variants.items()
    ]


def bench_seeds(model: PERL, settings: Settings, device: torch.device, tokenizer: Callable) -> list[dict]:
    """A training step as the loop runs it (class prompts refined every step) for one seed, and for
    `settings.seeds` seeds together (`training_step_together`), `settings.train_batch` images each."""
    tokens = tokenizer(class_prompts(settings.train_classes)).to(device)
    with torch.no_grad():
        prefix = model.text_prefix(tokens)
    models = [model] + [
        PERL(model.clip, settings.split_layer, settings.steps, seed=settings.seed + k).to(device)
        for k in range(1, settings.seeds)
    ]
    optimisers = [torch.optim.AdamW(m.trainable_parameters(), lr=1e-4) for m in models]
    batch = settings.train_batch
    images = [random_images(model.clip, batch, settings.seed + k, device) for k in range(settings.seeds)]
    generator = torch.Generator().manual_seed(settings.seed)
    labels = [torch.randint(settings.train_classes, (batch,), generator=generator).to(device) for _ in models]
    calls = {
        "train_one_seed": partial(
            training_step, model, images[0], labels[0], prefix, optimisers[0], TRAIN_CONFIG
        ),
        "train_seeds_together": partial(
            training_step_together, models, images, labels, prefix, optimisers, TRAIN_CONFIG
        ),
    }
    logger.info("timing a training step of 1 seed and of %d seeds together", settings.seeds)
    for m in models:
        m.train()
    timings = _timed(settings, calls, device, count=True)
    for m in models:
        m.eval()
    return [
        _row(
            {"workload": name, "seeds": seeds, "batch": batch},
            timing,
            images_per_s=seeds * batch / timing.seconds,
        )
        for (name, timing), seeds in zip(timings.items(), (1, settings.seeds), strict=True)
    ]


def bench_evaluation(
    model: PERL, settings: Settings, device: torch.device, tokenizer: Callable, folder: Path
) -> list[dict]:
    """Evaluation of `settings.seeds` seeds over `settings.eval_images` photo-sized JPEGs written to
    `folder`, next to decoding them alone (the data path's ceiling); CPU decoding by data-loader
    workers and, on CUDA, decoding on the GPU; and the evaluation with the input-Jacobian norm of
    every image (docs/method.md §6.10), whose extra time per image, step and seed is its cost."""
    from perl_pipeline.benchmarks.images import ImageFolderTable, test_transform
    from perl_pipeline.evaluation.evaluate import EvalBatches, evaluate_seeds
    from perl_pipeline.models import image_size
    from perl_pipeline.predict import predict_files

    names = write_photos(folder, settings.eval_images, settings.seed)
    table = ImageFolderTable(
        folder, names, [k % 10 for k in range(len(names))], test_transform(image_size(model.clip))
    )
    tokens = tokenizer(class_prompts(10)).to(device)
    with torch.no_grad():
        prefix = model.text_prefix(tokens)
    models = {
        k: PERL(model.clip, settings.split_layer, settings.steps, seed=k).to(device)
        for k in range(settings.seeds)
    }
    zero_shot = {0: PERL(model.clip, settings.split_layer, 0, modalities=()).to(device)}
    classifier = _classifier(models[0], settings)
    batch = max(settings.batch_sizes)

    def evaluate(models: dict, config: EvalConfig) -> Callable[[], object]:
        classes = {"all": range(10)}
        return partial(
            evaluate_seeds, models, table, prefix, classes, config, device=device, benchmark="bench"
        )

    rows = []
    for decode in ("cpu", "gpu") if device.type == "cuda" else ("cpu",):
        config = EvalConfig(batch_size=batch, gpu_decode=decode == "gpu")

        def decode_only(config=config) -> None:
            for images, _ in EvalBatches(table, config, device, model.clip):
                del images

        workloads = {
            "decode_only": decode_only,
            "evaluate": evaluate(models, config),
            "evaluate_jacobian": evaluate(models, config.model_copy(update={"jacobian_images": len(names)})),
            "zero_shot_evaluate": evaluate(zero_shot, config),
        }
        if decode == "cpu":  # python -m perl_pipeline.predict's work (PIL decoding)
            workloads["predict"] = partial(
                predict_files,
                classifier,
                [folder / name for name in names],
                batch_size=batch,
                num_workers=config.resolved_workers(),
                device=device,
                progress=False,
            )
        logger.info(
            "timing evaluation of %d seeds over %d JPEGs, %s decoding", settings.seeds, len(names), decode
        )
        for name, timing in _timed(settings, workloads, device).items():
            rows.append(
                {
                    "workload": name,
                    "decode": decode,
                    "images": len(names),
                    "workers": config.resolved_workers(),
                    "seconds": timing.seconds,
                    "repeats": timing.repeats,
                    "images_per_s": len(names) / timing.seconds,
                    "times": timing.times,
                }
            )
    return rows


def _classifier(model: PERL, settings: Settings):
    """An adapter classifier over 10 pet classes on `model` (what predict loads from a file)."""
    import open_clip

    from perl_pipeline.models import AdapterClassifier, make_adapter
    from perl_pipeline.models.adapter import PERL_KEYS

    adapter = make_adapter(
        model.projector_state_dict(),
        backbone={"model_name": settings.model, "weights": f"random:{settings.seed}"},
        perl={key: getattr(model, key) for key in PERL_KEYS},
        template=TEMPLATE,
        classnames=PET_BREEDS[:10],
    )
    return AdapterClassifier(model, adapter, open_clip.get_tokenizer(settings.model)).eval()


def write_photos(folder: Path, count: int, seed: int) -> list[str]:
    """`count` JPEGs of 500 x 375 pixels (the size of a typical benchmark photo), quality 90."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for k in range(count):
        coarse = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # smooth colour fields, as photos
        image = Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)
        names.append(f"photo_{k:05d}.jpg")
        image.save(folder / names[-1], quality=90)
    return names
