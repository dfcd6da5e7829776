"""ImageFolderTable: an image that fails to decode names its file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perl_pipeline.benchmarks.images import ImageFolderTable, UnreadableImageError
from tests.benchmarks.test_validate import write_truncated_jpeg


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy())


def test_a_truncated_image_names_its_full_path_and_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "dtd" / "images" / "banded"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(folder / "good.jpg")
    write_truncated_jpeg(folder / "cut.jpg")
    table = ImageFolderTable(
        tmp_path, ["dtd/images/banded/good.jpg", "dtd/images/banded/cut.jpg"], [0, 1], _to_tensor, "dtd"
    )
    image, label = table[0]
    assert image.shape == (8, 8, 3) and label == 0
    with pytest.raises(UnreadableImageError) as err:
        table[1]
    message = str(err.value)
    assert str((folder / "cut.jpg").absolute()) in message and "truncated" in message
    assert "replace this one file" in message
    assert "kedro run --pipelines data_preparation --namespaces dtd" in message
    with pytest.raises(UnreadableImageError, match="missing.jpg"):
        ImageFolderTable(tmp_path, ["dtd/missing.jpg"], [0], _to_tensor)[0]
