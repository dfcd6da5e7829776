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

    if pretrained is None:
        register_model_configs()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return open_clip.create_model(model_name, pretrained=None).eval()
    local, cfg = _locate(model_name, pretrained, cache_dir)
    if cfg is None:
        return _load_file(model_name, local)
    if local is not None:
        logger.info("Loading %s/%s from the local copy %s", model_name, pretrained, local)
        return _with_tag_preprocessing(_load_file(model_name, local), cfg)
    _require_a_reachable_host(model_name, str(pretrained), cfg, cache_dir)
    from open_clip.pretrained import download_pretrained

    try:
        downloaded = download_pretrained(cfg, cache_dir=str(cache_dir) if cache_dir else None)
    except (OSError, RuntimeError) as error:  # requests / urllib / huggingface_hub errors are OSErrors
        raise PretrainedWeightsUnavailable(
            _offline_message(model_name, pretrained, cfg, cache_dir, error)
        ) from error
    return _with_tag_preprocessing(_load_file(model_name, Path(downloaded)), cfg)


def check_weights(
    model_name: str, pretrained: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None
) -> None:
    """Check in seconds, on the meta device, that `load_clip` will find usable weights.

    A file (or a tag's local copy) must be a readable checkpoint with `model_name`'s keys and shapes;
    a tag with no local copy needs one of its hosts reachable.
    """
    if pretrained is None:
        return
    local, cfg = _locate(model_name, pretrained, cache_dir)
    if local is not None:
        _check_file(model_name, local)
    else:
        _require_a_reachable_host(model_name, str(pretrained), cfg, cache_dir)


def _locate(model_name: str, pretrained: str | os.PathLike, cache_dir) -> tuple[Path | None, dict | None]:
    """(the weights file to read, if any; the tag's config, None for a file)."""
    register_model_configs()
    _require_model_config(model_name)
    if (model_name, pretrained) in PACKAGED_WEIGHTS:  # shipped: load it as a local file
        pretrained = _packaged_file(model_name, str(pretrained))
    if _looks_like_path(pretrained):
        return Path(pretrained).expanduser(), None
    cfg = _tag_cfg(model_name, str(pretrained))
    return _cached_copy(cfg, cache_dir), cfg


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
        if isinstance(error, PermissionError):
            raise _permission_error(path) from error
        if "Weights only load failed" in str(error):  # intact, but holds arbitrary Python objects
            raise WeightsFileError(
                f"weights file {path} (clip.pretrained) holds Python objects besides tensors, which "
                "torch.load does not unpickle safely. If you trust the file, save its weights alone: "
                f"python -c \"import torch; c = torch.load('{path}', weights_only=False); "
                f"torch.save(c.get('state_dict', c), '{path}.weights.pt')\" and then "
                f"kedro run --params clip.pretrained={path}.weights.pt",
                path,
            ) from error
        raise WeightsFileError(
            f"weights file {path} (clip.pretrained) is a damaged or truncated {kind} file and cannot be "
            f"read ({type(error).__name__}: {_first_line(error)}). Download it again, or point "
            f"clip.pretrained at a good copy: {_fix(path.name)}",
            path,
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
        try:
            return "sha256:" + file_digests(path)["sha256"]
        except PermissionError as error:
            raise _permission_error(path) from error
    return f"tag:{pretrained}"


def packaged_weights_path(model_name: str, tag: str) -> Path:
    """Where the package keeps the weights it ships for (model_name, tag)."""
    return Path(str(resources.files("perl_pipeline") / "weights" / PACKAGED_WEIGHTS[(model_name, tag)]))


def register_model_configs() -> None:
    """Make the model configs shipped with this package (PERL-Tiny-ViT, PERL-Toy-ViT) known to open_clip."""
    import open_clip

    open_clip.add_model_config(resources.files("perl_pipeline.models") / "configs")


def _load_file(model_name: str, path: Path) -> nn.Module:
    """The model with the weights of `path`, after checking they fit it key by key and shape by shape."""
    import open_clip

    state = read_state_dict(path)
    logger.info("Loading %s weights from %s", model_name, path)
    with torch.random.fork_rng(devices=[]), _no_random_init_warning():
        model = open_clip.create_model(model_name, pretrained=None)
    model.load_state_dict(_fit(model, state, model_name, path), strict=True)
    return model.eval()


def _check_file(model_name: str, path: Path) -> None:
    """`_load_file`'s checks on names and shapes only: the model is built on the meta device."""
    import open_clip

    state = read_state_dict(path, device="meta")
    with torch.device("meta"), _no_random_init_warning():
        model = open_clip.create_model(model_name, pretrained=None, device="meta")
    _fit(model, state, model_name, path)
    logger.info("Weights file %s fits %s", path, model_name)


def _sniff(path: Path) -> str:
    """The file's format from its first bytes: "safetensors", "torchscript", "torch zip" or "torch pickle"."""
    head = _read_head(path)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise WeightsFileError(
                f"weights file {path} (clip.pretrained) is a damaged or truncated zip archive "
                f"(the torch.save / TorchScript format): {error}. Download it again, or point "
                f"clip.pretrained at a good copy: {_fix(path.name)}",
                path,
            ) from error
        return "torchscript" if any(name.endswith("/constants.pkl") for name in names) else "torch zip"
    if len(head) > 8 and head[8:9] == b"{":  # an 8-byte little-endian header length, then JSON
        return "safetensors"
    if head.startswith(b"\x80"):  # a pickle: torch.save's legacy format
        return "torch pickle"
    raise WeightsFileError(
        f"weights file {path} (clip.pretrained) is not a checkpoint: it is {_what_bytes(head)}, not a "
        "TorchScript archive, torch.save state dict or safetensors file (an error page saved in place "
        f"of the weights looks like this). Download the weights again, or {_fix(path.name)}",
        path,
    )


def _read_head(path: Path, size: int = 64) -> bytes:
    """The first bytes of a weights file, after checking it exists and can be read."""
    _require_readable(path)
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except PermissionError as error:
        raise _permission_error(path) from error


def _require_readable(path: Path) -> None:
    if not path.exists():
        raise WeightsFileError(
            f"weights file {path} does not exist (clip.pretrained): point clip.pretrained at an existing "
            f"file, {_fix(path.name)}, or at a tag such as {DEFAULT_PRETRAINED!r} to download it: "
            f"kedro run --params clip.pretrained={DEFAULT_PRETRAINED}",
            path,
        )
    if path.is_dir():
        raise WeightsFileError(
            f"weights file {path} (clip.pretrained) is a directory: point clip.pretrained at the file in "
            f"it: kedro run --params clip.pretrained={path / HF_WEIGHTS_FILES[0]}",
            path,
        )
    if not path.is_file():  # a FIFO, socket or device: opening or reading it may block for ever
        raise WeightsFileError(
            f"weights file {path} (clip.pretrained) is not a regular file (it is {_file_kind(path)}; "
            f"reading it could wait for ever): point clip.pretrained at the weights file itself, "
            f"{_fix(path.name)}",
            path,
        )
    if not os.access(path, os.R_OK):
        raise _permission_error(path)


def _file_kind(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((text for test, text in kinds if test(mode)), "not a regular file")


def _permission_error(path: Path) -> WeightsFileError:
    return WeightsFileError(
        f"weights file {path} (clip.pretrained) cannot be read (permissions): make it readable with "
        f"`chmod a+r {path}`, or {_fix(path.name)} with a copy you can read",
        path,
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
        raise WeightsFileError(
            f"weights file {path} (clip.pretrained) holds {found}, not a state dict of tensors: "
            f"{_fix(path.name)} with a CLIP checkpoint",
            path,
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
    if missing or unexpected or reshaped:
        raise WeightsFileError(
            _mismatch_message(path, model_name, state, expected, missing, unexpected, reshaped), path
        )
    return state


def _mismatch_message(path, model_name, state, expected, missing, unexpected, reshaped) -> str:
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    differences = []
    if missing:
        differences.append(f"{len(missing)} keys missing ({few(missing)})")
    if unexpected:
        differences.append(f"{len(unexpected)} unexpected ({few(unexpected)})")
    if reshaped:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in reshaped]
        differences.append(f"{len(reshaped)} of another shape ({few(shapes)})")
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
    return (
        f"weights file {path} (clip.pretrained) does not fit clip.model_name={model_name!r}{expects}: "
        f"{'; '.join(differences)}. {looks}. Fix: {fix}"
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


def _describe(arch: dict[str, int]) -> str:
    text = f"a ViT of width {arch['width']}, {arch['layers']} layers, {arch['patch']} px patches"
    if "image_size" in arch:
        text += f", {arch['image_size']} px images"
    if "text_width" in arch:
        text += f"; a text tower of width {arch['text_width']}, {arch['text_layers']} layers"
    if "context_length" in arch:
        text += f", {arch['context_length']} tokens"
    if "embed_dim" in arch:
        text += f"; {arch['embed_dim']}-d embeddings"
    return text


def _configs_like(arch: dict[str, int]) -> list[str]:
    """open_clip model configs (shipped ones included) whose sizes match `arch`."""
    import open_clip

    names = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if "timm_model_name" in vision or "hf_model_name" in text:
            continue
        sizes = {
            "width": vision.get("width", 768),
            "layers": vision.get("layers", 12),
            "patch": vision.get("patch_size", 16),
            "image_size": vision.get("image_size", 224),
            "text_width": text.get("width", 512),
            "text_layers": text.get("layers", 12),
            "context_length": text.get("context_length", 77),
            "embed_dim": cfg.get("embed_dim"),
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


def _what_bytes(head: bytes) -> str:
    if not head:
        return "empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"of an unknown binary format (first bytes {head[:8].hex(' ')})"
    return f"a text file beginning {text[:40]!r}"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]


def _fix(filename: str = "ViT-B-16.pt") -> str:
    """The command that points clip.pretrained at a file (named like `filename` if that is a weights file)."""
    if not filename.endswith(_WEIGHTS_SUFFIXES):
        filename = "ViT-B-16.pt"
    return f"kedro run --params clip.pretrained=/path/to/{filename}"


def _require_model_config(model_name: str) -> None:
    import open_clip

    if open_clip.get_model_config(model_name) is None:
        raise ValueError(
            f"clip.model_name={model_name!r} is not an open_clip model config; "
            "e.g. kedro run --params clip.model_name=ViT-B-16-quickgelu"
        )


def _packaged_file(model_name: str, tag: str) -> Path:
    path = packaged_weights_path(model_name, tag)
    if not path.is_file():
        raise WeightsFileError(
            f"{path} is missing: rebuild the {model_name}/{tag} weights with "
            "`kedro run --pipelines toy_clip` (or `dvc repro toy_clip`), about 12 min on a CPU",
            path,
        )
    return path


def _tag_cfg(model_name: str, tag: str) -> dict:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        raise ValueError(
            f"open_clip has no pretrained tag {tag!r} for {model_name!r}; "
            f"known tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    return cfg


def _with_tag_preprocessing(model: nn.Module, cfg: dict) -> nn.Module:
    """Give the model the tag's preprocessing settings, as open_clip's create_model does."""
    import open_clip
    from open_clip.transform import merge_preprocess_dict

    preprocess = merge_preprocess_dict(open_clip.get_model_preprocess_cfg(model), cfg)
    open_clip.set_model_preprocess_cfg(model, preprocess)
    return model


def _require_a_reachable_host(model_name: str, tag: str, cfg: dict, cache_dir) -> None:
    """Fail in seconds, not after minutes of retries, when no host of the tag can be reached."""
    hosts = [urlparse(cfg["url"]).hostname] if cfg.get("url") else []
    hosts += ["huggingface.co"] if cfg.get("hf_hub") else []
    if not any(_reachable(host) for host in hosts):
        error = ConnectionError(f"none of {hosts} is reachable")
        raise PretrainedWeightsUnavailable(_offline_message(model_name, tag, cfg, cache_dir, error))


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
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # open_clip then downloads by URL only
        return None
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
