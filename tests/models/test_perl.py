"""The PERL model against docs/method.md §2 and its public API."""

from __future__ import annotations

import copy

import pytest
import torch

from perl_pipeline.models import PERL, ThoughtProjector, causal_mask, perl_loss

PROMPTS = ["a photo of a cat.", "a photo of a golden retriever, a type of pet.", "banded texture."]


def _images(clip, batch=2, seed=0):
    size = clip.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _nonzero(model: PERL, scale: float = 0.5) -> PERL:
    """Give the projectors a clearly non-zero output so that thoughts matter."""
    with torch.no_grad():
        for projector in (model.image_projector, model.text_projector):
            if projector is not None:
                projector.up.bias.normal_(0.0, scale, generator=torch.Generator().manual_seed(1))
    return model


# -- parameter budget and freezing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("modalities", "expected"),
    [(("image", "text"), 6402), (("image",), 3841), (("text",), 2561), ((), 0)],
)
def test_trainable_parameters_on_vit_b16(vit_b16, modalities, expected):
    model = PERL(vit_b16, modalities=modalities)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == expected
    assert all(not p.requires_grad for p in vit_b16.parameters())
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in trainable}


def test_untied_projectors_have_one_copy_per_step(tiny_clip):
    shared = PERL(tiny_clip, split_layer=2, steps=3)
    untied = PERL(tiny_clip, split_layer=2, steps=3, share_projector=False)
    count = lambda m: sum(p.numel() for p in m.trainable_parameters())  # noqa: E731
    assert count(untied) == 3 * count(shared)
    assert len(untied.image_projector) == 3


def test_optimiser_step_changes_only_projectors(tiny_clip, tokenize):
    clip = copy.deepcopy(tiny_clip)
    frozen_before = {k: v.clone() for k, v in clip.state_dict().items()}
    model = PERL(clip, split_layer=2, steps=2, seed=0)
    projector_before = {k: v.clone() for k, v in model.projector_state_dict().items()}
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    assert not clip.training  # the backbone always runs in eval mode

    loss = perl_loss(
        model.encode_image(_images(clip, 4)),
        model.encode_text(tokenize(PROMPTS)),
        torch.tensor([0, 1, 2, 0]),
        model.logit_scale,
    ).total
    loss.backward()

    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {f"{name}" for name in projector_before}
    assert all(p.grad is None for p in clip.parameters())
    optimiser.step()
    for key, value in clip.state_dict().items():
        assert torch.equal(value, frozen_before[key]), key
    changed = [k for k, v in model.projector_state_dict().items() if not torch.equal(v, projector_before[k])]
    assert changed


# -- step 0 is zero-shot CLIP ------------------------------------------------------------------


@pytest.mark.parametrize("clip_name", ["tiny_clip", "vit_b16"])
def test_step_zero_equals_open_clip(request, clip_name, tokenize):
    clip = request.getfixturevalue(clip_name)
    depth = len(clip.visual.transformer.resblocks)
    model = _nonzero(PERL(clip, split_layer=depth // 2 + 1, steps=2))
    images, tokens = _images(clip), tokenize(PROMPTS)
    with torch.no_grad():
        image_steps, text_steps = model.encode_image(images), model.encode_text(tokens)
        reference_image, reference_text = clip.encode_image(images), clip.encode_text(tokens)
    assert image_steps.shape == (3, 2, reference_image.shape[-1])
    assert text_steps.shape == (3, len(PROMPTS), reference_text.shape[-1])
    torch.testing.assert_close(image_steps[0], reference_image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(text_steps[0], reference_text, rtol=1e-5, atol=1e-5)


def test_disabled_modality_returns_zero_shot_at_every_step(tiny_clip, tokenize):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=3, modalities=("text",)))
    with torch.no_grad():
        image_steps = model.encode_image(_images(tiny_clip))
        reference = tiny_clip.encode_image(_images(tiny_clip))
    assert model.image_projector is None
    assert image_steps.shape[0] == 4
    for step in image_steps:
        torch.testing.assert_close(step, reference, rtol=1e-5, atol=1e-5)


# -- thoughts act, and are read out correctly ----------------------------------------------------


def test_later_steps_differ_from_step_zero(tiny_clip, tokenize):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=3))
    with torch.no_grad():
        image_steps = model.encode_image(_images(tiny_clip))
        text_steps = model.encode_text(tokenize(PROMPTS))
    for steps in (image_steps, text_steps):
        for k in range(1, 4):
            assert (steps[k] - steps[0]).abs().max() > 1e-3
            assert (steps[k] - steps[k - 1]).abs().max() > 1e-4


def test_image_readout_is_the_original_cls_not_a_thought(tiny_clip):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=1))
    visual = tiny_clip.visual
    with torch.no_grad():
        prefix = model.image_prefix(_images(tiny_clip))
        h0 = model.refine_image(prefix)  # [2, B, D]
        blocks = visual.transformer.resblocks[2:]
        x = prefix
        for block in blocks:
            x = block(x)
        z1 = model.image_projector(x[:, 0])
        x = torch.cat([z1[:, None], prefix], dim=1)  # thought prepended
        for block in blocks:
            x = block(x)
        expected = visual.ln_post(x[:, 1]) @ visual.proj  # original CLS, shifted by one
        thought_readout = visual.ln_post(x[:, 0]) @ visual.proj
    torch.testing.assert_close(h0[1], expected)
    assert (h0[1] - thought_readout).abs().max() > 1e-3


def test_text_eos_sees_the_thoughts(tiny_clip, tokenize):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=2))
    tokens = tokenize(PROMPTS)
    with torch.no_grad():
        before = model.encode_text(tokens)
        # a different thought (not a constant shift: the blocks' LayerNorm would cancel that)
        bias = model.text_projector.up.bias
        bias.add_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(5)))
        after = model.encode_text(tokens)
    torch.testing.assert_close(before[0], after[0])  # zero-shot row untouched
    assert (before[1:] - after[1:]).abs().amax(dim=(1, 2)).min() > 1e-4


def test_text_readout_matches_a_manual_causal_pass(tiny_clip, tokenize):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=1))
    clip = tiny_clip
    tokens = tokenize(PROMPTS)
    with torch.no_grad():
        states, eos = model.text_prefix(tokens)
        ours = model.refine_text((states, eos))[1]
        x = states
        blocks = clip.transformer.resblocks[2:]
        for block in blocks:
            x = block(x, attn_mask=causal_mask(x.shape[1]))
        z1 = model.text_projector(x[torch.arange(3), eos])
        x = torch.cat([z1[:, None], states], dim=1)
        for block in blocks:
            x = block(x, attn_mask=causal_mask(x.shape[1]))
        expected = clip.ln_final(x[torch.arange(3), eos + 1]) @ clip.text_projection
    torch.testing.assert_close(ours, expected)


def test_cut_text_batch_equals_uncut(tiny_clip, tokenize):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=3))
    tokens = tokenize(PROMPTS)
    with torch.no_grad():
        cut_prefix = model.text_prefix(tokens, cut=True)
        full_prefix = model.text_prefix(tokens, cut=False)
        cut, full = model.refine_text(cut_prefix), model.refine_text(full_prefix)
    assert cut_prefix.states.shape[1] == int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]
    assert full_prefix.states.shape[1] == tokens.shape[1]
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)


def test_padding_after_eos_does_not_change_results(tiny_clip, tokenize):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=2))
    tokens = tokenize(PROMPTS)
    junk = tokens.clone()
    eos = tokens.argmax(-1)
    filler = torch.randint(1, 40000, junk.shape, generator=torch.Generator().manual_seed(3))
    after_eos = torch.arange(tokens.shape[1])[None] > eos[:, None]
    junk[after_eos] = filler[after_eos]
    with torch.no_grad():
        clean = model.refine_text(model.text_prefix(tokens, cut=False))
        noisy = model.refine_text(model.text_prefix(junk, cut=False))
    torch.testing.assert_close(clean, noisy, rtol=1e-5, atol=1e-5)


# -- seeds -----------------------------------------------------------------------------------------


def test_same_seed_same_projectors_and_outputs(tiny_clip, tokenize):
    a, b = PERL(tiny_clip, split_layer=2, seed=7), PERL(tiny_clip, split_layer=2, seed=7)
    c = PERL(tiny_clip, split_layer=2, seed=8)
    for key, value in a.projector_state_dict().items():
        assert torch.equal(value, b.projector_state_dict()[key])
    assert any(not torch.equal(v, c.projector_state_dict()[k]) for k, v in a.projector_state_dict().items())
    with torch.no_grad():
        assert torch.equal(a.encode_text(tokenize(PROMPTS)), b.encode_text(tokenize(PROMPTS)))


def test_projector_state_round_trip(tiny_clip):
    a, b = PERL(tiny_clip, split_layer=2, seed=1), PERL(tiny_clip, split_layer=2, seed=2)
    b.load_projector_state_dict(a.projector_state_dict())
    for key, value in a.projector_state_dict().items():
        assert torch.equal(value, b.projector_state_dict()[key])
    with pytest.raises(KeyError, match="modalities"):
        PERL(tiny_clip, split_layer=2, modalities=("image",)).load_projector_state_dict(
            a.projector_state_dict()
        )


def test_projector_is_the_spec_equation():
    projector = ThoughtProjector(8, rank=1, generator=torch.Generator().manual_seed(0))
    h = torch.randn(3, 8)
    normed = torch.nn.functional.layer_norm(h, (8,), projector.norm.weight, projector.norm.bias)
    hidden = torch.nn.functional.gelu(normed @ projector.down.weight.T + projector.down.bias)
    torch.testing.assert_close(projector(h), hidden @ projector.up.weight.T + projector.up.bias)
    assert sum(p.numel() for p in projector.parameters()) == 5 * 8 + 1


# -- impossible settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split_layer": -1}, "split_layer=-1 is outside 0..3"),
        ({"split_layer": 4}, "split_layer=4 is outside 0..3"),
        ({"split_layer": [1, 4]}, "split_layer=\\[1, 4\\] is outside 0..3"),
        ({"split_layer": [2, 1]}, "split_layer=\\[2, 1\\]: expected one depth or a strictly increasing"),
        ({"split_layer": []}, "split_layer=\\[\\]: expected one depth"),
        ({"split_layer": 2.5}, "split_layer=2.5: expected an integer or a list of integers"),
        ({"steps": -1}, "steps=-1 must be >= 0"),
        ({"rank": 0}, "rank=0 must be >= 1"),
        ({"modalities": ("image", "audio")}, "unknown modalities \\['audio'\\]"),
    ],
)
def test_impossible_settings_raise_at_construction(tiny_clip, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PERL(tiny_clip, **{"split_layer": 2, **kwargs})


def test_a_clip_without_the_expected_towers_is_refused(tiny_clip):
    import open_clip

    resnet = open_clip.create_model("RN50", pretrained=None)
    with pytest.raises(TypeError, match="VisionTransformer"):
        PERL(resnet)
    no_text = copy.deepcopy(tiny_clip)
    del no_text.token_embedding
    with pytest.raises(TypeError, match="causal text transformer"):
        PERL(no_text, split_layer=2)
    with pytest.raises(TypeError, match="VisionTransformer"):
        PERL(torch.nn.Linear(2, 2))


# -- exact shortcuts: the last block at the read-out row, several seeds in one batch -------------


def _assert_readout_only_equals_full(model: PERL, images: torch.Tensor, tokens: torch.Tensor) -> None:
    """Every step of both towers (text with and without the EOS cut) with the last block at the
    read-out row only equals the last block on every token, to float32 rounding."""
    outputs = []
    for readout_only in (True, False):
        model.last_block_readout_only = readout_only
        with torch.no_grad():
            text = [model.refine_text(model.text_prefix(tokens, cut=cut)) for cut in (True, False)]
            outputs.append([model.encode_image(images), *text])
    for ours, full in zip(*outputs, strict=True):
        assert ours.shape == full.shape
        torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("split_layer", [2, 3])  # J = L - 1: the last block is the only one refined
def test_last_block_at_the_readout_equals_the_full_block(tiny_clip, tokenize, split_layer):
    model = _nonzero(PERL(tiny_clip, split_layer=split_layer, steps=3))
    _assert_readout_only_equals_full(model, _images(tiny_clip, 3), tokenize(PROMPTS))


@pytest.mark.slow
def test_last_block_at_the_readout_equals_the_full_block_on_vit_b16(vit_b16, tokenize):
    model = _nonzero(PERL(vit_b16, split_layer=10, steps=2))
    _assert_readout_only_equals_full(model, _images(vit_b16, 1), tokenize(PROMPTS))


def test_last_block_at_the_readout_gives_the_full_gradients(tiny_clip, tokenize):
    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=2))
    images, tokens, labels = _images(tiny_clip, 3), tokenize(PROMPTS), torch.tensor([0, 2, 1])
    gradients = []
    for readout_only in (True, False):
        model.last_block_readout_only = readout_only
        model.zero_grad(set_to_none=True)
        loss = perl_loss(model.encode_image(images), model.encode_text(tokens), labels, model.logit_scale)
        loss.total.backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys() and len(gradients[0]) == 12  # both φ: 6 tensors each
    for name, grad in gradients[0].items():
        torch.testing.assert_close(grad, gradients[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_seeds_in_one_batch_equal_each_seed_alone(tiny_clip, tokenize):
    from perl_pipeline.models import PerlSeeds

    models = [_nonzero(PERL(tiny_clip, split_layer=2, steps=3, seed=seed), scale=seed) for seed in (1, 2, 3)]
    together = PerlSeeds(models)
    prompts = [tokenize(PROMPTS), tokenize(PROMPTS[:1]), tokenize(PROMPTS[1:])]  # unequal lengths
    with torch.no_grad():
        prefixes = [models[0].image_prefix(_images(tiny_clip, b, seed=b)) for b in (1, 3, 2)]
        texts = [models[0].text_prefix(tokens) for tokens in prompts]
        images, text = together.refine_image(prefixes), together.refine_text(texts)
        pairs = zip(models, prefixes, texts, strict=True)
        alone = [(m.refine_image(p), m.refine_text(t)) for m, p, t in pairs]
    for (image, text_steps), ours, ours_text in zip(alone, images, text, strict=True):
        torch.testing.assert_close(ours, image, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours_text, text_steps, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="same frozen CLIP"):
        PerlSeeds([models[0], PERL(copy.deepcopy(tiny_clip), split_layer=2, steps=3)])


# -- the recurrence at K = 3, written out step by step (docs/method.md §2.3) ----------------------


def _block_output(clip, tower: str, inputs: torch.Tensor, index: int) -> torch.Tensor:
    """The output of block `index` while open_clip runs its own forward (a hook, not our code)."""
    seen = []
    blocks = (clip.visual.transformer if tower == "image" else clip.transformer).resblocks
    handle = blocks[index].register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        (clip.encode_image if tower == "image" else clip.encode_text)(inputs)
    finally:
        handle.remove()
    return seen[0]


def _explicit_recurrence(clip, tower: str, inputs: torch.Tensor, projectors, split_layer: int, steps: int):
    """e(0..K) of one tower by the method's equations, on full blocks and uncut prompts:
    S from open_clip's own forward; h(k) read at the original CLS / EOS, shifted by k; text under a
    (k + n) x (k + n) causal mask."""
    image = tower == "image"
    S = _block_output(clip, tower, inputs, split_layer - 1)  # [B, n, d] after blocks[0:J]
    blocks = (clip.visual.transformer if image else clip.transformer).resblocks[split_layer:]
    rows = torch.arange(S.shape[0])
    start = torch.zeros_like(rows) if image else inputs.argmax(dim=-1)  # CLS / EOS (highest id)

    def R(x):  # blocks[J:L] on every token
        mask = None if image else torch.full((x.shape[1],) * 2, float("-inf")).triu(1)
        for block in blocks:
            x = block(x, attn_mask=mask)
        return x

    def head(h):
        return clip.visual.ln_post(h) @ clip.visual.proj if image else clip.ln_final(h) @ clip.text_projection

    h = R(S)[rows, start]  # h(0)
    e, z = [head(h)], []
    for k in range(1, steps + 1):
        phi = projectors[k - 1] if isinstance(projectors, torch.nn.ModuleList) else projectors
        z.append(phi(h))  # z(k) = φ_k(h(k - 1))
        x = torch.cat([torch.stack(z, dim=1), S], dim=1)  # [z(1), ..., z(k), S]
        h = R(x)[rows, start + k]  # the original CLS / EOS, now k places later
        e.append(head(h))
    return torch.stack(e)  # [K + 1, B, D]


def _untied_nonzero(model: PERL) -> PERL:
    """Each step's projector its own clearly different, non-constant output."""
    with torch.no_grad():
        for projectors in (model.image_projector, model.text_projector):
            for step, projector in enumerate(projectors, start=1):
                g = torch.Generator().manual_seed(10 + step)
                projector.up.weight.normal_(0.0, 1.0, generator=g)
                projector.up.bias.normal_(0.0, 0.5, generator=g)
    return model


@pytest.mark.parametrize("readout_only", [True, False])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("split_layer", [1, 2])
def test_both_towers_follow_the_recurrence_at_every_step_of_three(
    tiny_clip, tokenize, split_layer, shared, readout_only
):
    model = PERL(tiny_clip, split_layer=split_layer, steps=3, share_projector=shared, seed=4)
    model = _nonzero(model) if shared else _untied_nonzero(model)
    model.last_block_readout_only = readout_only
    images, tokens = _images(tiny_clip, 3), tokenize(PROMPTS)
    with torch.no_grad():
        ours = {"image": model.encode_image(images), "text": model.encode_text(tokens)}
        for tower, inputs in (("image", images), ("text", tokens)):
            projectors = model.image_projector if tower == "image" else model.text_projector
            expected = _explicit_recurrence(tiny_clip, tower, inputs, projectors, split_layer, 3)
            assert ours[tower].shape == expected.shape == (4, len(inputs), expected.shape[-1])
            for k in range(4):
                torch.testing.assert_close(
                    ours[tower][k], expected[k], rtol=1e-5, atol=1e-5, msg=f"{tower} {k}"
                )
            assert (expected[3] - expected[2]).abs().max() > 1e-3  # every step moves: the check has teeth


@pytest.mark.parametrize("tower", ["image", "text"])
def test_an_untied_projector_acts_from_its_own_step_on(tiny_clip, tokenize, tower):
    model = _untied_nonzero(PERL(tiny_clip, split_layer=2, steps=3, share_projector=False))
    encode = model.encode_image if tower == "image" else model.encode_text
    inputs = _images(tiny_clip, 3) if tower == "image" else tokenize(PROMPTS)
    projectors = model.image_projector if tower == "image" else model.text_projector
    with torch.no_grad():
        before = encode(inputs)
        for k in (1, 2, 3):
            bias = projectors[k - 1].up.bias
            bias.add_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(k)))
            after = encode(inputs)
            assert torch.equal(after[:k], before[:k]), f"φ_{k} changed a step before {k}"
            moved = (after[k:] - before[k:]).abs().amax(dim=(1, 2))
            assert moved.min() > 1e-4, f"φ_{k} left steps >= {k} unchanged: {moved.tolist()}"
            before = after


def _count_calls(monkeypatch, block: torch.nn.Module) -> dict[str, int]:
    """Count the last block's full forwards and the read-out-only evaluations."""
    from perl_pipeline.models import perl as perl_module

    calls = {"full": 0, "readout": 0}
    block.register_forward_hook(lambda *_: calls.__setitem__("full", calls["full"] + 1))
    original = perl_module.readout_block

    def counted(*args, **kwargs):
        calls["readout"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(perl_module, "readout_block", counted)
    return calls


def test_the_readout_shortcut_is_taken_for_open_clip_blocks(tiny_clip, tokenize, monkeypatch):
    clip = copy.deepcopy(tiny_clip)
    model = _nonzero(PERL(clip, split_layer=2, steps=3))
    image_calls = _count_calls(monkeypatch, clip.visual.transformer.resblocks[-1])
    text_calls = _count_calls(monkeypatch, clip.transformer.resblocks[-1])
    with torch.no_grad():
        model.refine_image(model.image_prefix(_images(clip, 2)))
        model.refine_text(model.text_prefix(tokenize(PROMPTS)))
    assert image_calls["full"] == text_calls["full"] == 0  # the last block never ran on every token
    assert text_calls["readout"] == 2 * 4  # K + 1 read-outs per tower, both towers


def test_other_blocks_fall_back_to_the_full_block_with_the_same_result(tiny_clip, tokenize, monkeypatch):
    from open_clip.transformer import ResidualAttentionBlock

    class OwnBlock(ResidualAttentionBlock):
        """A subclass: its forward may differ, so the shortcut must not assume it."""

    clip = copy.deepcopy(tiny_clip)
    model = _nonzero(PERL(clip, split_layer=2, steps=3))
    images, tokens = _images(clip, 2), tokenize(PROMPTS)
    with torch.no_grad():
        expected = model.encode_image(images), model.encode_text(tokens)
    for transformer in (clip.visual.transformer, clip.transformer):
        transformer.resblocks[-1].__class__ = OwnBlock
    calls = _count_calls(monkeypatch, clip.visual.transformer.resblocks[-1])
    with torch.no_grad():
        ours = model.encode_image(images), model.encode_text(tokens)
    assert calls == {"full": 4, "readout": 0}
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# -- the GPU's dtype path (bf16 autocast) on the CPU ------------------------------------------------

BF16_MIN_COSINE = 0.999  # docs/method.md §3: bf16 and fp32 embeddings agree to this cosine, every step


def test_bf16_autocast_agrees_with_fp32_at_every_step(tiny_clip, tokenize):
    from perl_pipeline.device import autocast

    model = _nonzero(PERL(tiny_clip, split_layer=2, steps=3))
    images, tokens, cpu = _images(tiny_clip, 3), tokenize(PROMPTS), torch.device("cpu")
    outputs = {}
    for precision in ("fp32", "bf16"):
        with torch.no_grad(), autocast(cpu, precision):
            outputs[precision] = model.encode_image(images), model.encode_text(tokens)
    for fp32, bf16 in zip(outputs["fp32"], outputs["bf16"], strict=True):
        assert bf16.shape == fp32.shape and torch.isfinite(bf16).all()
        assert not torch.equal(bf16.float(), fp32)  # the bf16 path really ran
        cosine = torch.nn.functional.cosine_similarity(bf16.float(), fp32, dim=-1)  # [K + 1, B]
        assert cosine.min() > BF16_MIN_COSINE, cosine
