"""Load the frozen open_clip backbone: pretrained by tag, from a local file, or randomly initialised.

A weights file's format is read from its first bytes: OpenAI's TorchScript archives, ``torch.save``
state dicts or safetensors, bare or as ``{"state_dict": ...}``, with or without DataParallel's
``module.`` prefix. Weights problems raise `PretrainedWeightsUnavailable` (a bad file:
`WeightsFileError`) naming the file, the parameter and the fix; `check_weights` finds them cheaply.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import socket
import stat
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from perl_pipeline.provenance import file_digests

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-16-quickgelu"  # QuickGELU matters for the OpenAI weights (docs/method.md §1)
DEFAULT_PRETRAINED = "openai"
# weights this project trains and ships (model config, tag) -> file in perl_pipeline/weights/
PACKAGED_WEIGHTS = {("PERL-Toy-ViT", "toy_world"): "PERL-Toy-ViT_toy_world.safetensors"}
# entries of OpenAI's TorchScript state dicts that are settings, not weights
OPENAI_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")
# what open_clip fetches from a Hugging Face hub repository given as "org/name/" (safetensors first)
HF_WEIGHTS_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_WEIGHTS_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_READ_ERRORS = (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile)


class PretrainedWeightsUnavailable(RuntimeError):
    """The pretrained weights could not be found locally nor downloaded, or cannot be used."""


class WeightsFileError(PretrainedWeightsUnavailable):
    """A weights file that is missing, unreadable, not a checkpoint, or of another architecture."""

    def __init__(self, message: str, path: str | os.PathLike) -> None:
        super().__init__(message)
        self.path = Path(path)


def _bad_file(path: Path, problem: str) -> WeightsFileError:
    """The error for a bad clip.pretrained file: "weights file <path> (clip.pretrained) <problem>"."""
    return WeightsFileError(f"weights file {path} (clip.pretrained) {problem}", path)


def load_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | os.PathLike | None = DEFAULT_PRETRAINED,
    *,
    cache_dir: str | os.PathLike | None = None,
    init_seed: int = 0,
) -> nn.Module:
    """Create an open_clip CLIP in fp32 and eval mode.

    ``pretrained``: a tag ("openai"; "toy_world" ships with the package), a weights file, or None
    for random weights seeded by ``init_seed``. ``cache_dir`` keeps downloads and is looked in first.
    """
    import open_clip
    from open_clip.transform import merge_preprocess_dict

    if pretrained is None:
        register_model_configs()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return open_clip.create_model(model_name, pretrained=None).eval()
    local, cfg = _locate(model_name, pretrained, cache_dir)
    if local is None:
        from open_clip.pretrained import download_pretrained

        try:
            local = Path(download_pretrained(cfg, cache_dir=str(cache_dir) if cache_dir else None))
        except (OSError, RuntimeError) as error:  # requests / urllib / huggingface_hub errors are OSErrors
            raise PretrainedWeightsUnavailable(
                _offline_message(model_name, pretrained, cfg, cache_dir, error)
            ) from error
    elif cfg is not None:
        logger.info("Loading %s/%s from the local copy %s", model_name, pretrained, local)
    model = _load_file(model_name, local)
    if cfg is not None:  # the tag's preprocessing settings, as open_clip's create_model gives them
        preprocess = merge_preprocess_dict(open_clip.get_model_preprocess_cfg(model), cfg)
        open_clip.set_model_preprocess_cfg(model, preprocess)
    return model


def check_weights(
    model_name: str, pretrained: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None
) -> None:
    """Check in seconds, on the meta device, that `load_clip` will find usable weights.

    A file (or a tag's local copy) must be a readable checkpoint with `model_name`'s keys and shapes;
    a tag with no local copy needs one of its hosts reachable.
    """
    if pretrained is None:
        return
    local, _ = _locate(model_name, pretrained, cache_dir)
    if local is not None:
        _load_file(model_name, local, device="meta")


def _locate(model_name: str, pretrained: str | os.PathLike, cache_dir) -> tuple[Path | None, dict | None]:
    """(the weights file to read, None for a tag to download; the tag's config, None for a file).

    A tag to download needs one of its hosts reachable: this fails in seconds, not after minutes of retries.
    """
    import open_clip

    register_model_configs()
    if open_clip.get_model_config(model_name) is None:
        raise ValueError(
            f"clip.model_name={model_name!r} is not an open_clip model config; "
            "e.g. kedro run --params clip.model_name=ViT-B-16-quickgelu"
        )
    if (model_name, pretrained) in PACKAGED_WEIGHTS:  # shipped: load it as a local file
        path = packaged_weights_path(model_name, str(pretrained))
        if not path.is_file():
            raise WeightsFileError(
                f"{path} is missing: rebuild the {model_name}/{pretrained} weights with "
                "`kedro run --pipelines toy_clip` (or `dvc repro toy_clip`), about 12 min on a CPU",
                path,
            )
        return path, None
    if _looks_like_path(pretrained):
        return Path(pretrained).expanduser(), None
    cfg = open_clip.get_pretrained_cfg(model_name, str(pretrained))
    if not cfg:
        raise ValueError(
            f"open_clip has no pretrained tag {pretrained!r} for {model_name!r}; "
            f"known tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    local = _cached_copy(cfg, cache_dir)
    hosts = [urlparse(cfg["url"]).hostname] if cfg.get("url") else []
    hosts += ["huggingface.co"] if cfg.get("hf_hub") else []
    if local is None and not any(_reachable(host) for host in hosts):
        error = ConnectionError(f"none of {hosts} is reachable")
        raise PretrainedWeightsUnavailable(_offline_message(model_name, pretrained, cfg, cache_dir, error))
    return local, cfg


def read_state_dict(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped and without OpenAI's non-weight entries.

    ``device="meta"`` reads only names and shapes (no tensor data for safetensors and torch.save files).
    """
    from safetensors import SafetensorError

    path = Path(path).expanduser()
    kind = _sniff(path)
    meta = torch.device(device).type == "meta"
    try:
        if kind == "safetensors":
            contents = _read_safetensors(path, meta)
        elif kind == "torchscript":
            with warnings.catch_warnings():  # "torch.jit.load is deprecated": OpenAI's archives need it
                warnings.simplefilter("ignore", DeprecationWarning)
                contents = torch.jit.load(str(path), map_location="cpu").state_dict()
            contents = {k: v.to("meta") for k, v in contents.items()} if meta else contents
        else:
            contents = torch.load(
                path, map_location=device, weights_only=True, mmap=kind == "torch zip" and not meta
            )
    except (*_READ_ERRORS, SafetensorError) as error:
        if "Weights only load failed" in str(error):  # intact, but holds arbitrary Python objects
            raise _bad_file(
                path,
                "holds Python objects besides tensors, which torch.load does not unpickle safely. If you "
                'trust the file, save its weights alone: python -c "import torch; c = '
                f"torch.load('{path}', weights_only=False); torch.save(c.get('state_dict', c), "
                f"'{path}.weights.pt')\" and then kedro run --params clip.pretrained={path}.weights.pt",
            ) from error
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise _bad_file(
            path,
            f"is a damaged or truncated {kind} file and cannot be read ({type(error).__name__}: "
            f"{first_line}). Download it again, or point clip.pretrained at a good copy: {_fix(path.name)}",
        ) from error
    return _unwrap(contents, path)


def weights_identity(model_name: str, pretrained: str | os.PathLike | None, *, init_seed: int = 0) -> str:
    """What the weights are, for provenance: `tag:<tag>`, `sha256:<hex>` (a file) or `random:<seed>`."""
    if pretrained is None:
        return f"random:{init_seed}"
    if (model_name, pretrained) in PACKAGED_WEIGHTS:
        pretrained = packaged_weights_path(model_name, str(pretrained))
    if _looks_like_path(pretrained):
        path = Path(pretrained).expanduser().resolve()
        _require_readable(path)
        return "sha256:" + file_digests(path)["sha256"]
    return f"tag:{pretrained}"


def packaged_weights_path(model_name: str, tag: str) -> Path:
    """Where the package keeps the weights it ships for (model_name, tag)."""
    return Path(str(resources.files("perl_pipeline") / "weights" / PACKAGED_WEIGHTS[(model_name, tag)]))


def register_model_configs() -> None:
    """Make the model configs shipped with this package (PERL-Tiny-ViT, PERL-Toy-ViT) known to open_clip."""
    import open_clip

    open_clip.add_model_config(resources.files("perl_pipeline.models") / "configs")


def _load_file(model_name: str, path: Path, device: str = "cpu") -> nn.Module:
    """The model with the weights of `path`, after checking they fit it key by key and shape by shape.

    On the meta device only names and shapes are read and checked: `check_weights`, in seconds.
    """
    import open_clip

    state = read_state_dict(path, device=device)
    with torch.random.fork_rng(devices=[]), torch.device(device), _no_random_init_warning():
        model = open_clip.create_model(model_name, pretrained=None, device=device)
    model.load_state_dict(_fit(model, state, model_name, path), strict=True)
    logger.info("%s weights from %s: every key and shape fits", model_name, path)
    return model.eval()


def _sniff(path: Path) -> str:
    """The file's format from its first bytes: "safetensors", "torchscript", "torch zip" or "torch pickle"."""
    _require_readable(path)
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise _bad_file(
                path,
                f"is a damaged or truncated zip archive (the torch.save / TorchScript format): {error}. "
                f"Download it again, or point clip.pretrained at a good copy: {_fix(path.name)}",
            ) from error
        return "torchscript" if any(name.endswith("/constants.pkl") for name in names) else "torch zip"
    if len(head) > 8 and head[8:9] == b"{":  # an 8-byte little-endian header length, then JSON
        return "safetensors"
    if head.startswith(b"\x80"):  # a pickle: torch.save's legacy format
        return "torch pickle"
    try:
        found = f"a text file beginning {head.decode('utf-8')[:40]!r}" if head else "empty"
    except UnicodeDecodeError:
        found = f"of an unknown binary format (first bytes {head[:8].hex(' ')})"
    raise _bad_file(
        path,
        f"is not a checkpoint: it is {found}, not a TorchScript archive, torch.save state dict or "
        "safetensors file (an error page saved in place of the weights looks like this). Download the "
        f"weights again, or {_fix(path.name)}",
    )


# what a path that exists but is not a regular file is (reading it may block for ever)
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _require_readable(path: Path) -> None:
    if not path.exists():
        raise WeightsFileError(
            f"weights file {path} does not exist (clip.pretrained): point clip.pretrained at an existing "
            f"file, {_fix(path.name)}, or at a tag such as {DEFAULT_PRETRAINED!r} to download it: "
            f"kedro run --params clip.pretrained={DEFAULT_PRETRAINED}",
            path,
        )
    if path.is_dir():
        raise _bad_file(
            path,
            "is a directory: point clip.pretrained at the file in it: "
            f"kedro run --params clip.pretrained={path / HF_WEIGHTS_FILES[0]}",
        )
    if not path.is_file():
        mode = path.stat().st_mode
        kind = next((text for test, text in _SPECIAL_FILES if test(mode)), "not a regular file")
        raise _bad_file(
            path,
            f"is not a regular file (it is {kind}; reading it could wait for ever): point "
            f"clip.pretrained at the weights file itself, {_fix(path.name)}",
        )
    if not os.access(path, os.R_OK):  # checked before any read: the readers need no PermissionError case
        raise _bad_file(
            path,
            f"cannot be read (permissions): make it readable with `chmod a+r {path}`, or "
            f"{_fix(path.name)} with a copy you can read",
        )


def _read_safetensors(path: Path, meta: bool) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        if meta:  # the header alone: names and shapes
            return {k: torch.empty(handle.get_slice(k).get_shape(), device="meta") for k in handle.keys()}
        return {k: handle.get_tensor(k) for k in handle.keys()}


def _unwrap(contents: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint, in open_clip's key layout."""
    if isinstance(contents, Mapping) and isinstance(contents.get("state_dict"), Mapping):
        contents = contents["state_dict"]
    is_map = isinstance(contents, Mapping)
    tensors = {str(k): v for k, v in contents.items() if isinstance(v, torch.Tensor)} if is_map else {}
    if not tensors:
        found = (
            f"a dict with keys {sorted(map(str, contents))[:5]}" if is_map else f"a {type(contents).__name__}"
        )
        raise _bad_file(
            path, f"holds {found}, not a state dict of tensors: {_fix(path.name)} with a CLIP checkpoint"
        )
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel / DDP
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    for key in OPENAI_JIT_EXTRAS:
        tensors.pop(key, None)
    return tensors


def _fit(
    model: nn.Module, state: dict[str, torch.Tensor], model_name: str, path: Path
) -> dict[str, torch.Tensor]:
    """`state` converted as open_clip's `load_checkpoint` does (no resizing), checked against `model`."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    expected = model.state_dict()
    for key in ("logit_scale", "logit_bias"):
        if key in state and key in expected and state[key].numel() == expected[key].numel():
            state[key] = state[key].reshape(expected[key].shape)
    if "logit_bias" in expected and "logit_bias" not in state:  # a non-SigLIP checkpoint
        state["logit_bias"] = torch.zeros_like(expected["logit_bias"])
    # buffers the model computes itself (attn_mask) are persistent in scripted models: not weights
    computed = {name for name, _ in model.named_buffers()} - set(expected)
    state = {k: v for k, v in state.items() if k not in computed}
    missing = [k for k in expected if k not in state]  # in the model's order: blocks 0, 1, ..., 10
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or reshaped):
        return state

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in reshaped]
    kinds = ((missing, "keys missing"), (unexpected, "unexpected"), (shapes, "of another shape"))
    differences = [f"{len(keys)} {what} ({few(keys)})" for keys, what in kinds if keys]
    found, wanted = _architecture(state), _architecture(expected)
    looks = "It does not look like an open_clip CLIP"
    fix = f"point clip.pretrained at {model_name} weights: {_fix(path.name)}"
    if found is not None:
        names = _configs_like(found)
        looks = f"The file looks like {_describe(found)}" + (
            f" (like {', '.join(names[:4])})" if names else ""
        )
        if names:
            fix = f"use the matching model config: kedro run --params clip.model_name={names[0]}, or {fix}"
    expects = f" ({_describe(wanted)})" if wanted is not None else ""
    raise _bad_file(
        path,
        f"does not fit clip.model_name={model_name!r}{expects}: {'; '.join(differences)}. {looks}. "
        f"Fix: {fix}",
    )


def _architecture(state: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """A CLIP's sizes read off its state dict (None if it has no ViT image tower)."""
    conv = state.get("visual.conv1.weight")
    if conv is None or conv.dim() != 4:
        return None
    arch = {
        "width": conv.shape[0],
        "layers": _blocks(state, "visual.transformer.resblocks."),
        "patch": conv.shape[-1],
    }
    position = state.get("visual.positional_embedding")
    if position is not None:
        arch["image_size"] = math.isqrt(position.shape[0] - 1) * arch["patch"]
    if "token_embedding.weight" in state:
        arch["text_width"] = state["token_embedding.weight"].shape[1]
        arch["text_layers"] = _blocks(state, "transformer.resblocks.")
    if "positional_embedding" in state:
        arch["context_length"] = state["positional_embedding"].shape[0]
    if "text_projection" in state and state["text_projection"].dim() == 2:
        arch["embed_dim"] = state["text_projection"].shape[1]
    return arch


def _blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


# `_architecture`'s sizes: how they read in messages (text_layers comes with text_width), and where
# open_clip model configs keep them, with open_clip's default
_SIZES = (
    ("width", "a ViT of width {}", "vision_cfg", "width", 768),
    ("layers", ", {} layers", "vision_cfg", "layers", 12),
    ("patch", ", {} px patches", "vision_cfg", "patch_size", 16),
    ("image_size", ", {} px images", "vision_cfg", "image_size", 224),
    ("text_width", "; a text tower of width {}", "text_cfg", "width", 512),
    ("text_layers", ", {} layers", "text_cfg", "layers", 12),
    ("context_length", ", {} tokens", "text_cfg", "context_length", 77),
    ("embed_dim", "; {}-d embeddings", None, "embed_dim", None),
)


def _describe(arch: dict[str, int]) -> str:
    return "".join(text.format(arch[key]) for key, text, *_ in _SIZES if key in arch)


def _configs_like(arch: dict[str, int]) -> list[str]:
    """open_clip model configs (shipped ones included) whose sizes match `arch`."""
    import open_clip

    names = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        if "timm_model_name" in cfg.get("vision_cfg", {}) or "hf_model_name" in cfg.get("text_cfg", {}):
            continue
        sizes = {
            key: (cfg.get(part, {}) if part else cfg).get(field, default)
            for key, _, part, field, default in _SIZES
        }
        if all(sizes[key] == value for key, value in arch.items()):
            names.append(name)
    return names


@contextlib.contextmanager
def _no_random_init_warning() -> Iterator[None]:
    """Hide open_clip's "initialized randomly" warning while a model is built to receive weights."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _fix(filename: str = "ViT-B-16.pt") -> str:
    """The command that points clip.pretrained at a file (named like `filename` if that is a weights file)."""
    if not filename.endswith(_WEIGHTS_SUFFIXES):
        filename = "ViT-B-16.pt"
    return f"kedro run --params clip.pretrained=/path/to/{filename}"


def _looks_like_path(pretrained: str | os.PathLike) -> bool:
    text = str(pretrained)
    return isinstance(pretrained, os.PathLike) or os.sep in text or text.endswith(_WEIGHTS_SUFFIXES)


def _reachable(host: str | None, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:443 opens (False offline or with HF_HUB_OFFLINE set)."""
    if not host or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hf_files(cfg: dict) -> tuple[str, list[str]]:
    """(repository, file names) open_clip fetches for a tag's `hf_hub` entry, safetensors first."""
    repo, filename = os.path.split(cfg["hf_hub"])
    if not filename:
        return repo, list(HF_WEIGHTS_FILES)
    if filename.endswith((".bin", ".pth")):
        return repo, [filename[:-4] + ".safetensors", filename]
    return repo, [filename]


def _cached_copy(cfg: dict, cache_dir: str | os.PathLike | None) -> Path | None:
    """A local copy of a tag's weights: the URL's file name in cache_dir, else a Hugging Face hub
    download in cache_dir (the hub's default cache when cache_dir is None)."""
    if cache_dir and cfg.get("url"):
        candidate = Path(cache_dir).expanduser() / os.path.basename(cfg["url"])
        if candidate.is_file():
            return candidate
    if not cfg.get("hf_hub"):
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, files = _hf_files(cfg)
    hub_cache = str(Path(cache_dir).expanduser()) if cache_dir else None
    for filename in files:
        found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def _offline_message(model_name, pretrained, cfg, cache_dir, error) -> str:
    url = cfg.get("url", "")
    filename = os.path.basename(url) if url else "the weights file"
    where = Path(cache_dir or "data/01_raw/clip").expanduser()
    routes = []
    if url:
        routes.append(
            f"download {url} (OpenAI's TorchScript archive) and put it at {where / filename} "
            f"(clip.cache_dir: {where})"
        )
    if cfg.get("hf_hub"):
        repo, files = _hf_files(cfg)
        filename = filename if url else files[0]
        routes.append(
            f"download {' or '.join(files)} from the Hugging Face hub repository {repo} "
            f"(https://huggingface.co/{repo}) and pass it: {_fix(files[0])}"
        )
    routes.append(f"point clip.pretrained at any copy of these weights: {_fix(filename)}")
    listed = "; ".join(f"({i}) {route}" for i, route in enumerate(routes, 1))
    return (
        f"could not obtain the {pretrained!r} weights for {model_name} ({type(error).__name__}: "
        f"{error}). This machine seems to be offline. On a machine with internet, any of these works: "
        f"{listed}"
    )
