"""The projector's initialisation (perl.projector_init): PyTorch's default, or its output layer at zero."""

from __future__ import annotations

import pytest
import torch

from perl_pipeline.config import PerlConfig
from perl_pipeline.models import PERL, build_perl, perl_loss
from perl_pipeline.models.projector import INITS, ThoughtProjector

PROMPTS = ["a photo of a cat.", "a photo of a dog.", "banded texture."]


def _images(clip, batch: int) -> torch.Tensor:
    size = clip.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _output_layer(name: str) -> bool:
    return ".up." in f".{name}"


@pytest.mark.parametrize("share", [True, False])
def test_zero_out_zeroes_the_output_layer_and_keeps_the_rest_seeded(tiny_clip, share: bool) -> None:
    default = PERL(tiny_clip, split_layer=2, steps=3, share_projector=share, seed=5)
    zero = PERL(tiny_clip, split_layer=2, steps=3, share_projector=share, seed=5, projector_init="zero_out")
    assert INITS == ("default", "zero_out") and zero.projector_init == "zero_out"
    before, after = default.projector_state_dict(), zero.projector_state_dict()
    assert before.keys() == after.keys()
    outputs = [k for k in after if _output_layer(k)]
    assert len(outputs) == 2 * 2 * (1 if share else 3)  # weight and bias, per tower (and step)
    for key, value in after.items():
        if _output_layer(key):
            assert not value.any(), key
            assert before[key].abs().sum() > 0, key  # the default init is not zero there
        else:
            assert torch.equal(value, before[key]), key  # the same seeded draws as the default


def test_every_thought_starts_as_the_same_token(tiny_clip) -> None:
    model = PERL(tiny_clip, split_layer=2, steps=2, seed=0, projector_init="zero_out")
    for projector in (model.image_projector, model.text_projector):
        h = torch.randn(6, projector.norm.normalized_shape[0], generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            thoughts = projector(h)
        assert torch.equal(thoughts, thoughts[:1].expand_as(thoughts))
        assert not thoughts.any()
    default = PERL(tiny_clip, split_layer=2, steps=2, seed=0)
    h = torch.randn(6, default.image_projector.norm.normalized_shape[0])
    with torch.no_grad():
        varied = default.image_projector(h)
    assert not torch.equal(varied, varied[:1].expand_as(varied))  # the check above can fail


def test_zero_out_still_trains(tiny_clip, tokenize) -> None:
    """Gradients reach the zeroed output layer of both towers, and one AdamW step moves it."""
    model = PERL(tiny_clip, split_layer=2, steps=2, seed=0, projector_init="zero_out")
    before = {k: v.clone() for k, v in model.projector_state_dict().items()}
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    model.train()
    loss = perl_loss(
        model.encode_image(_images(tiny_clip, 4)),
        model.encode_text(tokenize(PROMPTS)),
        torch.tensor([0, 1, 2, 0]),
        model.logit_scale,
    ).total
    loss.backward()
    grads = dict(model.named_parameters())
    for tower in ("image_projector", "text_projector"):
        for name in ("up.weight", "up.bias"):
            grad = grads[f"{tower}.{name}"].grad
            assert grad is not None and grad.abs().sum() > 0, f"{tower}.{name}"
    optimiser.step()
    after = model.projector_state_dict()
    for key in (k for k in after if _output_layer(k)):
        assert after[key].any(), key
        assert not torch.equal(after[key], before[key]), key


def test_build_perl_passes_the_configured_init(tiny_clip) -> None:
    model = build_perl(tiny_clip, PerlConfig(split_layer=2, projector_init="zero_out"), seed=3)
    assert model.projector_init == "zero_out"
    assert not model.image_projector.up.weight.any() and not model.text_projector.up.bias.any()
    default = build_perl(tiny_clip, PerlConfig(split_layer=2), seed=3)
    assert default.projector_init == "default" and default.image_projector.up.weight.any()


def test_unknown_init_is_refused_with_the_parameter_name(tiny_clip) -> None:
    with pytest.raises(ValueError, match="perl.projector_init"):
        PERL(tiny_clip, split_layer=2, projector_init="xavier")
    with pytest.raises(ValueError, match="perl.projector_init"):
        ThoughtProjector(8, init="zeros")
