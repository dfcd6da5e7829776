"""Load the frozen open_clip backbone: pretrained by tag, from a local file, or randomly initialised."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-16-quickgelu"  # QuickGELU matters for the OpenAI weights (docs/method.md §1)
DEFAULT_PRETRAINED = "openai"
# weights this project trains and ships (model config, tag) -> file in perl_pipeline/weights/
PACKAGED_WEIGHTS = {("PERL-Toy-ViT", "toy_world"): "PERL-Toy-ViT_toy_world.safetensors"}


class PretrainedWeightsUnavailable(RuntimeError):
    """The pretrained weights could not be found locally nor downloaded."""


def load_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | os.PathLike | None = DEFAULT_PRETRAINED,
    *,
    cache_dir: str | os.PathLike | None = None,
    init_seed: int = 0,
) -> nn.Module:
    """Create an open_clip CLIP in fp32 and eval mode.

    Args:
        model_name: an open_clip model config, or one shipped with this package (PERL-Tiny-ViT,
            PERL-Toy-ViT).
        pretrained: a pretrained tag ("openai", or "toy_world" for PERL-Toy-ViT, whose weights
            ship with the package), a path to a weights file, or None for random weights.
        cache_dir: where downloaded weights are kept and looked for first.
        init_seed: seeds the random initialisation when `pretrained` is None.

    Raises:
        PretrainedWeightsUnavailable: offline with no local copy; the message names the file
            needed and where to put it.
    """
    import open_clip

    register_model_configs()
    if pretrained is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return open_clip.create_model(model_name, pretrained=None).eval()
    if (model_name, pretrained) in PACKAGED_WEIGHTS:  # shipped: load it as a local file
        path = packaged_weights_path(model_name, str(pretrained))
        if not path.is_file():
            raise PretrainedWeightsUnavailable(
                f"{path} is missing: rebuild the {model_name}/{pretrained} weights with "
                "`kedro run --pipelines toy_clip` (or `dvc repro toy_clip`), about 12 min on a CPU"
            )
        pretrained = path
    if _looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise PretrainedWeightsUnavailable(
                f"weights file {path} does not exist: set clip.pretrained to an existing file, "
                f"or to a tag such as {DEFAULT_PRETRAINED!r} to download it"
            )
        logger.info("Loading %s weights from %s", model_name, path)
        return open_clip.create_model(model_name, pretrained=str(path)).eval()

    cfg = open_clip.get_pretrained_cfg(model_name, str(pretrained))
    if not cfg:
        raise ValueError(
            f"open_clip has no pretrained tag {pretrained!r} for {model_name!r}; "
            f"known tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    local = _cached_copy(cfg, cache_dir)
    if local is not None:
        logger.info("Loading %s/%s from the local copy %s", model_name, pretrained, local)
        return open_clip.create_model(model_name, pretrained=str(local)).eval()
    hosts = [urlparse(cfg["url"]).hostname] if cfg.get("url") else []
    hosts += ["huggingface.co"] if cfg.get("hf_hub") else []
    if not any(_reachable(host) for host in hosts):  # fail in seconds, not after minutes of retries
        error = ConnectionError(f"none of {hosts} is reachable")
        raise PretrainedWeightsUnavailable(_offline_message(model_name, pretrained, cfg, cache_dir, error))
    try:
        return open_clip.create_model(model_name, pretrained=str(pretrained), cache_dir=cache_dir).eval()
    except (
        OSError,
        RuntimeError,
    ) as error:  # requests / urllib / huggingface_hub errors are OSErrors
        raise PretrainedWeightsUnavailable(
            _offline_message(model_name, pretrained, cfg, cache_dir, error)
        ) from error


def weights_identity(
    model_name: str,
    pretrained: str | os.PathLike | None,
    *,
    init_seed: int = 0,
) -> str:
    """What the weights are, for provenance: `tag:<tag>` for a named release (open_clip's tags are
    fixed files), `sha256:<hex>` for a file (the shipped ones included), `random:<seed>` for None."""
    if pretrained is None:
        return f"random:{init_seed}"
    if (model_name, pretrained) in PACKAGED_WEIGHTS:
        pretrained = packaged_weights_path(model_name, str(pretrained))
    if _looks_like_path(pretrained):
        path = Path(pretrained).expanduser().resolve()
        if not path.is_file():
            raise PretrainedWeightsUnavailable(f"weights file {path} does not exist (clip.pretrained)")
        stat = path.stat()
        return "sha256:" + _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    return f"tag:{pretrained}"


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in a process."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_weights_path(model_name: str, tag: str) -> Path:
    """Where the package keeps the weights it ships for (model_name, tag)."""
    return Path(str(resources.files("perl_pipeline") / "weights" / PACKAGED_WEIGHTS[(model_name, tag)]))


def register_model_configs() -> None:
    """Make the model configs shipped with this package (PERL-Tiny-ViT, PERL-Toy-ViT) known to open_clip."""
    import open_clip

    open_clip.add_model_config(resources.files("perl_pipeline.models") / "configs")


def _looks_like_path(pretrained: str | os.PathLike) -> bool:
    text = str(pretrained)
    return (
        isinstance(pretrained, os.PathLike)
        or os.sep in text
        or text.endswith((".pt", ".bin", ".safetensors"))
    )


def _reachable(host: str | None, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:443 opens (False offline or with HF_HUB_OFFLINE set)."""
    if not host or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _cached_copy(cfg: dict, cache_dir: str | os.PathLike | None) -> Path | None:
    """The URL's file name in cache_dir, if a previous download (or the user) put it there."""
    if not cache_dir or not cfg.get("url"):
        return None
    candidate = Path(cache_dir).expanduser() / os.path.basename(cfg["url"])
    return candidate if candidate.is_file() else None


def _offline_message(model_name, pretrained, cfg, cache_dir, error) -> str:
    url = cfg.get("url", "")
    filename = os.path.basename(url) if url else "the weights file"
    where = Path(cache_dir or "data/01_raw/clip").expanduser()
    return (
        f"could not obtain the {pretrained!r} weights for {model_name} ({type(error).__name__}: "
        f"{error}). This machine seems to be offline. Download {url or cfg.get('hf_hub')} on a "
        f"machine with internet and put it at {where / filename} (with clip.cache_dir: {where}), "
        f"or point clip.pretrained at the file: kedro run --params clip.pretrained=/path/to/{filename}"
    )
