"""Image loading and the protocol's transforms (docs/method.md §3), over index / few-shot tables.

An unreadable image raises :class:`UnreadableImageError` naming its full path and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # CLIP's normalisation
from PIL import Image
from torch.utils.data import Dataset

from perl_pipeline.benchmarks.spec import BenchmarkError


def train_transform(size: int, scale: tuple[float, float] = (0.08, 1.0)):
    """RandomResizedCrop(size, scale, bicubic) + horizontal flip + CLIP normalisation."""
    from torchvision import transforms as T

    crop = T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC)
    return _normalised(crop, T.RandomHorizontalFlip())


def test_transform(size: int):
    """Resize the shorter side to size (bicubic) + center crop + CLIP normalisation."""
    from torchvision import transforms as T

    return _normalised(T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size))


def _normalised(*steps):
    """``steps``, then to a tensor with CLIP's normalisation."""
    from torchvision import transforms as T

    return T.Compose([*steps, T.ToTensor(), T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)])


class UnreadableImageError(BenchmarkError):
    """An image listed in a table cannot be opened or decoded; the message names the file."""


def unreadable_image_message(path: Path | str, problem: str, benchmark: str | None = None) -> str:
    """What went wrong with one image file and how to fix just that file."""
    namespace = benchmark or "<benchmark>"
    return (
        f"cannot read image {path}: {problem}. Fix: replace this one file with a good copy (from "
        f"the benchmark's archive or your copy), or fix its permissions (chmod u+r {path}); to "
        f"find any other bad files first, run kedro run --pipelines data_preparation "
        f"--namespaces {namespace} (it decodes every val and test image) and kedro run "
        f"--pipelines few_shot_splits --namespaces {namespace} (it decodes the drawn training shots)."
    )


class ImageFolderTable(Dataset):
    """(image, label) pairs from paths relative to data_root; `benchmark` names the rerun in errors."""

    def __init__(
        self,
        data_root: str | Path,
        paths: Sequence[str],
        labels: Sequence[int],
        transform,
        benchmark: str | None = None,
    ):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.root = Path(data_root)
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform
        self.benchmark = benchmark

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = (self.root / self.paths[i]).absolute()
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")  # decodes every pixel: a truncated file fails here
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
            problem = f"{type(exc).__name__}: {exc}"
            raise UnreadableImageError(unreadable_image_message(path, problem, self.benchmark)) from exc
        return self.transform(rgb), self.labels[i]
