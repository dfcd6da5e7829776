"""Decoding on the device: the tensor path equals the PIL path within a stated tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip import OPENAI_DATASET_STD
from PIL import Image

from perl_pipeline.benchmarks.decode import EncodedImages, collate_encoded, decode_on_device
from perl_pipeline.benchmarks.images import ImageFolderTable
from perl_pipeline.benchmarks.images import (
    test_transform as cpu_test_transform,  # not collected as a test
)

LEVEL = 1 / 255 / min(OPENAI_DATASET_STD)  # one intensity level, in normalised units (the largest)


def _photos(root: Path) -> list[str]:
    """JPEGs of several shapes (smooth colour fields with an edge, as photos) and one PNG."""
    rng = np.random.default_rng(0)
    names = []
    for k, (height, width) in enumerate([(375, 500), (500, 333), (180, 240), (96, 96)]):
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
        pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR)).copy()
        pixels[height // 3 : height // 2, width // 4 : width // 2] = (250, 20, 20)
        names.append(f"photo_{k}.jpg")
        Image.fromarray(pixels).save(root / names[-1], quality=90)
    Image.fromarray(pixels).save(root / "drawing.png")
    return [*names, "drawing.png"]


def _both_paths(tmp_path: Path, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    names = _photos(tmp_path)
    table = ImageFolderTable(tmp_path, names, list(range(len(names))), cpu_test_transform(64))
    items, labels, indices = collate_encoded([EncodedImages(table)[i] for i in range(len(names))])
    assert [item.dtype for item in items] == [torch.uint8] * 4 + [torch.float32]  # the PNG: CPU path
    assert labels.tolist() == indices == list(range(len(names)))
    on_device = decode_on_device(items, indices, table, 64, device)
    return on_device.cpu(), torch.stack([table[i][0] for i in range(len(names))])


def test_decoding_as_tensors_equals_the_pil_path(tmp_path: Path) -> None:
    ours, pil = _both_paths(tmp_path, torch.device("cpu"))  # the device code, run on the CPU
    assert ours.shape == pil.shape == (5, 3, 64, 64)
    assert (ours - pil).abs().max() <= 2 * LEVEL + 1e-6  # within 2 of 255 levels per value
    assert (ours - pil).abs().mean() <= 0.01 * LEVEL  # and 0.01 level on average


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device on this machine: GPU JPEG decoding (nvJPEG) can only be tested where CUDA exists",
)
def test_decoding_on_the_gpu_equals_the_pil_path(tmp_path: Path) -> None:
    ours, pil = _both_paths(tmp_path, torch.device("cuda"))
    assert (ours - pil).abs().max() <= 4 * LEVEL  # nvJPEG's IDCT and the float resize: 4 levels
    assert (ours - pil).abs().mean() <= 0.5 * LEVEL


def test_the_tensor_path_changes_no_prediction_of_the_shipped_toy_clip(
    tmp_path: Path, benchmark_params: dict
) -> None:
    """The approximation's effect on accuracy (docs/pipelines.md): zero-shot PERL-Toy-ViT on 200
    real-size (500 x 375) toy-world JPEGs of a shifted dtd, resized to its 64 px, by either path."""
    import open_clip
    import polars as pl
    import yaml

    from perl_pipeline.benchmarks.prepare import build_index
    from perl_pipeline.benchmarks.spec import BenchmarkSpec
    from perl_pipeline.models import image_size, load_clip
    from perl_pipeline.toy.miniature import write_miniature

    shift = yaml.safe_load((Path(__file__).parents[2] / "conf/base/globals.yml").read_text())[
        "toy_world_shift"
    ]
    spec = BenchmarkSpec.from_params(benchmark_params["dtd"]["benchmark"])
    counts = {split: 10 if split == "test" else 1 for split in spec.split_sizes}
    spec = write_miniature(spec, tmp_path, classes=20, per_class=counts, image_size=(500, 375), world=shift)
    test = build_index(spec, tmp_path).filter(pl.col("split") == "test")
    clip = load_clip("PERL-Toy-ViT", "toy_world").eval()
    size = image_size(clip)
    names = test.unique("label").sort("label")["classname"].to_list()
    table = ImageFolderTable(
        tmp_path, test["path"].to_list(), test["label"].to_list(), cpu_test_transform(size)
    )
    items, _, indices = collate_encoded([EncodedImages(table)[i] for i in range(len(table))])
    with torch.no_grad():
        text = clip.encode_text(
            open_clip.get_tokenizer("PERL-Toy-ViT")([f"a photo of a {c}." for c in names])
        )
        text = text / text.norm(dim=-1, keepdim=True)
        logits = {}
        for path, images in (
            ("pil", torch.stack([table[i][0] for i in range(len(table))])),
            ("tensor", decode_on_device(items, indices, table, size, torch.device("cpu"))),
        ):
            image = clip.encode_image(images)
            logits[path] = (image / image.norm(dim=-1, keepdim=True)) @ text.T
    labels = torch.tensor(test["label"].to_list())
    pil, tensor = logits["pil"].argmax(1), logits["tensor"].argmax(1)
    assert len(labels) == 200 and (pil == labels).float().mean() > 1 / len(names)  # above chance: a real test
    # measured: 1 of 200 changes (a near tie), accuracy 45.0 % by PIL, 44.5 % by tensors
    assert int((pil != tensor).sum()) <= 2  # at most 1 % of the predictions
    assert (logits["pil"] - logits["tensor"]).abs().max() < 0.01  # cosine logits: 0.0016 measured
