"""Accuracy and alignment at every refinement step, for several seeds in one pass over the images.

The frozen image prefix S_v = B_v(x) does not depend on the projectors, so it is computed once per
batch and shared by every seed's model; class text features are refined once per (seed, class set).
Images are decoded by data-loader workers (`evaluation.num_workers`, by default one per core) or,
on CUDA with `evaluation.gpu_decode`, in batches on the GPU (`EvalBatches`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import polars as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from perl_pipeline.benchmarks.decode import EncodedImages, collate_encoded, decode_on_device
from perl_pipeline.benchmarks.images import ImageFolderTable, image_size
from perl_pipeline.config import EvalConfig
from perl_pipeline.device import autocast
from perl_pipeline.evaluation.metrics import RUN_COLUMNS
from perl_pipeline.models import PERL, TextPrefix

logger = logging.getLogger(__name__)

RUN_SCHEMA = dict(
    zip(
        RUN_COLUMNS,
        (pl.String, pl.Int64, pl.String, pl.Int64, pl.Float64, pl.Int64, pl.Float64, pl.Float64),
        strict=True,
    )
)


class EvalBatches:
    """(images [B, 3, H, W] on `device`, labels [B] on the CPU) for every batch of `images`, in order.

    On CUDA with ``config.gpu_decode`` (or with ``decode_on_device=True``, e.g. to test the path on
    the CPU) and an `ImageFolderTable`, the workers only read the files and the JPEGs are decoded,
    resized and cropped on `device` (`decode_on_device`: within 2 of 255 intensity levels of the CPU
    path, see its tests); otherwise the workers decode and transform on the CPU. Either way pinned
    memory and non-blocking copies keep the device fed.
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
    """Top-1 accuracy and alignment per (seed, class set, step), in one pass over `images`.

    Args:
        models: one PERL per seed, all wrapping the same frozen CLIP.
        images: test pairs whose labels are the benchmark's original labels.
        text_prefix: frozen text states of all the benchmark's classes, in label order.
        class_sets: subset name -> the original labels forming its classifier, in order (e.g.
            base = first half, novel = second half, all). An image is scored in every set that
            contains its label, against that set's classes only.
        config: batch size, workers, precision, GPU decoding.
        device: where to evaluate.
        benchmark: name written in the output rows.

    Returns:
        A long table with the columns of metrics.RUN_COLUMNS (accuracy in percent; step 0 = zero-shot).
    """
    if not models:
        raise ValueError("evaluate_seeds needs at least one seed's model")
    shared = next(iter(models.values()))
    for model in models.values():
        if model.clip is not shared.clip:
            raise ValueError("all seeds' models must wrap the same frozen CLIP (its prefix is shared)")
        model.to(device).eval()
    steps = shared.steps + 1

    text, text_alignment = {}, {}
    for seed, model in models.items():
        for subset, classes in class_sets.items():
            prefix = text_prefix.select(classes)
            with autocast(device, config.precision):
                t = model.refine_text(TextPrefix(prefix.states.to(device), prefix.eos_index.to(device)))
            t = F.normalize(t.float(), dim=-1)  # [K + 1, C, D]
            text[seed, subset] = t
            text_alignment[seed, subset] = (t[0:1] * t).sum(-1).mean(-1).cpu()  # [K + 1]

    position = {}  # subset -> lookup from original label to the classifier's column (-1: absent)
    num_labels = 1 + max(max(classes) for classes in class_sets.values())
    for subset, classes in class_sets.items():
        lookup = torch.full((num_labels,), -1, dtype=torch.long)
        lookup[torch.as_tensor(list(classes))] = torch.arange(len(classes))
        position[subset] = lookup

    zeros = lambda: torch.zeros(steps, dtype=torch.float64)  # noqa: E731
    correct = {key: zeros() for key in text}
    cosine = {key: zeros() for key in text}
    counts = dict.fromkeys(text, 0)

    batches = EvalBatches(images, config, device, shared.clip)
    for batch, labels in tqdm(batches, f"evaluate {benchmark}", len(batches), leave=False, disable=None):
        with autocast(device, config.precision):
            prefix = shared.image_prefix(batch)  # once for all seeds
        for seed, model in models.items():
            with autocast(device, config.precision):
                v = model.refine_image(prefix)
            v = F.normalize(v.float(), dim=-1)  # [K + 1, B, D]
            alignment = (v[0:1] * v).sum(-1).cpu()  # [K + 1, B]
            for subset in class_sets:
                lookup = position[subset][labels.clamp(max=num_labels - 1)]
                target = torch.where(labels < num_labels, lookup, -1)
                keep = target >= 0
                if not keep.any():
                    continue
                rows = keep.nonzero().squeeze(1)
                logits = v[:, rows.to(device)] @ text[seed, subset].transpose(1, 2)  # [K + 1, b, C]
                predicted = logits.argmax(-1).cpu()
                correct[seed, subset] += (predicted == target[rows]).sum(-1).double()
                cosine[seed, subset] += alignment[:, rows].sum(-1).double()
                counts[seed, subset] += len(rows)

    records = []
    for (seed, subset), n in counts.items():
        if n == 0:
            logger.warning("%s: no test image falls in the %r classes", benchmark, subset)
            continue
        for step in range(steps):
            records.append(
                {
                    "benchmark": benchmark,
                    "seed": int(seed),
                    "subset": subset,
                    "step": step,
                    "accuracy": 100.0 * correct[seed, subset][step].item() / n,
                    "n_images": n,
                    "image_alignment": cosine[seed, subset][step].item() / n,
                    "text_alignment": text_alignment[seed, subset][step].item(),
                }
            )
    return pl.DataFrame(records, schema=RUN_SCHEMA)
