"""dict[str, Tensor] <-> .safetensors: text features, frozen prefix states and projector weights."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset


class TensorDictDataset(AbstractDataset[dict, dict]):
    """A flat dict of tensors in one safetensors file (no pickle; CPU tensors, any device later).

    Args:
        filepath: local path of the .safetensors file.
        metadata: free-form metadata (kedro-viz reads metadata["kedro-viz"]).
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> dict:
        from safetensors.torch import load_file  # lazy: kedro viz needs no torch

        return load_file(str(self._filepath), device="cpu")

    def save(self, data: dict) -> None:
        from safetensors.torch import save_file

        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.detach().cpu().contiguous() for key, value in data.items()}
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # atomic: no half file
        os.close(handle)
        try:
            save_file(tensors, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
