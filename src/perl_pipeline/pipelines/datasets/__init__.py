"""Kedro datasets of this project (the only place, with the catalog, that touches files)."""

from perl_pipeline.pipelines.datasets.atomic import AtomicDataset
from perl_pipeline.pipelines.datasets.tensor_dict import TensorDictDataset

__all__ = ["AtomicDataset", "TensorDictDataset"]
