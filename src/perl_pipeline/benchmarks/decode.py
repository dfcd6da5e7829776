"""JPEG decoding on the evaluation device (nvJPEG on CUDA), batched, with the test transform there.

Evaluation reads each test image once; on a GPU the CPU workers then only read file bytes
(`EncodedImages`), and `decode_on_device` decodes a batch at once and resizes and crops it on the
device, equal to `images.test_transform` on the same file within a stated tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch.utils.data import Dataset

from perl_pipeline.benchmarks.images import ImageFolderTable, UnreadableImageError, unreadable_image_message


def tensor_test_transform(image: torch.Tensor, size: int) -> torch.Tensor:
    """`test_transform` on a decoded uint8 image [3, H, W] on its device; [3, size, size] float32,
    within 2 of 255 levels per value of `test_transform`'s, 0.01 on average (see test_images.py)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    image = TF.resize(image, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    image = TF.center_crop(image, [size])  # [3, size, size] uint8
    return TF.normalize(image.float() / 255, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)


JPEG_MAGIC = b"\xff\xd8\xff"


class EncodedImages(Dataset):
    """The files of an `ImageFolderTable`, undecoded: (bytes [n] uint8, label, index) for a JPEG;
    any other file comes decoded by the table itself, (image [3, H, W] float, label, index)."""

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
    """Decode a batch of JPEGs on `device` (batched nvJPEG on CUDA) and transform them there; a JPEG
    the device cannot decode (e.g. CMYK) goes through `table[index]`, the PIL path."""
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
