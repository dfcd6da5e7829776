"""One pass over the images for several seeds; step 0 is zero-shot CLIP."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from torch.utils.data import TensorDataset

from perl_pipeline.config import EvalConfig
from perl_pipeline.evaluation.evaluate import evaluate_seeds
from perl_pipeline.models import PERL, TextPrefix, clip_logits

PROMPTS = ["a photo of a cat.", "a photo of a dog.", "a red car.", "banded texture.", "a tree."]
CONFIG = EvalConfig(batch_size=7, num_workers=0, precision="fp32")
CLASS_SETS = {"base": [0, 1, 2], "novel": [3, 4]}


def _images(n=20):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 64, 64, generator=g), torch.arange(n) % 5)


def _models(clip, seeds):
    models = {}
    for seed in seeds:
        model = PERL(clip, split_layer=2, steps=3, seed=seed)
        with torch.no_grad():
            for projector in (model.image_projector, model.text_projector):
                projector.up.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
        models[seed] = model
    return models


def _evaluate(models, clip, tokenize):
    prefix = next(iter(models.values())).text_prefix(tokenize(PROMPTS))
    return evaluate_seeds(
        models, _images(), prefix, CLASS_SETS, CONFIG, device=torch.device("cpu"), benchmark="toy"
    )


def test_step_zero_is_a_direct_zero_shot_computation(tiny_clip, tokenize):
    runs = _evaluate(_models(tiny_clip, [1]), tiny_clip, tokenize)
    data = _images()
    images = torch.stack([x for x, _ in data])
    labels = torch.tensor([y for _, y in data])
    with torch.no_grad():
        image = tiny_clip.encode_image(images)
        text = tiny_clip.encode_text(tokenize(PROMPTS))
    for subset, classes in CLASS_SETS.items():
        keep = torch.isin(labels, torch.tensor(classes))
        logits = clip_logits(image[keep], text[classes], tiny_clip.logit_scale.exp())
        target = torch.tensor([classes.index(int(y)) for y in labels[keep]])
        expected = 100.0 * int((logits.argmax(-1) == target).sum()) / len(target)
        row = runs.filter((pl.col("subset") == subset) & (pl.col("step") == 0))
        assert row["accuracy"].item() == expected
        assert row["n_images"].item() == int(keep.sum())
        assert abs(row["image_alignment"].item() - 1.0) < 1e-6


def test_several_seeds_in_one_pass_equal_each_seed_alone(tiny_clip, tokenize):
    together = _evaluate(_models(tiny_clip, [1, 2, 3]), tiny_clip, tokenize)
    alone = pl.concat([_evaluate(_models(tiny_clip, [s]), tiny_clip, tokenize) for s in [1, 2, 3]])
    key = ["seed", "subset", "step"]
    assert together.sort(key).equals(alone.sort(key))
    assert together.height == 3 * 2 * 4
    # the seeds really differ after step 0
    later = together.filter(pl.col("step") == 3)
    assert later["image_alignment"].n_unique() > 1


# ---- the scoring itself, on embeddings chosen by hand ------------------------------------------


class ScriptedModel(torch.nn.Module):
    """Stands in for a PERL whose embeddings are given: each "image" is its own [K + 1, D]
    embedding per step, and each class's text prefix is its [K + 1, D] embedding per step."""

    def __init__(self, clip: object, steps: int) -> None:
        super().__init__()
        self.clip = clip
        self.steps = steps
        self.logit_scale = torch.tensor(10.0)

    def image_prefix(self, images: torch.Tensor) -> torch.Tensor:
        return images  # [B, K + 1, D]

    def refine_image(self, prefix: torch.Tensor) -> torch.Tensor:
        return prefix.transpose(0, 1)  # [K + 1, B, D]

    def refine_text(self, prefix: TextPrefix) -> torch.Tensor:
        return prefix.states.transpose(0, 1)  # [K + 1, C, D]


def _score(image_steps: torch.Tensor, labels: list[int], text_steps: torch.Tensor) -> pl.DataFrame:
    """evaluate_seeds on image embeddings [N, K + 1, D] and class embeddings [C, K + 1, D]."""
    model = ScriptedModel(clip=object(), steps=image_steps.shape[1] - 1)
    prefix = TextPrefix(text_steps, torch.zeros(text_steps.shape[0], dtype=torch.long))
    images = TensorDataset(image_steps, torch.tensor(labels))
    classes = {"all": list(range(text_steps.shape[0]))}
    config = EvalConfig(batch_size=3, num_workers=0, precision="fp32")
    runs = evaluate_seeds(
        {1: model}, images, prefix, classes, config, device=torch.device("cpu"), benchmark="b"
    )
    return runs.sort("step")


def test_top1_accuracy_on_small_tensors() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    text = torch.eye(3).unsqueeze(1)  # one step; class c's embedding is the c-th axis
    # with one-hot class embeddings the scores are the image embedding, up to a positive factor
    assert _score(logits.unsqueeze(1), [0, 1, 1, 2], text)["accuracy"].to_list() == [50.0]
    assert _score(logits.unsqueeze(1), [0, 1, 2, 0], text)["accuracy"].to_list() == [100.0]


def test_per_step_accuracy_returns_one_value_per_step() -> None:
    steps = torch.tensor(
        [
            [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]],  # image of class 0 at steps 0, 1, 2
            [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],  # image of class 1 at steps 0, 1, 2
        ]
    )  # step 0: both wrong, step 1: one right, step 2: both right
    text = torch.eye(2).unsqueeze(1).expand(2, 3, 2)
    runs = _score(steps, [0, 1], text)
    assert runs["step"].to_list() == [0, 1, 2]
    assert runs["accuracy"].to_list() == [0.0, 50.0, 100.0]
    assert runs["n_images"].to_list() == [2, 2, 2]


def test_alignment_is_the_mean_cosine_to_step_zero() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, -1.0], [3.0, 0.0]])  # orthogonal, opposite, equal
    images = torch.stack([a, a * 5.0, b], dim=1)  # [3 images, 3 steps, D]
    text = torch.stack([a, a * 5.0, b], dim=1)  # the same rows as 3 classes
    runs = _score(images, [0, 1, 2], text)
    assert runs["image_alignment"].to_list() == pytest.approx([1.0, 1.0, 0.0])
    assert runs["text_alignment"].to_list() == pytest.approx([1.0, 1.0, 0.0])


def test_batches_decoded_on_the_device_match_the_workers_path(tmp_path, tiny_clip):
    from perl_pipeline.benchmarks.images import ImageFolderTable, test_transform
    from perl_pipeline.evaluation.evaluate import EvalBatches
    from tests.benchmarks.test_decode import LEVEL, _photos

    names = _photos(tmp_path)
    table = ImageFolderTable(tmp_path, names, range(len(names)), test_transform(64))
    config = EvalConfig(batch_size=2, num_workers=0)
    paths = [EvalBatches(table, config, torch.device("cpu"), tiny_clip, on) for on in (True, False)]
    assert paths[0].gpu and not paths[1].gpu and len(paths[0]) == len(paths[1]) == 3
    for (ours, labels), (theirs, expected) in zip(*paths, strict=True):
        assert torch.equal(labels, expected)
        assert (ours - theirs).abs().max() <= 2 * LEVEL + 1e-6


def test_bf16_evaluation_agrees_with_fp32(tiny_clip, tokenize):
    """The GPU's dtype path on the CPU: every (seed, subset, step) within one of its test images
    of fp32's accuracy and 0.001 of its alignment (docs/method.md §3)."""
    import dataclasses

    runs = {}
    for precision in ("fp32", "bf16"):
        models = _models(tiny_clip, [1, 2])
        prefix = models[1].text_prefix(tokenize(PROMPTS))
        config = dataclasses.replace(CONFIG, precision=precision)
        runs[precision] = evaluate_seeds(
            models, _images(), prefix, CLASS_SETS, config, device=torch.device("cpu"), benchmark="toy"
        ).sort("seed", "subset", "step")
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert fp32.select("seed", "subset", "step", "n_images").equals(
        bf16.select("seed", "subset", "step", "n_images")
    )
    one_image = 100.0 / fp32["n_images"]
    assert ((fp32["accuracy"] - bf16["accuracy"]).abs() <= one_image + 1e-9).all()
    for column in ("image_alignment", "text_alignment"):
        assert (fp32[column] - bf16[column]).abs().max() < 1e-3
    assert not fp32["image_alignment"].equals(bf16["image_alignment"])  # bf16 really ran
