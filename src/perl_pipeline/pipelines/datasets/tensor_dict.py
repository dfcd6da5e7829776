"""dict[str, Tensor | JSON] <-> .safetensors: text features, frozen prefix states and projector weights.

Non-tensor values go, as one sorted JSON object, into the metadata header under :data:`METADATA_KEY`
(one key: safetensors writes several keys in no fixed order, and the bytes must not depend on it).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset

METADATA_KEY = "perl_pipeline"


class TensorDictDataset(AbstractDataset[dict, dict]):
    """A flat dict of tensors and JSON values in one safetensors file (no pickle; CPU tensors)."""

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> dict:
        from safetensors import safe_open  # lazy: kedro viz needs no torch

        with safe_open(str(self._filepath), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            data = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        return data | json.loads(header.get(METADATA_KEY, "{}"))

    def save(self, data: dict) -> None:
        import torch
        from safetensors.torch import save_file

        from perl_pipeline.provenance import file_mode

        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in data.items() if isinstance(v, torch.Tensor)}
        values = {k: v for k, v in data.items() if k not in tensors}
        header = {METADATA_KEY: json.dumps(values, sort_keys=True)} if values else None
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # atomic: no half file
        os.close(handle)
        try:
            save_file(tensors, tmp, metadata=header)
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
