"""One pass over the images for several seeds; step 0 is zero-shot CLIP."""

from __future__ import annotations

import math
import statistics

import polars as pl
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from perl_pipeline.config import EvalConfig
from perl_pipeline.evaluation.evaluate import evaluate_seeds, evaluate_with_trajectories, jacobian_subsample
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
    runs = {}
    for precision in ("fp32", "bf16"):
        models = _models(tiny_clip, [1, 2])
        prefix = models[1].text_prefix(tokenize(PROMPTS))
        config = CONFIG.model_copy(update={"precision": precision})
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


# ---- the dynamics (docs/method.md §6.10) --------------------------------------------------------

DYNAMICS = CONFIG.model_copy(update={"jacobian_images": 5})


def _evaluate_dynamics(models, tokenize, config=DYNAMICS, images=None):
    prefix = next(iter(models.values())).text_prefix(tokenize(PROMPTS))
    return evaluate_with_trajectories(
        models, images or _images(), prefix, CLASS_SETS, config, device=torch.device("cpu"), benchmark="toy"
    )


def _quartiles(values: list[float]) -> list[float]:
    """25th, 50th, 75th percentiles with linear interpolation (one value: itself)."""
    return [values[0]] * 3 if len(values) == 1 else statistics.quantiles(values, n=4, method="inclusive")


class CountingImages(TensorDataset):
    """Counts the images read."""

    reads = 0

    def __getitem__(self, i):
        CountingImages.reads += 1
        return super().__getitem__(i)


@pytest.fixture(scope="module")
def dynamics(tiny_clip, tokenize):
    """Two seeds' models, the dynamics evaluation of _images() (counted) and the images it read."""
    models = _models(tiny_clip, [1, 2])
    images = CountingImages(*_images().tensors)
    CountingImages.reads = 0
    runs, trajectories = _evaluate_dynamics(models, tokenize, images=images)
    return models, runs, trajectories, CountingImages.reads


def test_dynamics_equal_a_computation_by_hand(dynamics, tokenize):
    """Confidence, Brier, KL quartiles by group, Jacobian norm and trajectories, recomputed here
    image by image and step by step."""
    models, runs, trajectories, _ = dynamics
    data = _images()
    chosen = set(jacobian_subsample(len(data), 5).tolist())
    assert len(chosen) == 5
    for seed, model in models.items():
        scale = float(model.logit_scale)
        for subset, classes in CLASS_SETS.items():
            with torch.no_grad():
                t = F.normalize(
                    model.refine_text(model.text_prefix(tokenize([PROMPTS[c] for c in classes]))), dim=-1
                )
            members = [i for i, (_, y) in enumerate(data) if int(y) in classes]
            p, norms = {}, {}
            for i in members:
                x = data[i][0].unsqueeze(0).requires_grad_(True)
                v = F.normalize(model.refine_image(model.image_prefix(x)), dim=-1)[:, 0]  # [K + 1, D]
                target = classes.index(int(data[i][1]))
                logits = scale * torch.einsum("kd,kcd->kc", v, t)  # [K + 1, C]
                p[i] = (torch.softmax(logits, -1).detach().double(), target)
                if i in chosen:
                    norms[i] = [
                        torch.autograd.grad(logits[k, target], x, retain_graph=True)[0].norm().item()
                        for k in range(4)
                    ]
            rows = runs.filter((pl.col("seed") == seed) & (pl.col("subset") == subset)).sort("step")
            first = {i: int(q[0].argmax()) == c for i, (q, c) in p.items()}
            last = {i: int(q[-1].argmax()) == c for i, (q, c) in p.items()}
            for k, row in enumerate(rows.iter_rows(named=True)):
                assert row["confidence"] == pytest.approx(
                    100 * statistics.mean(q[k, c].item() for q, c in p.values())
                )
                brier = [
                    sum((q[k, j].item() - (j == c)) ** 2 for j in range(len(classes))) for q, c in p.values()
                ]
                assert row["brier"] == pytest.approx(statistics.mean(brier))
                kl = {
                    i: sum(
                        q[k, j].item() * math.log(q[k, j].item() / q[0, j].item())
                        for j in range(len(classes))
                    )
                    for i, (q, c) in p.items()
                }
                for group, (a, b) in {"cc": (1, 1), "wc": (0, 1), "cw": (1, 0), "ww": (0, 0)}.items():
                    values = sorted(kl[i] for i in p if (first[i], last[i]) == (a, b))
                    assert row[f"n_{group}"] == len(values)
                    got = [row[f"kl_q1_{group}"], row[f"kl_median_{group}"], row[f"kl_q3_{group}"]]
                    if values:
                        assert got == pytest.approx(_quartiles(values), abs=1e-6)
                    else:
                        assert got == [None] * 3
                if norms:
                    assert row["jacobian_norm"] == pytest.approx(
                        statistics.mean(n[k] for n in norms.values()), rel=1e-4
                    )
                else:
                    assert row["jacobian_norm"] is None
            # trajectories: the largest gains and losses of target confidence, both classes' probabilities
            mine = trajectories.filter((pl.col("seed") == seed) & (pl.col("subset") == subset))
            change = {i: (q[-1, c] - q[0, c]).item() for i, (q, c) in p.items()}
            gains = sorted((i for i in change if change[i] > 0), key=lambda i: -change[i])[:3]
            losses = sorted((i for i in change if change[i] < 0), key=lambda i: change[i])[:3]
            for kind, images in (("gain", gains), ("loss", losses)):
                assert (
                    mine.filter(pl.col("change") == kind)["image"].unique(maintain_order=True).to_list()
                    == images
                )
            for row in mine.iter_rows(named=True):
                q, c = p[row["image"]]
                column = c if row["role"] == "target" else int(q[0].argmax())
                assert row["class"] == classes[column]
                assert row["probability"] == pytest.approx(q[row["step"], column].item(), abs=1e-6)
    assert set(trajectories["role"]) == {"target", "step0_winner"} and trajectories["path"].is_null().all()


def test_every_metric_comes_from_one_pass_over_the_images(dynamics):
    _, runs, _, reads = dynamics
    assert reads == len(_images())
    assert runs["jacobian_norm"].is_not_null().all() and runs["confidence"].is_not_null().all()


def test_the_jacobian_subsample_is_fixed_and_zero_turns_it_off(tiny_clip, tokenize):
    assert torch.equal(jacobian_subsample(1000, 32), jacobian_subsample(1000, 32))
    assert jacobian_subsample(10, 32).tolist() == list(range(10)) and len(jacobian_subsample(10, 0)) == 0
    # the same projectors under two seeds, and a second run: the same images, the same norms (2
    # images: _images()' 4 and 5, one of each subset)
    model = _models(tiny_clip, [1])[1]
    twice = {1: model, 2: model}
    two = CONFIG.model_copy(update={"jacobian_images": 2})
    runs = [_evaluate_dynamics(twice, tokenize, config=two)[0] for _ in range(2)]
    assert runs[0].equals(runs[1])
    by_seed = [runs[0].filter(pl.col("seed") == s).sort("subset", "step")["jacobian_norm"] for s in (1, 2)]
    assert by_seed[0].equals(by_seed[1]) and by_seed[0].is_not_null().all()
    off, _ = _evaluate_dynamics(twice, tokenize, config=CONFIG)
    assert off["jacobian_norm"].is_null().all()
    assert off.drop("jacobian_norm").equals(runs[0].drop("jacobian_norm"))  # nothing else changes
