"""Kedro datasets of this project (the only place, with the catalog, that touches files).

Both write all at once (a temporary sibling, then ``os.replace``; a folder file by file), so a
report or a model is never left half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset

# TensorDictDataset's non-tensor values go, as one sorted JSON object, into the metadata header
# under this one key (safetensors writes several keys in no fixed order; the bytes must not depend on it)
METADATA_KEY = "perl_pipeline"


def _save_atomically(path: Path, write: Callable[[str], None], what: str) -> None:
    """`write` a temporary sibling of `path`, then move it into place; on any error the previous
    `path` is left whole, and an OSError names `what`, `path` and the reason (e.g. no space left)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(str(tmp))
        if tmp.is_dir():
            for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
                target = path / file.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, target)
        else:
            os.replace(tmp, path)
    except Exception as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise OSError(
            getattr(error, "errno", None),
            f"cannot write the {what} {path}: {reason}; the previous {path.name} (if any) is "
            "unchanged. Free space or fix the folder's permissions, then run again",
        ) from error
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


class AtomicDataset(AbstractDataset):
    """`dataset` (a catalog ``type``, or a mapping with ``type`` and options but no ``filepath``)
    at `filepath`, saved atomically."""

    def __init__(self, *, dataset: str | dict[str, Any], filepath: str, metadata: dict | None = None) -> None:
        from kedro.io.core import parse_dataset_definition

        config = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        self._class, self._options = parse_dataset_definition(config)
        self._filepath = PurePosixPath(filepath)
        self._protocol = "file"
        self._final = self._class(**self._options, filepath=filepath)
        self.metadata = metadata

    def load(self) -> Any:
        return self._final.load()

    def save(self, data: Any) -> None:
        def write(tmp: str) -> None:
            self._class(**self._options, filepath=tmp).save(data)

        _save_atomically(Path(self._filepath), write, "report")

    def _exists(self) -> bool:
        return self._final.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dataset": self._class.__name__}


class TensorDictDataset(AbstractDataset[dict, dict]):
    """A flat dict of tensors and JSON values in one safetensors file (no pickle; CPU tensors):
    text features, frozen prefix states and projector weights."""

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

        tensors = {k: v.detach().cpu().contiguous() for k, v in data.items() if isinstance(v, torch.Tensor)}
        values = {k: v for k, v in data.items() if k not in tensors}
        header = {METADATA_KEY: json.dumps(values, sort_keys=True)} if values else None

        def write(tmp: str) -> None:
            save_file(tensors, tmp, metadata=header)
            os.chmod(tmp, file_mode())  # safetensors leaves it readable by its owner only

        _save_atomically(Path(self._filepath), write, "tensors")

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
