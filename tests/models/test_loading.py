"""Weight loading: local files, cache folders, and a fast, actionable failure offline."""

from __future__ import annotations

import time

import pytest
import torch

from perl_pipeline.models import PretrainedWeightsUnavailable, load_clip
from perl_pipeline.models import loading as clip_loading


def _same_weights(a, b) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_random_init_is_seeded(tiny_clip):
    assert _same_weights(load_clip("PERL-Tiny-ViT", None, init_seed=0), tiny_clip)
    assert not _same_weights(load_clip("PERL-Tiny-ViT", None, init_seed=1), tiny_clip)


def test_loads_a_local_weights_file(tiny_clip, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_clip.state_dict(), path)
    assert _same_weights(load_clip("PERL-Tiny-ViT", str(path)), tiny_clip)


def test_missing_local_file_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "ViT-B-16.pt"
    with pytest.raises(PretrainedWeightsUnavailable, match="nowhere/ViT-B-16.pt does not exist"):
        load_clip("ViT-B-16-quickgelu", str(missing))


def test_offline_fails_fast_naming_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(clip_loading, "_reachable", lambda host, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        load_clip("ViT-B-16-quickgelu", "openai", cache_dir=tmp_path)
    assert time.perf_counter() - start < 30
    message = str(error.value)
    assert "openaipublic.azureedge.net/clip/models" in message
    assert str(tmp_path / "ViT-B-16.pt") in message
    assert "clip.pretrained" in message


def test_hf_hub_offline_counts_as_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert clip_loading._reachable("huggingface.co") is False


def test_unknown_tag_is_a_value_error():
    with pytest.raises(ValueError, match="no pretrained tag 'nonsense'"):
        load_clip("ViT-B-16-quickgelu", "nonsense")


@pytest.mark.slow
def test_a_copy_in_the_cache_dir_is_used_without_network(vit_b16, tmp_path, monkeypatch):
    monkeypatch.setattr(clip_loading, "_reachable", lambda host, timeout=3.0: False)
    torch.save(vit_b16.state_dict(), tmp_path / "ViT-B-16.pt")
    loaded = load_clip("ViT-B-16-quickgelu", "openai", cache_dir=tmp_path)
    assert _same_weights(loaded, vit_b16)


def test_the_shipped_toy_world_weights_load_by_tag() -> None:
    from safetensors.torch import load_file

    path = clip_loading.packaged_weights_path("PERL-Toy-ViT", "toy_world")
    model = load_clip("PERL-Toy-ViT", "toy_world")
    stored = load_file(str(path))
    assert stored["visual.conv1.weight"].dtype == torch.float16  # shipped in half precision: a few MB
    assert path.stat().st_size < 10 * 2**20
    assert all(torch.equal(v, stored[k].float()) for k, v in model.state_dict().items() if k in stored)
    assert set(stored) == set(model.state_dict())


def test_missing_shipped_weights_say_how_to_rebuild_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(clip_loading, "packaged_weights_path", lambda *_: tmp_path / "gone.safetensors")
    with pytest.raises(PretrainedWeightsUnavailable, match=r"kedro run --pipelines toy_clip"):
        load_clip("PERL-Toy-ViT", "toy_world")
