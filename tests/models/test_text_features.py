"""Class text features: computed once per class set, equal to open_clip's own text encoder."""

from __future__ import annotations

import torch

from perl_pipeline.config import PerlConfig
from perl_pipeline.models import build_perl, class_text_features

PROMPTS = ["a photo of a cat.", "a photo of a golden retriever, a type of pet.", "banded texture.", "x."]


def test_features_match_open_clip_and_do_not_depend_on_chunking(tiny_clip, tokenize):
    tokens = tokenize(PROMPTS)
    whole = class_text_features(tiny_clip, tokens, split_layer=2, device=torch.device("cpu"))
    chunked = class_text_features(tiny_clip, tokens, split_layer=2, device=torch.device("cpu"), batch_size=3)
    with torch.no_grad():
        reference = tiny_clip.encode_text(tokens)
    torch.testing.assert_close(whole.zero_shot, reference, rtol=1e-5, atol=1e-5)
    assert whole.tokens.shape[1] == int(tokens.argmax(-1).max()) + 1  # cut once for the class set
    for key in ("tokens", "eos_index", "prefix", "zero_shot"):
        torch.testing.assert_close(getattr(whole, key), getattr(chunked, key), rtol=1e-5, atol=1e-5)


def test_cached_prefix_feeds_the_refinement(tiny_clip, tokenize):
    tokens = tokenize(PROMPTS)
    features = class_text_features(tiny_clip, tokens, split_layer=2, device=torch.device("cpu"))
    model = build_perl(tiny_clip, PerlConfig(split_layer=2, steps=3), seed=4)
    with torch.no_grad():
        cached = model.refine_text(features.text_prefix())
        direct = model.encode_text(tokens)
    torch.testing.assert_close(cached, direct, rtol=1e-5, atol=1e-5)


def test_several_depths_use_the_prefix_at_the_first(tiny_clip, tokenize):
    """docs/method.md §2.7: the cached prefix ends at J_1; the features of [0, 2, 3] are those of 0."""
    tokens, cpu = tokenize(PROMPTS), torch.device("cpu")
    features = class_text_features(tiny_clip, tokens, split_layer=[0, 2, 3], device=cpu)
    assert features.split_layer == 0
    torch.testing.assert_close(features.prefix, class_text_features(tiny_clip, tokens, 0, cpu).prefix)
    config = PerlConfig(split_layer=[0, 2, 3], steps=3, share_projector=False, share_layers=False)
    model = build_perl(tiny_clip, config, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model.refine_text(features.text_prefix()), model.encode_text(tokens))
