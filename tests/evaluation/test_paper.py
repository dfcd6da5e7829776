"""The paper's ablation tables and dynamics, rebuilt from runs, with the paper's numbers beside ours."""

from __future__ import annotations

import polars as pl

from perl_pipeline.evaluation.paper import ablation_report, ablation_rows, dynamics_report
from perl_pipeline.evaluation.reference import load_reported_ablations


def _run(hm: float, params: int = 6402) -> tuple[dict, list[dict]]:
    average = {"base": hm + 1, "base_std": 0.5, "novel": hm - 1, "novel_std": None, "hm": hm, "hm_std": 0.25}
    metrics = {
        "average (mean of HMs)": {**average, "zeroshot_hm": 50.0},
        "average (HM of means)": {"hm": hm + 0.01},
        "trainable_parameters": params,
    }
    per_step = [
        {"benchmark": b, "subset": s, "step": str(k), "accuracy": str(40.0 + k + (b == "dtd"))}
        for b in ("dtd", "eurosat")
        for s in ("base", "novel")
        for k in (0, 1)
    ]
    return metrics, per_step


def test_an_ablation_table_puts_the_papers_numbers_beside_ours_and_names_our_decisions():
    rows = ablation_rows(
        [
            ("PERL-Early", "perl.split_layer=0", "exp-1", *_run(60.0)),
            ("PERL-Step", "perl.share_projector=False", "exp-2", *_run(62.0, params=25608)),
        ]
    )
    assert rows["hm"].to_list() == [60.0, 62.0] and rows["hm_of_means"].to_list() == [60.01, 62.01]
    assert rows["base_steps"].to_list() == ["40.50 / 41.50"] * 2  # mean over benchmarks per step
    definition = {
        "title": "Table 4",
        "rows": [
            {"name": "PERL-Early", "set": ["perl.split_layer=0"], "decision": "prefix = embeddings"},
            {"name": "PERL-Step", "set": ["perl.share_projector=false"]},
        ],
    }
    markdown, figure = ablation_report(rows, definition, artefact="table4", label="DEMO")
    lines = markdown.splitlines()
    early = next(line for line in lines if line.startswith("| PERL-Early"))
    assert "61.00 ± 0.50" in early and "| 59.00 |" in early and "60.00 ± 0.25" in early  # ours, ± std
    assert early.rstrip(" |").endswith("68.91 | 62.43 | 65.15")  # the paper's Table 4 row
    step = next(line for line in lines if line.startswith("| PERL-Step"))
    assert "| 25,608 |" in step and "*32,000" in step  # the count the paper reports, marked
    assert any("5 copies of the 6,402-parameter pair" in line for line in lines)
    assert "* PERL-Early is our definition: prefix = embeddings" in lines
    assert "> DEMO" in lines
    assert figure.axes[0].get_ylabel().startswith("base-to-novel average")


def test_fig3_marks_the_values_read_from_the_papers_plot_and_plots_both():
    rows = ablation_rows([(str(j), f"perl.split_layer={j}", f"e{j}", *_run(70.0 + j)) for j in (6, 7)])
    definition = {"title": "Fig. 3a", "axis": "injection layer J", "rows": [{"name": "6"}, {"name": "7"}]}
    markdown, figure = ablation_report(rows, definition, artefact="fig3_layer")
    six = next(line for line in markdown.splitlines() if line.startswith("| 6 "))
    seven = next(line for line in markdown.splitlines() if line.startswith("| 7 "))
    assert "≈74.40" in six and "74.79" in seven and "≈" not in seven  # plot reading vs the exact row
    assert [ax.get_xlabel() for ax in figure.axes] == ["injection layer J"] * 2
    paper_curves = [line.get_xdata().tolist() for line in figure.axes[1].get_lines()]
    assert [6.0, 7.0, 8.0, 9.0, 10.0, 11.0] in paper_curves


def test_the_dynamics_average_the_targets_per_step_beside_the_papers_points():
    per_step = pl.DataFrame(
        {
            "benchmark": ["dtd", "dtd", "eurosat", "eurosat", "imagenet", "imagenet"],
            "subset": ["all"] * 6,
            "step": [0, 4, 0, 4, 0, 4],
            "accuracy": [50.0, 60.0, 70.0, 80.0, 0.0, 0.0],
            "confidence": [40.0, 45.0, 60.0, 65.0, 0.0, 0.0],
            "brier": [0.5, 0.4, 0.3, 0.2, 1.0, 1.0],
            "n_wc": [2.0, 2.0, 1.0, 1.0, 9.0, 9.0],
            "kl_median_wc": [0.0, 0.2, 0.0, 0.4, 9.0, 9.0],
        }
    )
    trajectories = pl.DataFrame(  # two gains and a loss on dtd
        [
            {"benchmark": "dtd", "seed": 1, "subset": "all", "image": image, "path": f"d/{image}.jpg",
             "change": change, "role": role, "class": cls, "step": step, "probability": p}
            for image, change, target in ((3, "gain", [.1, .7]), (5, "gain", [.2, .4]), (8, "loss", [.9, 0]))
            for role, cls, probabilities in (("target", 2, target), ("step0_winner", 7, [0.6, 0.2]))
            for step, p in enumerate(probabilities)
        ]
    )  # fmt: skip
    markdown, figure = dynamics_report(
        per_step, trajectories, protocol="cross_dataset", targets=("dtd", "eurosat")
    )
    assert "mean over 2 benchmarks" in markdown  # the source (imagenet) is not a target
    last = next(line for line in markdown.splitlines() if line.startswith("| all | 4"))
    assert "70.00 (paper ≈71.1)" in last and "55.00 (paper ≈59.8)" in last and "0.300" in last
    assert "3.00e-01" in last  # KL median of the wrong -> correct group, averaged
    assert "wrong → correct 3" in markdown
    gains = [line for line in markdown.splitlines() if line.startswith("* dtd")]
    assert gains[0].startswith("* dtd `d/3.jpg`: target class 2 0.100 → 0.700; step-0 winner 7 0.600 → 0.200")
    assert len(gains) == 2  # the gains, largest first; never a loss
    assert [ax.get_xlabel() for ax in figure.axes] == ["step k"] * 5
    assert figure.axes[-1].get_ylabel() == "class probability"


def test_the_reference_ablations_hold_every_row_of_tables_3_and_4():
    reported = load_reported_ablations()
    table4 = reported.filter((pl.col("artefact") == "table4") & (pl.col("metric") == "hm"))
    assert dict(zip(table4["row"], table4["value"], strict=True)) == {
        "PERL-Early": 65.15, "PERL-Deep": 74.52, "PERL-Shared": 74.79,
        "PERL-Step": 74.93, "PERL-Layer": 75.09, "PERL-LayerStep": 76.37,
    }  # fmt: skip
    assert reported.filter(pl.col("artefact") == "table3").height == 12
    assert reported.filter(pl.col("artefact").str.starts_with("fig3")).height == 33
