"""The safetensors catalog dataset: round trip, atomic save, CPU tensors."""

from __future__ import annotations

import torch

from perl_pipeline.pipelines.datasets import TensorDictDataset


def test_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "models" / "seed_1.safetensors"
    dataset = TensorDictDataset(filepath=str(path))
    assert not dataset.exists()
    data = {"image.up.bias": torch.randn(8), "eos_index": torch.tensor([3, 5])}
    dataset.save(data)
    loaded = dataset.load()
    assert dataset.exists() and set(loaded) == set(data)
    for key, value in data.items():
        assert torch.equal(loaded[key], value)
    assert [p.name for p in path.parent.iterdir()] == ["seed_1.safetensors"]


def test_empty_dict_for_a_model_without_projectors(tmp_path):
    dataset = TensorDictDataset(filepath=str(tmp_path / "empty.safetensors"))
    dataset.save({})
    assert dataset.load() == {}
