"""Any file dataset, written all at once (a temporary sibling, then ``os.replace``; a folder file
by file): reports are never left half-written."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset


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
        path = Path(self._filepath)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._class(**self._options, filepath=str(tmp)).save(data)
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
                f"cannot write the report {path}: {reason}; the previous {path.name} (if any) is "
                "unchanged. Free space or fix the folder's permissions, then run again",
            ) from error
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)

    def _exists(self) -> bool:
        return self._final.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dataset": self._class.__name__}
