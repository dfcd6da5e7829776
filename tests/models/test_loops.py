"""Table 4's six reasoning-loop variants as configuration (docs/method.md §2.7).

Every variant, with depths scaled to the 4-block test model: step 0 is open_clip, every step
follows the recurrence written out here by hand, every projector learns, the parameter count is
the one of §2.7, and the exact shortcuts stay exact.
"""

from __future__ import annotations

import pytest
import torch

from perl_pipeline.models import PERL, PerlSeeds, ThoughtProjector, count_projector_parameters, perl_loss
from tests.models.test_perl import PROMPTS, _assert_readout_only_equals_full, _images

VARIANTS = {  # Table 4 on L = 4 blocks (the paper's L = 12 depths in brackets)
    "early": {"split_layer": 0},  # J = 0
    "deep": {"split_layer": [1, 2, 3]},  # [3, 7, 11], one φ
    "shared": {"split_layer": 2},  # 7, the default
    "step": {"split_layer": 2, "share_projector": False},  # 7, one φ per step
    "layer": {"split_layer": [1, 3], "share_layers": False},  # [7, 9, 11], one φ per depth
    "layer_step": {"split_layer": [0, 2, 3], "share_projector": False, "share_layers": False},
}
STEPS = 3


def _variant(clip, name: str, seed: int = 4, **kwargs) -> PERL:
    """The variant with every projector given its own clearly non-zero, non-constant output."""
    model = PERL(clip, steps=STEPS, seed=seed, **{**VARIANTS[name], **kwargs})
    projectors = [m for m in model.modules() if isinstance(m, ThoughtProjector)]
    with torch.no_grad():
        for i, projector in enumerate(projectors):
            g = torch.Generator().manual_seed(100 * seed + i)
            projector.up.weight.normal_(0.0, 1.0, generator=g)
            projector.up.bias.normal_(0.0, 0.5, generator=g)
    return model


def _depths(split_layer) -> list[int]:
    return [split_layer] if isinstance(split_layer, int) else list(split_layer)


def _phi(projector: torch.nn.Module, depth: int, step: int) -> torch.nn.Module:
    """The φ that makes z_depth(step), read off the model's public projector attribute."""
    if isinstance(projector, torch.nn.ModuleDict):  # one per depth
        projector = projector[f"J{depth}"]
    if isinstance(projector, torch.nn.ModuleList):  # one per step
        projector = projector[step - 1]
    return projector


def _block_input(clip, tower: str, inputs: torch.Tensor, index: int) -> torch.Tensor:
    """The input of block `index` while open_clip runs its own forward (a hook, not our code)."""
    seen = []
    blocks = (clip.visual.transformer if tower == "image" else clip.transformer).resblocks
    handle = blocks[index].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        (clip.encode_image if tower == "image" else clip.encode_text)(inputs)
    finally:
        handle.remove()
    return seen[0]


def _explicit_loops(clip, tower: str, inputs: torch.Tensor, projector, depths: list[int], steps: int):
    """e(0..K) of one tower by §2.7's equations, on full blocks and uncut prompts: S is the input
    of block J_1 in open_clip's own forward; at step k the depth-i thoughts z_i(1..k) go in front
    of the sequence at the input of block J_i; h(k) is read at the original CLS / EOS, shifted by
    all thoughts in front; every depth reads h(k - 1)."""
    image = tower == "image"
    S = _block_input(clip, tower, inputs, depths[0])  # [B, n, d] after blocks[0:J_1]
    blocks = (clip.visual.transformer if image else clip.transformer).resblocks
    rows = torch.arange(S.shape[0])
    start = torch.zeros_like(rows) if image else inputs.argmax(dim=-1)  # CLS / EOS (highest id)
    ends = [*depths[1:], len(blocks)]

    def run(x, first, last):  # blocks[first:last] on every token
        mask = None if image else torch.full((x.shape[1],) * 2, float("-inf")).triu(1)
        for block in blocks[first:last]:
            x = block(x, attn_mask=mask)
        return x

    def head(h):
        return clip.visual.ln_post(h) @ clip.visual.proj if image else clip.ln_final(h) @ clip.text_projection

    h = run(S, depths[0], len(blocks))[rows, start]  # h(0)
    e, z = [head(h)], [[] for _ in depths]
    for k in range(1, steps + 1):
        for i, depth in enumerate(depths):
            z[i].append(_phi(projector, depth, k)(h))  # z_i(k) = φ_i,k(h(k - 1))
        x, position = S, start
        for i, depth in enumerate(depths):
            x = torch.cat([torch.stack(z[i], dim=1), x], dim=1)  # [z_i(1), ..., z_i(k), x]
            position = position + k
            x = run(x, depth, ends[i])
        h = x[rows, position]  # the original CLS / EOS behind m·k thoughts
        e.append(head(h))
    return torch.stack(e)  # [K + 1, B, D]


# -- step 0 and the recurrence ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_zero_of_every_variant_equals_open_clip(tiny_clip, tokenize, variant):
    model = _variant(tiny_clip, variant)
    images, tokens = _images(tiny_clip), tokenize(PROMPTS)
    with torch.no_grad():
        image_steps, text_steps = model.encode_image(images), model.encode_text(tokens)
        torch.testing.assert_close(image_steps[0], tiny_clip.encode_image(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(text_steps[0], tiny_clip.encode_text(tokens), rtol=1e-5, atol=1e-5)
    assert image_steps.shape[0] == text_steps.shape[0] == STEPS + 1


@pytest.mark.parametrize("readout_only", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_follows_the_recurrence_at_every_step_of_three(
    tiny_clip, tokenize, variant, readout_only
):
    model = _variant(tiny_clip, variant)
    model.last_block_readout_only = readout_only
    depths = _depths(VARIANTS[variant]["split_layer"])
    images, tokens = _images(tiny_clip, 3), tokenize(PROMPTS)
    with torch.no_grad():
        ours = {"image": model.encode_image(images), "text": model.encode_text(tokens)}
        for tower, inputs in (("image", images), ("text", tokens)):
            projector = model.image_projector if tower == "image" else model.text_projector
            expected = _explicit_loops(tiny_clip, tower, inputs, projector, depths, STEPS)
            assert ours[tower].shape == expected.shape == (STEPS + 1, len(inputs), expected.shape[-1])
            for k in range(STEPS + 1):
                torch.testing.assert_close(
                    ours[tower][k], expected[k], rtol=1e-5, atol=1e-5, msg=f"{tower} {k}"
                )
            assert (expected[3] - expected[2]).abs().max() > 1e-3  # every step moves: the check has teeth


@pytest.mark.parametrize("shared", [True, False])
def test_one_depth_in_a_list_is_that_depth(tiny_clip, tokenize, shared):
    as_int = _variant(tiny_clip, "shared", share_projector=shared, share_layers=False)
    as_list = _variant(tiny_clip, "shared", split_layer=[2], share_projector=shared, share_layers=False)
    assert as_list.split_layer == 2 and as_list.share_layers
    assert as_list.projector_state_dict().keys() == as_int.projector_state_dict().keys()
    images, tokens = _images(tiny_clip, 3), tokenize(PROMPTS)
    with torch.no_grad():
        torch.testing.assert_close(as_list.encode_image(images), as_int.encode_image(images), rtol=0, atol=0)
        torch.testing.assert_close(as_list.encode_text(tokens), as_int.encode_text(tokens), rtol=0, atol=0)


def test_untied_depths_are_keyed_by_depth_and_tied_keys_are_unchanged(tiny_clip):
    keys = lambda name: set(_variant(tiny_clip, name).projector_state_dict())  # noqa: E731
    assert "image_projector.norm.weight" in keys("shared") and keys("deep") == keys("shared")
    assert "text_projector.2.up.bias" in keys("step") and "text_projector.3.up.bias" not in keys("step")
    assert {"image_projector.J1.up.bias", "image_projector.J3.up.bias"} <= keys("layer")
    assert "image_projector.J0.2.up.bias" in keys("layer_step")


# -- every projector learns ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_projector_of_every_variant_gets_a_gradient(tiny_clip, tokenize, variant):
    model = _variant(tiny_clip, variant).train()
    loss = perl_loss(
        model.encode_image(_images(tiny_clip, 3)),
        model.encode_text(tokenize(PROMPTS)),
        torch.tensor([0, 2, 1]),
        model.logit_scale,
    ).total
    loss.backward()
    parameters = dict(model.named_parameters())
    for name in model.projector_state_dict():
        grad = parameters[name].grad
        assert grad is not None and grad.abs().max() > 0, name


# -- parameter counts -------------------------------------------------------------------------------

PAPER = {  # Table 4 on ViT-B/16 (L = 12, K = 4): settings and our count (docs/method.md §2.7)
    "early": ({"split_layer": 0}, 6402),
    "deep": ({"split_layer": [3, 7, 11]}, 6402),
    "shared": ({"split_layer": 7}, 6402),
    "step": ({"split_layer": 7, "share_projector": False}, 25608),
    "layer": ({"split_layer": [7, 9, 11], "share_layers": False}, 19206),
    "layer_step": ({"split_layer": [7, 9, 11], "share_projector": False, "share_layers": False}, 76824),
}


@pytest.mark.parametrize("variant", PAPER)
def test_vit_b16_parameter_counts_of_the_six_variants(variant):
    settings, expected = PAPER[variant]
    pair = sum(p.numel() for width in (768, 512) for p in ThoughtProjector(width).parameters())
    copies = (4 if settings.get("share_projector") is False else 1) * (
        len(settings["split_layer"]) if settings.get("share_layers") is False else 1
    )
    assert pair == 6402 and copies * pair == expected
    assert count_projector_parameters({"image": 768, "text": 512}, steps=4, **settings) == expected


@pytest.mark.parametrize("modalities", [("image", "text"), ("text",)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_count_function_is_the_models_count(tiny_clip, variant, modalities):
    model = PERL(tiny_clip, steps=STEPS, modalities=modalities, rank=2, **VARIANTS[variant])
    widths = {"image": tiny_clip.visual.transformer.width, "text": tiny_clip.transformer.width}
    counted = count_projector_parameters(
        widths, steps=STEPS, modalities=modalities, rank=2, **VARIANTS[variant]
    )
    assert counted == sum(p.numel() for p in model.trainable_parameters())


# -- exact shortcuts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["early", "layer_step", "layer"])
def test_readout_shortcut_and_eos_cut_stay_exact(tiny_clip, tokenize, variant):
    _assert_readout_only_equals_full(_variant(tiny_clip, variant), _images(tiny_clip, 3), tokenize(PROMPTS))


@pytest.mark.parametrize("variant", ["early", "layer_step", "deep"])
def test_seeds_in_one_batch_equal_each_seed_alone(tiny_clip, tokenize, variant):
    models = [_variant(tiny_clip, variant, seed=seed) for seed in (1, 2)]
    prompts = [tokenize(PROMPTS), tokenize(PROMPTS[1:])]  # unequal lengths
    with torch.no_grad():
        prefixes = [models[0].image_prefix(_images(tiny_clip, b, seed=b)) for b in (2, 3)]
        texts = [models[0].text_prefix(tokens) for tokens in prompts]
        together = PerlSeeds(models)
        images, text = together.refine_image(prefixes), together.refine_text(texts)
        for model, prefix, texts_s, ours, ours_text in zip(
            models, prefixes, texts, images, text, strict=True
        ):
            torch.testing.assert_close(ours, model.refine_image(prefix), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(ours_text, model.refine_text(texts_s), rtol=1e-5, atol=1e-5)
    other = PERL(tiny_clip, steps=STEPS, **{**VARIANTS[variant], "split_layer": 1})
    with pytest.raises(ValueError, match="differ"):
        PerlSeeds([models[0], other])
