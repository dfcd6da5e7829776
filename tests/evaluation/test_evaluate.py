"""One pass over the images for several seeds; step 0 is zero-shot CLIP."""

from __future__ import annotations

import polars as pl
import torch
from torch.utils.data import TensorDataset

from perl_pipeline.config import EvalConfig
from perl_pipeline.evaluation.evaluate import evaluate_seeds
from perl_pipeline.models import PERL, clip_logits

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
