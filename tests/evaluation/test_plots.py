"""Tests of the evaluation figures: they render headless to PNG and draw what they claim."""

from __future__ import annotations

import io

import polars as pl
from matplotlib.figure import Figure

from perl_pipeline.evaluation.plots import (
    accuracy_per_step_figure,
    alignment_per_step_figure,
    dynamics_per_step_figure,
    params_vs_hm_figure,
)
from tests.evaluation.test_metrics import make_runs
from tests.evaluation.test_report import BENCHMARKS

TITLES = {name: paper.title for name, paper in BENCHMARKS.items()}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def mixed_runs(steps: int = 4) -> pl.DataFrame:
    """Two base-to-novel benchmarks and one transfer target."""
    return pl.concat(
        [
            make_runs(benchmarks=("dtd", "eurosat"), steps=steps),
            make_runs(benchmarks=("imagenet_a",), subsets=("all",), steps=steps),
        ]
    )


def test_figures_do_not_touch_pyplot_state() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    params_vs_hm_figure(74.0)
    accuracy_per_step_figure(mixed_runs())
    alignment_per_step_figure(mixed_runs())
    dynamics_per_step_figure(mixed_runs())
    assert plt.get_fignums() == before


def test_params_vs_hm_figure() -> None:
    figure = params_vs_hm_figure(71.5, 6402, ours_label="PERL (ours, demo)")
    assert png_bytes(figure).startswith(PNG_MAGIC)
    (ax,) = figure.axes
    reported, ours = ax.collections
    assert len(reported.get_offsets()) == 11  # 10 baselines + PERL as reported
    assert ours.get_offsets().tolist() == [[6402.0, 71.5]]
    assert ax.get_xscale() == "log"
    (clip_line,) = ax.lines  # zero-shot CLIP (0 parameters) as a horizontal line
    assert clip_line.get_ydata()[0] == 71.64
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "PERL (ours, demo), 71.50" in labels


def test_accuracy_per_step_figure() -> None:
    figure = accuracy_per_step_figure(mixed_runs(steps=3), titles=TITLES)
    assert png_bytes(figure).startswith(PNG_MAGIC)
    base, novel, all_ = figure.axes
    assert [ax.get_title() for ax in figure.axes] == [
        "Base classes",
        "Novel classes",
        "All classes",
    ]
    # one line per benchmark, plus the mean over benchmarks where there are several
    assert len(base.lines) == len(novel.lines) == 3
    assert len(all_.lines) == 1
    for ax in figure.axes:
        for line in ax.lines:
            assert list(line.get_xdata()) == [0, 1, 2, 3]
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["DTD", "EuroSAT", "mean over benchmarks", "ImageNet-A"]


def test_alignment_per_step_figure() -> None:
    figure = alignment_per_step_figure(mixed_runs(steps=2), titles=TITLES)
    assert png_bytes(figure).startswith(PNG_MAGIC)
    image, text = figure.axes
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels[:2] == ["DTD (base)", "DTD (novel)"] and "ImageNet-A (all)" in labels
    # one line per (benchmark, subset): dtd×2, eurosat×2, imagenet_a×1
    assert len(image.lines) == len(text.lines) == 5
    first = image.lines[0]
    assert list(first.get_xdata()) == [0, 1, 2]
    assert first.get_ydata()[0] == 1.0  # step 0 is zero-shot CLIP itself


def test_single_seed_and_empty_runs_render() -> None:
    runs = make_runs(benchmarks=("ucf101",), seeds=(1,))
    for figure in (accuracy_per_step_figure(runs), alignment_per_step_figure(runs)):
        assert png_bytes(figure).startswith(PNG_MAGIC)
        assert all(len(ax.collections) == 0 for ax in figure.axes)  # no ±std band
    empty = runs.clear()
    for figure in (accuracy_per_step_figure(empty), alignment_per_step_figure(empty)):
        assert png_bytes(figure).startswith(PNG_MAGIC)


def test_benchmarks_without_a_title_keep_their_name() -> None:
    figure = accuracy_per_step_figure(make_runs(benchmarks=("dtd",), steps=1), titles={})
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["dtd"]


def test_dynamics_figure_draws_each_metric_per_subset() -> None:
    runs = mixed_runs(steps=3)
    figure = dynamics_per_step_figure(runs)
    assert png_bytes(figure).startswith(PNG_MAGIC)
    confidence, brier, jacobian, kl = figure.axes
    assert [ax.get_xlabel() for ax in figure.axes] == ["step k"] * 4
    assert confidence.get_ylabel() == "target-class confidence (%)" and brier.get_ylabel() == "Brier score"
    assert [line.get_label() for line in confidence.lines] == ["Base classes", "Novel classes", "All classes"]
    base = (
        runs.filter(pl.col("subset") == "base").group_by("step").agg(pl.col("confidence").mean()).sort("step")
    )
    assert confidence.lines[0].get_ydata().tolist() == base["confidence"].to_list()  # mean over benchmarks
    assert kl.get_yscale() == "log"
    labels = [line.get_label() for line in kl.lines]
    assert "wrong→correct (base)" in labels and not any("correct→wrong" in label for label in labels)  # empty
    assert all(min(line.get_xdata()) >= 1 for line in kl.lines)  # KL at step 0 is 0 by definition
    off = dynamics_per_step_figure(runs.with_columns(jacobian_norm=None))
    assert not off.axes[2].lines
