"""Accuracy, alignment and dynamics (docs/method.md §6.10) at every refinement step, for several
seeds in one pass over the images: the frozen image prefix S_v = B_v(x) does not depend on the
projectors, so it is computed once per batch and shared by every seed's model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from perl_pipeline.benchmarks.decode import EncodedImages, collate_encoded, decode_on_device
from perl_pipeline.benchmarks.few_shot import subset_labels
from perl_pipeline.benchmarks.images import ImageFolderTable, test_transform
from perl_pipeline.config import ClipConfig, EvalConfig, PerlConfig
from perl_pipeline.device import autocast, resolve_device
from perl_pipeline.evaluation.metrics import GROUPS, RUN_COLUMNS, TRAJECTORY_COLUMNS
from perl_pipeline.models import PERL, TextFeatures, TextPrefix, build_perl, image_size, load_backbone
from perl_pipeline.provenance import fingerprint

logger = logging.getLogger(__name__)

_INTEGERS = {"seed", "step", "n_images", "image", "class", *(f"n_{g}" for g in GROUPS)}
_STRINGS = {"benchmark", "subset", "path", "change", "role"}


def _schema(columns: Sequence[str]) -> dict[str, type[pl.DataType]]:
    return {c: pl.String if c in _STRINGS else pl.Int64 if c in _INTEGERS else pl.Float64 for c in columns}


RUN_SCHEMA = _schema(RUN_COLUMNS)
TRAJECTORY_SCHEMA = _schema(TRAJECTORY_COLUMNS)
JACOBIAN_SEED = 0
"""Seed of the generator that picks the Jacobian subsample (docs/method.md §6.10)."""
TRAJECTORIES = 3
"""Trajectories kept per (seed, subset) and direction: the largest gains and losses of confidence."""


class EvalBatches:
    """(images [B, 3, H, W] on `device`, labels [B] on the CPU) for every batch of `images`, in order.

    On CUDA with ``config.gpu_decode`` (or ``decode_on_device=True``) and an `ImageFolderTable`, the
    workers only read the files and `device` decodes the JPEGs (within 2 of 255 levels of the CPU's).
    """

    def __init__(
        self,
        images: Dataset,
        config: EvalConfig,
        device: torch.device,
        clip: torch.nn.Module,
        decode_on_device: bool | None = None,
    ):
        if decode_on_device is None:
            decode_on_device = device.type == "cuda" and config.gpu_decode
        self.gpu = decode_on_device and isinstance(images, ImageFolderTable)
        self.images, self.device = images, device
        self.size = image_size(clip) if self.gpu else None
        self.loader = DataLoader(
            EncodedImages(images) if self.gpu else images,
            batch_size=config.batch_size,
            shuffle=False,
            num_workers=config.resolved_workers(),
            pin_memory=device.type == "cuda",
            collate_fn=collate_encoded if self.gpu else None,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            if self.gpu:
                items, labels, indices = batch
                yield decode_on_device(items, indices, self.images, self.size, self.device), labels
            else:
                images, labels = batch
                yield images.to(self.device, non_blocking=True), labels


def jacobian_subsample(num_images: int, count: int) -> torch.Tensor:
    """The sorted test indices whose input-Jacobian norm is measured (docs/method.md §6.10), the same
    for every seed and run of a benchmark; all of them when `count` >= `num_images`, none when 0."""
    generator = torch.Generator().manual_seed(JACOBIAN_SEED)
    return torch.randperm(num_images, generator=generator)[:count].sort().values


@dataclass
class _Tally:
    """What one (seed, subset) accumulates over the pass: sums per step, and the per-image values
    that exact quartiles and trajectories need (small: images × steps floats)."""

    steps: int
    n: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # metric -> [K + 1] float64
    images: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # per-image values, by batch
    n_jacobian: int = 0  # images whose Jacobian norms are in sums["jacobian"]

    def add(self, name: str, total: torch.Tensor) -> None:
        """Add a batch's total [K + 1] to the sum of `name`."""
        self.sums[name] = self.sums.get(name, 0) + total.cpu().double()

    def keep(self, **values: torch.Tensor) -> None:
        """Keep per-image tensors (last dimension = images) until the end of the pass."""
        for name, value in values.items():
            self.images.setdefault(name, []).append(value.cpu())

    def kept(self, name: str) -> torch.Tensor:
        return torch.cat(self.images[name], dim=-1)


@torch.no_grad()
def evaluate_seeds(
    models: Mapping[int, PERL],
    images: Dataset,
    text_prefix: TextPrefix,
    class_sets: Mapping[str, Sequence[int]],
    config: EvalConfig,
    *,
    device: torch.device,
    benchmark: str,
) -> pl.DataFrame:
    """The runs table of `evaluate_with_trajectories` (see there)."""
    return evaluate_with_trajectories(
        models, images, text_prefix, class_sets, config, device=device, benchmark=benchmark
    )[0]


@torch.no_grad()
def evaluate_with_trajectories(
    models: Mapping[int, PERL],
    images: Dataset,
    text_prefix: TextPrefix,
    class_sets: Mapping[str, Sequence[int]],
    config: EvalConfig,
    *,
    device: torch.device,
    benchmark: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accuracy, alignment and dynamics per (seed, class set, step) and confidence trajectories,
    in one pass over `images` (docs/method.md §6.7, §6.10).

    `models` holds one PERL per seed, all wrapping the same frozen CLIP; `text_prefix` the frozen
    text states of all the benchmark's classes, in label order; `class_sets` maps each subset to
    the original labels forming its classifier (e.g. base, novel, all): an image is scored in every
    set that contains its label, against that set's classes only. Returns the runs table
    (metrics.RUN_COLUMNS; step 0 = zero-shot) and the trajectories table (TRAJECTORY_COLUMNS).
    """
    if not models:
        raise ValueError("evaluate_seeds needs at least one seed's model")
    shared = next(iter(models.values()))
    for model in models.values():
        if model.clip is not shared.clip:
            raise ValueError("all seeds' models must wrap the same frozen CLIP (its prefix is shared)")
        model.to(device).eval()
    steps = shared.steps + 1
    scale = float(shared.logit_scale)  # τ, as the classifier uses it

    text, text_alignment = {}, {}
    for seed, model in models.items():
        for subset, classes in class_sets.items():
            prefix = text_prefix.select(classes)
            with autocast(device, config.precision):
                t = model.refine_text(TextPrefix(prefix.states.to(device), prefix.eos_index.to(device)))
            t = F.normalize(t.float(), dim=-1)  # [K + 1, C, D]
            text[seed, subset] = t
            text_alignment[seed, subset] = (t[0:1] * t).sum(-1).mean(-1).cpu()  # [K + 1]

    # subset -> the classifier's column of each original label, -1 where absent; labels above all
    # the subsets' are clamped to the last entry (-1)
    top = max(max(classes) for classes in class_sets.values()) + 1
    columns = {subset: torch.full((top + 1,), -1, dtype=torch.long) for subset in class_sets}
    for subset, classes in class_sets.items():
        columns[subset][torch.as_tensor(list(classes))] = torch.arange(len(classes))

    tallies = {key: _Tally(steps) for key in text}
    chosen = jacobian_subsample(len(images), config.jacobian_images)
    offset = 0
    batches = EvalBatches(images, config, device, shared.clip)
    for batch, labels in tqdm(batches, f"evaluate {benchmark}", len(batches), leave=False, disable=None):
        with autocast(device, config.precision):
            prefix = shared.image_prefix(batch)  # once for all seeds
        subsets = {subset: column[labels.clamp(max=top)] for subset, column in columns.items()}  # [B]
        for seed, model in models.items():
            with autocast(device, config.precision):
                v = model.refine_image(prefix)
            v = F.normalize(v.float(), dim=-1)  # [K + 1, B, D]
            alignment = (v[0:1] * v).sum(-1).cpu()  # [K + 1, B]
            for subset, target in subsets.items():
                rows = (target >= 0).nonzero().squeeze(1)
                if len(rows) == 0:
                    continue
                _score(tallies[seed, subset], v[:, rows.to(device)], text[seed, subset], target[rows], scale)
                tallies[seed, subset].add("cosine", alignment[:, rows].sum(-1))
                tallies[seed, subset].keep(index=offset + rows)
        picked = chosen[(chosen >= offset) & (chosen < offset + len(labels))] - offset
        if len(picked):
            _jacobians(
                models, batch[picked.to(device)], {s: t[picked] for s, t in subsets.items()}, text, tallies
            )
        offset += len(labels)

    paths = getattr(images, "paths", None)
    records, trajectories = [], []
    for (seed, subset), tally in tallies.items():
        if tally.n == 0:
            logger.warning("%s: no test image falls in the %r classes", benchmark, subset)
            continue
        keys = {"benchmark": benchmark, "seed": int(seed), "subset": subset}
        records += _step_records(tally, keys, text_alignment[seed, subset])
        trajectories += _trajectories(tally, keys, class_sets[subset], paths)
    return pl.DataFrame(records, schema=RUN_SCHEMA), pl.DataFrame(trajectories, schema=TRAJECTORY_SCHEMA)


def _score(tally: _Tally, v: torch.Tensor, t: torch.Tensor, target: torch.Tensor, scale: float) -> None:
    """Score b images of one subset at every step: v [K + 1, b, D], t [K + 1, C, D] (both unit
    norm), target [b] = classifier columns on the CPU (docs/method.md §6.7, §6.10)."""
    cosines = (v @ t.transpose(1, 2)).float()  # [K + 1, b, C], fp32 even inside an outer autocast
    log_p = F.log_softmax(scale * cosines, dim=-1)  # [K + 1, b, C]
    p = log_p.exp()
    target = target.to(v.device)
    predicted = cosines.argmax(-1)  # [K + 1, b]
    right = predicted == target  # [K + 1, b]
    winner = predicted[0]  # [b] the step-0 prediction
    pick = lambda column: p.gather(-1, column.expand(p.shape[0], -1).unsqueeze(-1)).squeeze(-1)  # noqa: E731
    p_target = pick(target)  # [K + 1, b]
    onehot = F.one_hot(target, p.shape[-1]).to(p.dtype)  # [b, C]
    tally.n += len(target)
    tally.add("correct", right.sum(-1))
    tally.add("confidence", p_target.sum(-1, dtype=torch.float64))
    tally.add("brier", ((p - onehot) ** 2).sum(-1).sum(-1, dtype=torch.float64))
    kl = (p * (log_p - log_p[0:1])).sum(-1)  # KL(p_k ‖ p_0): [K + 1, b]
    tally.keep(kl=kl, right_first=right[0], right_last=right[-1], p_target=p_target)
    tally.keep(p_winner=pick(winner), winner=winner, target=target)


def _jacobians(
    models: Mapping[int, PERL],
    images: torch.Tensor,
    subsets: Mapping[str, torch.Tensor],
    text: Mapping[tuple[int, str], torch.Tensor],
    tallies: Mapping[tuple[int, str], _Tally],
) -> None:
    """Norm of the gradient of the target logit τ·cos(v_k, t_target) w.r.t. the input pixels, in
    fp32, for m chosen images [m, 3, H, W] at every step (docs/method.md §6.10). `subsets` maps each
    subset to the images' classifier columns [m] (-1: not in it). Images are independent, so one
    backward of the sum of their logits gives every image's own gradient."""
    shared = next(iter(models.values()))
    scale = shared.logit_scale.float()
    with torch.enable_grad():
        x = images.detach().float().requires_grad_(True)  # [m, 3, H, W]
        prefix = shared.image_prefix(x)
        for seed, model in models.items():
            v = F.normalize(model.refine_image(prefix).float(), dim=-1)  # [K + 1, m, D]
            for subset, target in subsets.items():
                rows = (target >= 0).nonzero().squeeze(1).to(x.device)
                if len(rows) == 0:
                    continue
                t = text[seed, subset][:, target[target >= 0].to(x.device)]  # [K + 1, r, D]
                logits = scale * (v[:, rows] * t).sum(-1)  # [K + 1, r]
                norms = torch.stack(
                    [
                        torch.autograd.grad(step.sum(), x, retain_graph=True)[0][rows].flatten(1).norm(dim=1)
                        for step in logits
                    ]
                )  # [K + 1, r]
                tallies[seed, subset].add("jacobian", norms.double().sum(-1))
                tallies[seed, subset].n_jacobian += len(rows)


def _step_records(tally: _Tally, keys: dict, text_alignment: torch.Tensor) -> list[dict]:
    """One runs-table row per step of one (seed, subset)."""
    n, sums = tally.n, tally.sums
    kl = tally.kept("kl").double().numpy()  # [K + 1, n]
    first, last = tally.kept("right_first").numpy(), tally.kept("right_last").numpy()  # [n]
    groups = {"cc": first & last, "wc": ~first & last, "cw": first & ~last, "ww": ~first & ~last}
    quartiles = {
        g: np.percentile(kl[:, m], [25, 50, 75], axis=1) if m.any() else None for g, m in groups.items()
    }
    records = []
    for step in range(tally.steps):
        record = {
            **keys,
            "step": step,
            "accuracy": 100.0 * sums["correct"][step].item() / n,
            "n_images": n,
            "image_alignment": sums["cosine"][step].item() / n,
            "text_alignment": text_alignment[step].item(),
            "confidence": 100.0 * sums["confidence"][step].item() / n,
            "brier": sums["brier"][step].item() / n,
            "jacobian_norm": sums["jacobian"][step].item() / tally.n_jacobian if tally.n_jacobian else None,
        }
        for g, mask in groups.items():
            record[f"n_{g}"] = int(mask.sum())
            for row, name in enumerate(("q1", "median", "q3")):
                record[f"kl_{name}_{g}"] = None if quartiles[g] is None else float(quartiles[g][row, step])
        records.append(record)
    return records


def _trajectories(
    tally: _Tally, keys: dict, classes: Sequence[int], paths: Sequence[str] | None
) -> list[dict]:
    """Probability of the target class and of the step-0 winner at every step, for the images
    whose target confidence gains and loses most from step 0 to step K (docs/method.md §6.10)."""
    # numpy from here: as many torch calls for any number of images (rehearse counts them per batch)
    p_target, p_winner = tally.kept("p_target").numpy(), tally.kept("p_winner").numpy()  # [K + 1, n]
    change = p_target[-1] - p_target[0]  # [n]
    order = np.argsort(change, kind="stable")
    chosen = [("gain", i) for i in order[::-1][:TRAJECTORIES] if change[i] > 0]
    chosen += [("loss", i) for i in order[:TRAJECTORIES] if change[i] < 0]
    index, winner, target = (tally.kept(name).numpy() for name in ("index", "winner", "target"))
    return [
        {
            **keys,
            "image": int(index[i]),
            "path": None if paths is None else str(paths[int(index[i])]),
            "change": kind,
            "role": role,
            "class": int(classes[int(column[i])]),
            "step": step,
            "probability": float(probability[step, i]),
        }
        for kind, i in chosen
        for role, column, probability in (("target", target, p_target), ("step0_winner", winner, p_winner))
        for step in range(tally.steps)
    ]


def evaluate_projectors(
    projectors: Mapping[int, dict],
    index: pl.DataFrame,
    features: TextFeatures,
    data_root: str,
    clip: ClipConfig,
    perl: PerlConfig,
    config: EvalConfig,
    *,
    device: str,
    benchmark: str,
    subsets: Sequence[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score each seed's projectors (seed -> state dict with its recipe) on the test split of `index`,
    with one classifier per subset ("base", "novel", "all"): the tables of
    `evaluate_with_trajectories`, the runs naming the projectors and text features they scored."""
    backbone = load_backbone(clip)
    models = {}
    for seed, state in projectors.items():
        models[seed] = build_perl(backbone, perl, seed=seed)
        models[seed].load_projector_state_dict({k: v for k, v in state.items() if k != "recipe"})
    test = index.filter(pl.col("split") == "test").sort("path")
    transform = test_transform(image_size(backbone))
    images = ImageFolderTable(data_root, test["path"], test["label"], transform, benchmark=benchmark)
    class_sets = {name: list(subset_labels(name, len(features.classnames))) for name in subsets}
    text = features.text_prefix()
    runs, trajectories = evaluate_with_trajectories(
        models, images, text, class_sets, config, device=resolve_device(device), benchmark=benchmark
    )
    identities = {seed: fingerprint(state.get("recipe")) for seed, state in projectors.items()}
    runs = runs.with_columns(
        projector=pl.col("seed").replace_strict(identities, return_dtype=pl.String),
        text_features=pl.lit(features.fingerprint),
    )
    return runs, trajectories
