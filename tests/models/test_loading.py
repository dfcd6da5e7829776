"""Weight loading: every weights format, cache folders, the pre-run check, and actionable errors."""

from __future__ import annotations

import copy
import hashlib
import os
import time
from pathlib import Path

import open_clip
import pytest
import torch

from perl_pipeline.models import PretrainedWeightsUnavailable, load_clip
from perl_pipeline.models import loading as clip_loading
from perl_pipeline.models.loading import WeightsFileError, check_weights


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


# ---- every weights format loads, and gives the model it was made from -----------------------------


def _outputs(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text embeddings of fixed inputs (64 px images, as PERL-Tiny-ViT takes), from a frozen
    copy: attention takes another kernel when no parameter requires grad, so both sides must agree."""
    model = copy.deepcopy(model).requires_grad_(False).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    tokens = torch.randint(1, 49407, (2, 77), generator=generator)
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def _as_openai_archive(model, path, *, half: bool = True) -> None:
    """Save `model` laid out as OpenAI's TorchScript `ViT-B-16.pt`: scripted, fp16 weights, and the
    settings OpenAI keeps as state-dict entries (input_resolution, context_length, vocab_size)."""
    scripted = copy.deepcopy(model)
    if half:
        scripted = scripted.half()
    for name, value in [("input_resolution", 64), ("context_length", 77), ("vocab_size", 49408)]:
        if hasattr(scripted, name):
            delattr(scripted, name)  # plain ints on open_clip's CLIP, tensors in OpenAI's archives
        scripted.register_buffer(name, torch.tensor(value))
    torch.jit.save(torch.jit.script(scripted), str(path))


@pytest.fixture(scope="module")
def weights_files(tiny_clip, tmp_path_factory) -> dict:
    """PERL-Tiny-ViT's weights in every supported layout: name -> (path, model the file holds)."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    state = tiny_clip.state_dict()
    half = copy.deepcopy(tiny_clip).half().float()  # what an fp16 archive holds
    files = {}
    _as_openai_archive(tiny_clip, folder / "ViT-B-16.pt")
    files["openai torchscript (fp16)"] = (folder / "ViT-B-16.pt", half)
    _as_openai_archive(tiny_clip, folder / "scripted_fp32.pt", half=False)
    files["torchscript fp32"] = (folder / "scripted_fp32.pt", tiny_clip)
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    files["open_clip .bin"] = (folder / "open_clip_pytorch_model.bin", tiny_clip)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    files["open_clip .safetensors"] = (folder / "open_clip_model.safetensors", tiny_clip)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "ddp.pt")
    files["{'state_dict'} with module."] = (folder / "ddp.pt", tiny_clip)
    torch.save({"state_dict": state}, folder / "wrapped.pt")
    files["{'state_dict'}"] = (folder / "wrapped.pt", tiny_clip)
    torch.save(state, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    files["legacy pickle"] = (folder / "legacy.pt", tiny_clip)
    torch.save(state, folder / "no_suffix_weights")  # the format comes from the bytes, not the name
    files["torch.save, no suffix"] = (folder / "no_suffix_weights", tiny_clip)
    return files


FORMATS = [
    "openai torchscript (fp16)",
    "torchscript fp32",
    "open_clip .bin",
    "open_clip .safetensors",
    "{'state_dict'} with module.",
    "{'state_dict'}",
    "legacy pickle",
    "torch.save, no suffix",
]


@pytest.mark.parametrize("layout", FORMATS)
def test_every_weights_format_loads_as_the_model_it_was_made_from(weights_files, layout):
    path, source = weights_files[layout]
    check_weights("PERL-Tiny-ViT", str(path))  # the pre-run check passes ...
    loaded = load_clip("PERL-Tiny-ViT", str(path))  # ... and so does loading
    assert _same_weights(loaded, source)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for got, want in zip(_outputs(loaded), _outputs(source), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_openai_layout_is_what_torch_load_refuses(weights_files):
    """The archive reproduces the user's failure with open_clip's own loader (weights_only=True)."""
    path, _ = weights_files["openai torchscript (fp16)"]
    with pytest.raises(RuntimeError, match="TorchScript"):
        torch.load(path, weights_only=True)
    assert {"input_resolution", "context_length", "vocab_size"} <= set(torch.jit.load(str(path)).state_dict())


def test_a_path_object_loads_too(weights_files):
    path, source = weights_files["open_clip .safetensors"]
    assert _same_weights(load_clip("PERL-Tiny-ViT", path), source)


@pytest.mark.slow
def test_openai_torchscript_vit_b16_in_the_cache_dir_loads_offline(vit_b16, tmp_path, monkeypatch):
    monkeypatch.setattr(clip_loading, "_reachable", lambda host, timeout=3.0: False)
    _as_openai_archive(vit_b16, tmp_path / "ViT-B-16.pt")
    check_weights("ViT-B-16-quickgelu", "openai", tmp_path)
    loaded = load_clip("ViT-B-16-quickgelu", "openai", cache_dir=tmp_path)
    assert _same_weights(loaded, copy.deepcopy(vit_b16).half().float())
    assert loaded.visual.preprocess_cfg["interpolation"] == "bicubic"  # the tag's preprocessing
    assert _same_weights(load_clip("ViT-B-16-quickgelu", str(tmp_path / "ViT-B-16.pt")), loaded)


def test_a_hub_download_in_the_cache_dir_is_found(tiny_clip, tmp_path):
    """open_clip's own download (Hugging Face cache layout under clip.cache_dir) counts as a local copy."""
    from safetensors.torch import save_file

    repo, files = clip_loading._hf_files(open_clip.get_pretrained_cfg("ViT-B-16-quickgelu", "openai"))
    snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("abc123")
    save_file(tiny_clip.state_dict(), str(snapshot / "open_clip_model.safetensors"))
    cfg = open_clip.get_pretrained_cfg("ViT-B-16-quickgelu", "openai")
    assert clip_loading._cached_copy(cfg, tmp_path) == snapshot / "open_clip_model.safetensors"
    with pytest.raises(WeightsFileError, match="open_clip_model.safetensors.*does not fit"):
        check_weights("ViT-B-16-quickgelu", "openai", tmp_path)  # found, then checked: a tiny CLIP


# ---- every weights problem: one error type, naming the file, the parameter and the fix ---------


@pytest.fixture(params=["check_weights", "load_clip"])
def use_weights(request):
    """The pre-run check and the loader must refuse the same files with the same message."""
    if request.param == "check_weights":
        return lambda model_name, pretrained: check_weights(model_name, pretrained)
    return lambda model_name, pretrained: load_clip(model_name, pretrained)


def _assert_actionable(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert isinstance(error.value, PretrainedWeightsUnavailable)
    assert str(path) in message
    assert "clip.pretrained" in message
    assert "kedro run --params clip." in message or "chmod" in message
    return message


def _truncated(source, path, keep: float = 0.5):
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_a_text_file_is_not_a_checkpoint(use_weights, tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    path.write_text("<html><body>Access denied</body></html>\n")
    with pytest.raises(WeightsFileError) as error:
        use_weights("PERL-Tiny-ViT", str(path))
    assert "not a checkpoint: it is a text file beginning '<html>" in _assert_actionable(error, path)


def test_an_empty_file_is_not_a_checkpoint(use_weights, tmp_path):
    path = tmp_path / "open_clip_model.safetensors"
    path.touch()
    with pytest.raises(WeightsFileError, match="not a checkpoint: it is empty") as error:
        use_weights("PERL-Tiny-ViT", str(path))
    _assert_actionable(error, path)


@pytest.mark.parametrize(
    ("layout", "keep", "what"),
    [
        ("open_clip .safetensors", 0.5, "damaged or truncated safetensors"),
        ("open_clip .safetensors", 0.001, "damaged or truncated safetensors"),
        ("open_clip .bin", 0.5, "damaged or truncated zip archive"),
        ("openai torchscript (fp16)", 0.9, "damaged or truncated zip archive"),
        ("legacy pickle", 0.5, "damaged or truncated torch pickle"),
    ],
)
def test_a_truncated_file_is_named(use_weights, weights_files, tmp_path, layout, keep, what):
    source, _ = weights_files[layout]
    path = _truncated(source, tmp_path / source.name, keep)
    with pytest.raises(WeightsFileError, match=what) as error:
        use_weights("PERL-Tiny-ViT", str(path))
    _assert_actionable(error, path)


def test_a_checkpoint_without_tensors_is_refused(use_weights, tmp_path):
    path = tmp_path / "run.pt"
    torch.save({"epoch": 3, "name": "run"}, path)
    with pytest.raises(WeightsFileError, match="holds a dict with keys \\['epoch', 'name'\\]") as error:
        use_weights("PERL-Tiny-ViT", str(path))
    _assert_actionable(error, path)


def test_a_directory_is_refused(use_weights, tmp_path):
    with pytest.raises(WeightsFileError, match="is a directory") as error:
        use_weights("PERL-Tiny-ViT", str(tmp_path))
    assert str(tmp_path / "open_clip_model.safetensors") in _assert_actionable(error, tmp_path)


def test_an_unreadable_file_says_permissions(use_weights, weights_files, tmp_path, monkeypatch):
    source, _ = weights_files["open_clip .bin"]
    path = tmp_path / "locked.bin"
    path.write_bytes(source.read_bytes())
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make os.access answer as for another user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != path and real_access(p, mode))
    try:
        with pytest.raises(WeightsFileError, match=r"cannot be read \(permissions\)") as error:
            use_weights("PERL-Tiny-ViT", str(path))
        assert f"chmod a+r {path}" in _assert_actionable(error, path)
    finally:
        path.chmod(0o644)


def test_a_missing_file_is_a_weights_file_error(use_weights, tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    with pytest.raises(WeightsFileError, match="does not exist") as error:
        use_weights("ViT-B-16-quickgelu", str(path))
    _assert_actionable(error, path)


def test_another_architecture_says_what_the_file_looks_like(use_weights, weights_files):
    path, _ = weights_files["open_clip .safetensors"]  # PERL-Tiny-ViT: 77 tokens; PERL-Toy-ViT: 32
    with pytest.raises(WeightsFileError) as error:
        use_weights("PERL-Toy-ViT", str(path))
    message = _assert_actionable(error, path)
    assert "does not fit clip.model_name='PERL-Toy-ViT'" in message
    assert "1 of another shape (positional_embedding (77, 64) vs (32, 64))" in message
    assert "(like PERL-Tiny-ViT)" in message
    assert "kedro run --params clip.model_name=PERL-Tiny-ViT" in message


def test_missing_and_unexpected_keys_are_listed(use_weights, tiny_clip, tmp_path):
    state = dict(tiny_clip.state_dict())
    del state["ln_final.weight"]
    state["visual.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    with pytest.raises(WeightsFileError) as error:
        use_weights("PERL-Tiny-ViT", str(path))
    message = _assert_actionable(error, path)
    assert "1 keys missing (ln_final.weight)" in message
    assert "1 unexpected (visual.extra_head.weight)" in message


@pytest.mark.slow
def test_a_vit_b16_file_for_the_tiny_config_is_recognised(vit_b16, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "open_clip_model.safetensors"
    save_file(vit_b16.state_dict(), str(path))
    with pytest.raises(WeightsFileError) as error:
        check_weights("PERL-Tiny-ViT", str(path))
    message = str(error.value)
    assert "a ViT of width 768, 12 layers, 16 px patches, 224 px images" in message
    assert "ViT-B-16-quickgelu" in message


def test_a_state_dict_of_something_else_is_not_a_clip(use_weights, tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsFileError, match="It does not look like an open_clip CLIP") as error:
        use_weights("PERL-Tiny-ViT", str(path))
    _assert_actionable(error, path)


# ---- the pre-run check: tags, the offline message ----------------------------------------------


def test_offline_message_names_every_route(tmp_path, monkeypatch):
    monkeypatch.setattr(clip_loading, "_reachable", lambda host, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        check_weights("ViT-B-16-quickgelu", "openai", tmp_path)
    assert time.perf_counter() - start < 30
    message = str(error.value)
    url = open_clip.get_pretrained_cfg("ViT-B-16-quickgelu", "openai")["url"]
    assert url in message and str(tmp_path / "ViT-B-16.pt") in message and "clip.cache_dir" in message
    assert "Hugging Face hub repository timm/vit_base_patch16_clip_224.openai" in message
    assert "open_clip_model.safetensors or open_clip_pytorch_model.bin" in message
    assert "kedro run --params clip.pretrained=/path/to/open_clip_model.safetensors" in message
    assert "kedro run --params clip.pretrained=/path/to/ViT-B-16.pt" in message


def test_offline_is_detected_from_hf_hub_offline_alone(tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by tests/conftest.py
    with pytest.raises(PretrainedWeightsUnavailable, match="seems to be offline"):
        check_weights("ViT-B-16-quickgelu", "openai", tmp_path)


def test_check_weights_accepts_random_weights_and_the_shipped_ones(monkeypatch, tmp_path):
    from safetensors.torch import load_file, save_file

    checked = []
    real_load = clip_loading._load_file
    monkeypatch.setattr(
        clip_loading, "_load_file", lambda *args, **kwargs: (checked.append(args), real_load(*args, **kwargs))
    )
    check_weights("ViT-B-16-quickgelu", None)
    assert checked == []  # random weights: no file to read
    check_weights("PERL-Toy-ViT", "toy_world")
    shipped = clip_loading.packaged_weights_path("PERL-Toy-ViT", "toy_world")
    assert checked == [("PERL-Toy-ViT", shipped)]  # the shipped file itself, read for keys and shapes
    # the same check refuses the shipped weights with one tensor missing
    state = load_file(shipped)
    save_file({k: v for k, v in state.items() if k != "visual.proj"}, tmp_path / "cut.safetensors")
    with pytest.raises(WeightsFileError, match="visual.proj"):
        check_weights("PERL-Toy-ViT", str(tmp_path / "cut.safetensors"))


def test_check_weights_refuses_unknown_names():
    with pytest.raises(ValueError, match="clip.model_name='nope' is not an open_clip model config"):
        check_weights("nope", "openai")
    with pytest.raises(ValueError, match="no pretrained tag 'nonsense'"):
        check_weights("ViT-B-16-quickgelu", "nonsense")


# ---- provenance ---------------------------------------------------------------------------------


def test_weights_identity(weights_files, tmp_path):
    path, _ = weights_files["open_clip .bin"]
    assert clip_loading.weights_identity("ViT-B-16-quickgelu", "openai") == "tag:openai"
    assert clip_loading.weights_identity("PERL-Tiny-ViT", None, init_seed=3) == "random:3"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert clip_loading.weights_identity("PERL-Tiny-ViT", str(path)) == f"sha256:{digest}"
    with pytest.raises(WeightsFileError, match="does not exist"):
        clip_loading.weights_identity("PERL-Tiny-ViT", str(tmp_path / "gone.pt"))


class _Run:
    """A training-script object pickled beside the weights (refused by weights_only loading)."""


def test_a_checkpoint_with_python_objects_says_how_to_extract_the_weights(use_weights, tiny_clip, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": tiny_clip.state_dict(), "run": _Run()}, path)
    with pytest.raises(WeightsFileError, match="holds Python objects besides tensors") as error:
        use_weights("PERL-Tiny-ViT", str(path))
    assert f"kedro run --params clip.pretrained={path}.weights.pt" in _assert_actionable(error, path)


def test_a_fifo_is_refused_at_once_not_read(tmp_path):
    import threading

    fifo = tmp_path / "ViT-B-16.pt"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def check() -> None:
        try:
            check_weights("ViT-B-16-quickgelu", str(fifo))
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(error)

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(timeout=2)
    if worker.is_alive():  # the check opened the FIFO and waits for a writer: let it go, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=5)
        pytest.fail("check_weights blocked on a FIFO given as clip.pretrained")
    assert isinstance(outcome[0], WeightsFileError)
    assert f"{fifo} (clip.pretrained) is not a regular file (it is a FIFO (named pipe)" in str(outcome[0])
