"""Image loading and the protocol's transforms (docs/method.md §3), over index / few-shot tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # CLIP's normalisation
from PIL import Image
from torch.utils.data import Dataset


def train_transform(size: int, scale: tuple[float, float] = (0.08, 1.0)):
    """RandomResizedCrop(size, scale, bicubic) + horizontal flip + CLIP normalisation."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD),
        ]
    )


def test_transform(size: int):
    """Resize the shorter side to size (bicubic) + center crop + CLIP normalisation."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD),
        ]
    )


def image_size(clip: torch.nn.Module) -> int:
    """The input resolution of an open_clip image tower (224 for ViT-B/16)."""
    size = clip.visual.image_size
    return int(size[0] if isinstance(size, Sequence) else size)


class ImageFolderTable(Dataset):
    """(image, label) pairs from relative paths under data_root.

    Args:
        data_root: the folder the table's paths are relative to.
        paths: relative image paths.
        labels: one integer label per path.
        transform: applied to each RGB PIL image.
    """

    def __init__(self, data_root: str | Path, paths: Sequence[str], labels: Sequence[int], transform):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.root = Path(data_root)
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.root / self.paths[i]) as image:
            return self.transform(image.convert("RGB")), self.labels[i]
