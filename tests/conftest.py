"""Shared fixtures: small randomly initialised open_clip models (no download anywhere)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = "PERL-Tiny-ViT"


@pytest.fixture(scope="session")
def tiny_clip():
    """A 4-block ViT / 4-block causal text CLIP with random weights (64 px images)."""
    from perl_pipeline.models import load_clip

    return load_clip(TINY, pretrained=None, init_seed=0)


@pytest.fixture(scope="session")
def vit_b16():
    """The real ViT-B/16 architecture (OpenAI layout, QuickGELU) with random weights."""
    from perl_pipeline.models import load_clip

    return load_clip("ViT-B-16-quickgelu", pretrained=None, init_seed=0)


@pytest.fixture(scope="session")
def tokenize():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-16-quickgelu")
