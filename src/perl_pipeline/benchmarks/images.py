"""Image loading and the protocol's transforms (docs/method.md §3), over index / few-shot tables.

An image that cannot be read while training or evaluating raises :class:`UnreadableImageError`
naming its full path and the fix, instead of Pillow's bare ``OSError``.
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


def tensor_test_transform(image: torch.Tensor, size: int) -> torch.Tensor:
    """`test_transform` on a decoded uint8 image [3, H, W], on whatever device it lies (GPU
    decoding): antialiased bicubic resize of the shorter side, centre crop, CLIP normalisation.

    Returns:
        [3, size, size] float32. Equal to `test_transform` on the same pixels within 2 of 255
        intensity levels per value, 0.01 level on average (on the CPU; tests/benchmarks/test_images.py).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    image = TF.resize(image, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    image = TF.center_crop(image, [size])  # [3, size, size] uint8
    return TF.normalize(image.float() / 255, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)


def image_size(clip: torch.nn.Module) -> int:
    """The input resolution of an open_clip image tower (224 for ViT-B/16)."""
    size = clip.visual.image_size
    return int(size[0] if isinstance(size, Sequence) else size)


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
    """(image, label) pairs from relative paths under data_root.

    Args:
        data_root: the folder the table's paths are relative to.
        paths: relative image paths.
        labels: one integer label per path.
        transform: applied to each RGB PIL image.
        benchmark: the benchmark's name, for the rerun command in error messages.
    """

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

    def encoded(self) -> EncodedImages:
        """The same images as undecoded files, to decode in batches on the GPU."""
        return EncodedImages(self)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = (self.root / self.paths[i]).absolute()
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")  # decodes every pixel: a truncated file fails here
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
            problem = f"{type(exc).__name__}: {exc}"
            raise UnreadableImageError(unreadable_image_message(path, problem, self.benchmark)) from exc
        return self.transform(rgb), self.labels[i]


JPEG_MAGIC = b"\xff\xd8\xff"


class EncodedImages(Dataset):
    """The files of an `ImageFolderTable`, undecoded: (bytes [n] uint8, label, index) for a JPEG.

    A file that is not a JPEG comes decoded and transformed by the table itself, as
    (image [3, H, W] float, label, index), so a mixed folder still works.
    """

    def __init__(self, table: ImageFolderTable):
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        path = (self.table.root / self.table.paths[i]).absolute()
        try:
            data = path.read_bytes()
        except OSError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise UnreadableImageError(unreadable_image_message(path, problem, self.table.benchmark)) from exc
        if not data.startswith(JPEG_MAGIC):
            return (*self.table[i], i)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), self.table.labels[i], i


def collate_encoded(
    items: list[tuple[torch.Tensor, int, int]],
) -> tuple[list[torch.Tensor], torch.Tensor, list[int]]:
    """A batch of `EncodedImages` items: the tensors as a list (files differ in size)."""
    return [item[0] for item in items], torch.tensor([item[1] for item in items]), [item[2] for item in items]


def decode_on_device(
    items: Sequence[torch.Tensor],
    indices: Sequence[int],
    table: ImageFolderTable,
    size: int,
    device: torch.device,
) -> torch.Tensor:
    """Decode a batch of JPEG files on `device` (one batched nvJPEG call on CUDA) and apply
    `tensor_test_transform` there.

    Items that are already decoded (not JPEGs) are moved as they are; a JPEG the device cannot
    decode (e.g. CMYK) is decoded on the CPU by `table[index]`, the PIL path.

    Returns:
        [B, 3, size, size] float32 on `device`, in the order of `items`.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    out = list(items)  # decoded items stay as they are
    jpegs = [k for k, item in enumerate(items) if item.dtype == torch.uint8]
    try:
        decoded = (
            decode_jpeg([items[k] for k in jpegs], mode=ImageReadMode.RGB, device=device) if jpegs else []
        )
    except RuntimeError:  # one bad file fails the batch: decode one by one
        decoded = [_decode_one(items[k], device) for k in jpegs]
    for k, image in zip(jpegs, decoded, strict=True):
        out[k] = tensor_test_transform(image, size) if image is not None else table[indices[k]][0]
    return torch.stack([x.to(device, non_blocking=True) for x in out])  # [B, 3, size, size]


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None
