"""The training loop: seeded end to end, touching only the projectors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from perl_pipeline.config import TrainConfig
from perl_pipeline.device import resolve_device
from perl_pipeline.models import PERL, perl_loss
from perl_pipeline.training import train_projectors, training_step

CONFIG = TrainConfig(lr=1e-2, batch_size=4, num_workers=0, precision="fp32", log_every=2)


def _data(clip, n=12, classes=3):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 64, 64, generator=g)
    return TensorDataset(images, torch.arange(n) % classes)


def _prefix(model, tokenize):
    with torch.no_grad():
        return model.text_prefix(tokenize(["a photo of a cat.", "a dog.", "banded texture."]))


def _run(clip, tokenize, seed=1, **perl):
    model = PERL(clip, split_layer=2, steps=2, seed=seed, **perl)
    result = train_projectors(
        model, _data(clip), _prefix(model, tokenize), CONFIG, seed=seed, device=torch.device("cpu")
    )
    return model, result


def test_training_is_reproducible_bit_for_bit(tiny_clip, tokenize):
    a, result_a = _run(tiny_clip, tokenize, seed=3)
    b, result_b = _run(tiny_clip, tokenize, seed=3)
    assert result_a.steps == 3 and result_a.loss == result_b.loss
    for key, value in a.projector_state_dict().items():
        assert torch.equal(value, b.projector_state_dict()[key]), key


def test_a_different_seed_trains_differently(tiny_clip, tokenize):
    _, first = _run(tiny_clip, tokenize, seed=1)
    _, second = _run(tiny_clip, tokenize, seed=2)
    assert first.loss != second.loss


def test_training_moves_only_the_projectors(tiny_clip, tokenize):
    clip = copy.deepcopy(tiny_clip)
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    model, result = _run(clip, tokenize)
    initial = PERL(clip, split_layer=2, steps=2, seed=1).projector_state_dict()
    assert all(torch.equal(v, before[k]) for k, v in clip.state_dict().items())
    assert any(not torch.equal(v, initial[k]) for k, v in model.projector_state_dict().items())
    assert len(result.loss) == len(result.ce) == len(result.anchor) == result.steps


def test_training_leaves_the_callers_random_state_alone(tiny_clip, tokenize):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _run(tiny_clip, tokenize)
    assert torch.equal(torch.rand(3), expected)


def test_nothing_to_train_is_a_no_op(tiny_clip, tokenize):
    model, result = _run(tiny_clip, tokenize, modalities=())
    assert result.steps == 0 and result.loss == []


def test_image_only_training_uses_fixed_text(tiny_clip, tokenize):
    model, result = _run(tiny_clip, tokenize, modalities=("image",))
    assert model.text_projector is None and result.steps == 3


def test_auto_device_on_this_machine():
    expected = (
        "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device("auto").type == expected


def _one_step(clip, tokenize, text_as_prefix: bool):
    model = PERL(clip, split_layer=2, steps=2, seed=4).train()
    images, labels = _data(clip)[:4]
    prefix = _prefix(model, tokenize)
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=CONFIG.lr)
    if text_as_prefix:
        text = prefix
    else:
        with torch.no_grad():
            text = model.refine_text(prefix)
    loss = training_step(model, images, labels, text, optimiser, CONFIG)
    return model, loss, images, labels, prefix


def test_training_step_is_the_loss_then_one_adamw_step(tiny_clip, tokenize):
    model, loss, images, labels, prefix = _one_step(tiny_clip, tokenize, text_as_prefix=True)
    # the same step written out by hand, from the same initialisation
    by_hand = PERL(tiny_clip, split_layer=2, steps=2, seed=4).train()
    optimiser = torch.optim.AdamW(by_hand.trainable_parameters(), lr=CONFIG.lr)
    with torch.no_grad():
        image_prefix = by_hand.image_prefix(images)
    expected = perl_loss(
        by_hand.refine_image(image_prefix),
        by_hand.refine_text(prefix),
        labels,
        by_hand.logit_scale,
        CONFIG.anchor_weight,
    )
    optimiser.zero_grad()
    expected.total.backward()
    optimiser.step()
    assert torch.equal(loss.total, expected.total) and torch.equal(loss.anchor, expected.anchor)
    for key, value in model.projector_state_dict().items():
        assert torch.equal(value, by_hand.projector_state_dict()[key]), key


def test_training_step_with_fixed_text_leaves_the_text_projector(tiny_clip, tokenize):
    initial = PERL(tiny_clip, split_layer=2, steps=2, seed=4).projector_state_dict()
    model, _, _, _, _ = _one_step(tiny_clip, tokenize, text_as_prefix=False)
    after = model.projector_state_dict()
    text_keys = [k for k in after if k.startswith("text_projector")]
    image_keys = [k for k in after if k.startswith("image_projector")]
    assert text_keys and image_keys
    assert all(torch.equal(after[k], initial[k]) for k in text_keys)
    assert any(not torch.equal(after[k], initial[k]) for k in image_keys)


# -- every seed in one pass ------------------------------------------------------------------------


class _Augmented(TensorDataset):
    """Images with noise drawn from the global RNG, as torchvision's random transforms draw."""

    def __getitem__(self, i):
        image, label = super().__getitem__(i)
        return image + 0.5 * torch.randn(image.shape), label


def _seed_data(seed: int, n: int) -> _Augmented:
    g = torch.Generator().manual_seed(100 + seed)
    return _Augmented(torch.randn(n, 3, 64, 64, generator=g), torch.arange(n) % 3)


def _train_seeds(clip, tokenize, together: bool, seeds=(1, 2, 3), **perl):
    from perl_pipeline.training import train_seeds

    config = CONFIG.model_copy(update={"seeds_together": together, "epochs": 2})
    models = {seed: PERL(clip, split_layer=2, steps=2, seed=seed, **perl) for seed in seeds}
    images = {seed: _seed_data(seed, 12 if seed != 3 else 8) for seed in seeds}  # seed 3 ends early
    results = train_seeds(
        models, images, _prefix(models[seeds[0]], tokenize), config, device=torch.device("cpu")
    )
    return models, results


def _accuracy(models, tokenize):
    from perl_pipeline.config import EvalConfig
    from perl_pipeline.evaluation.evaluate import evaluate_seeds

    test = _seed_data(9, 12)
    runs = evaluate_seeds(
        models,
        TensorDataset(test.tensors[0], test.tensors[1]),
        _prefix(next(iter(models.values())), tokenize),
        {"all": [0, 1, 2]},
        EvalConfig(batch_size=6, num_workers=0, precision="fp32"),
        device=torch.device("cpu"),
        benchmark="toy",
    )
    return runs.sort("seed", "step")


def test_seeds_together_equal_each_seed_alone_and_its_accuracy(tiny_clip, tokenize):
    together, results = _train_seeds(tiny_clip, tokenize, together=True)
    alone, expected = _train_seeds(tiny_clip, tokenize, together=False)
    assert [results[s].steps for s in (1, 2, 3)] == [6, 6, 4]  # 2 epochs of 3 and of 2 batches
    for seed in (1, 2, 3):
        assert results[seed].loss == pytest.approx(expected[seed].loss, rel=1e-4, abs=1e-5)
        ours, theirs = together[seed].projector_state_dict(), alone[seed].projector_state_dict()
        for key, value in ours.items():
            torch.testing.assert_close(value, theirs[key], rtol=1e-4, atol=1e-5, msg=f"seed {seed} {key}")
    ours, theirs = _accuracy(together, tokenize), _accuracy(alone, tokenize)
    assert ours["accuracy"].to_list() == theirs["accuracy"].to_list()  # the final accuracies
    assert ours["image_alignment"].to_list() == pytest.approx(theirs["image_alignment"].to_list(), abs=1e-5)


def test_seeds_together_with_fixed_text_and_alone_when_single(tiny_clip, tokenize):
    together, results = _train_seeds(tiny_clip, tokenize, together=True, modalities=("image",))
    alone, expected = _train_seeds(tiny_clip, tokenize, together=False, modalities=("image",))
    for seed in (1, 2, 3):
        assert results[seed].loss == pytest.approx(expected[seed].loss, rel=1e-4, abs=1e-5)
    single, result = _train_seeds(tiny_clip, tokenize, together=True, seeds=(2,))
    reference = PERL(tiny_clip, split_layer=2, steps=2, seed=2)
    config = CONFIG.model_copy(update={"epochs": 2})
    expected = train_projectors(
        reference, _seed_data(2, 12), _prefix(reference, tokenize), config, seed=2, device=torch.device("cpu")
    )
    assert result[2].loss == expected.loss  # a single seed trains alone: bit for bit


def test_a_bf16_training_step_agrees_with_fp32(tiny_clip, tokenize):
    """The GPU's dtype path on the CPU: loss within 1 %, each projector's update within 0.99 cosine."""
    steps = {}
    for precision in ("fp32", "bf16"):
        model = PERL(tiny_clip, split_layer=2, steps=2, seed=4).train()
        before = model.projector_state_dict()
        images, labels = _data(tiny_clip)[:4]
        optimiser = torch.optim.SGD(model.trainable_parameters(), lr=1.0)  # the update is the gradient
        config = CONFIG.model_copy(update={"precision": precision})
        loss = training_step(model, images, labels, _prefix(model, tokenize), optimiser, config)
        update = {k: v - before[k] for k, v in model.projector_state_dict().items()}
        steps[precision] = loss, update
    (loss32, update32), (loss16, update16) = steps["fp32"], steps["bf16"]
    assert loss16.total.dtype == torch.float32 and loss16.total.item() != loss32.total.item()
    assert loss16.total.item() == pytest.approx(loss32.total.item(), rel=1e-2)
    for key, value in update32.items():
        if value.abs().max() > 0:
            cosine = torch.nn.functional.cosine_similarity(value.flatten(), update16[key].flatten(), dim=0)
            assert cosine > 0.99, (key, cosine)
