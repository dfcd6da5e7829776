"""The ablation sweep's arguments (the sweep itself runs in tests/pipelines/test_ablation_sweep.py)."""

from __future__ import annotations

import polars as pl
import pytest

from perl_pipeline.tools.sweep import fixed_params, merged, nested, parse_fixed, parse_setting, to_markdown


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("perl.steps=0,1,2", ("perl.steps", [0, 1, 2])),
        (
            "perl.modalities=[image],[text],[image,text]",
            ("perl.modalities", [["image"], ["text"], ["image", "text"]]),
        ),
        ("training.lr=1e-3", ("training.lr", [1e-3])),
        ("perl.share_projector=false", ("perl.share_projector", [False])),
        ("perl.split_layer=0,[3,7,11],7", ("perl.split_layer", [0, [3, 7, 11], 7])),  # Table 4's depths
    ],
)
def test_settings_parse_as_yaml_values(argument: str, expected: tuple) -> None:
    assert parse_setting(argument) == expected


@pytest.mark.parametrize("bad", ["perl.steps", "=1", "perl.steps=", "perl.modalities=[image"])
def test_malformed_settings_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_setting(bad)


def test_nested_keys_become_runtime_parameters() -> None:
    assert nested("perl.steps", 2) == {"perl": {"steps": 2}}


# -- every setting is checked before the first run ------------------------------------------------


@pytest.fixture
def no_runs(monkeypatch):
    """Fail the test if any Kedro run starts."""
    from kedro.framework.session import KedroSession

    def run(*args, **kwargs):
        raise AssertionError("a Kedro run started")

    monkeypatch.setattr(KedroSession, "run", run)


@pytest.fixture
def demo_conf(tmp_path):
    """The project's conf with the demo environment's data under tmp_path (nothing prepared)."""
    from tests.pipelines.conftest import demo_session

    with demo_session(tmp_path):
        pass
    return str(tmp_path / "conf")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([("perl.steps", [0, 1.5])], "sweep argument perl.steps=1.5: perl.steps=1.5: expected an integer"),
        (
            [("perl.steps", [1]), ("perl.split_layer", [2, 9])],
            "sweep argument perl.split_layer=9: perl.split_layer=9 is outside 0..3 for the image tower "
            "of PERL-Toy-ViT",
        ),
        ([("training.lr", [1e-3, "fast"])], "training.lr='fast': expected a number > 0"),
        ([("perl.share_projector", [True, "maybe"])], "perl.share_projector='maybe': expected true/false"),
        ([("perl.stepz", [1])], "perl: unknown key 'stepz' -- did you mean 'steps'"),
        ([("perls.steps", [1])], "sweep argument perls.steps: no parameter 'perls'"),
        ([("perl.steps", [1, 2])], "--env demo: DVC's stages run the Kedro environment 'local'"),
    ],
)
def test_a_bad_value_stops_the_sweep_before_any_run(no_runs, demo_conf, settings, message):
    from perl_pipeline.config import ConfigError
    from perl_pipeline.tools.sweep import run_sweep
    from tests.pipelines.conftest import ROOT

    with pytest.raises(ConfigError, match=message):
        run_sweep(settings, env="demo", project_path=ROOT, conf_source=demo_conf)


def test_the_command_line_names_the_bad_argument(no_runs, monkeypatch, capsys):
    from perl_pipeline.tools.sweep import main
    from tests.pipelines.conftest import ROOT

    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_:
        main(["--env", "demo", "perl.steps=0,1", "perl.rank=1,0"])
    assert exit_.value.code == 2
    assert "sweep argument perl.rank=0: perl.rank=0 must be >= 1" in capsys.readouterr().err


def test_fixed_settings_merge_under_every_row() -> None:
    fixed = [parse_fixed("training.lr=1e-4"), parse_fixed("training.epochs=1")]
    assert fixed == [("training.lr", 1e-4), ("training.epochs", 1)]
    base = fixed_params(fixed)
    row = merged(base, nested("perl.projector_init", "zero_out"))
    assert row == {"training": {"lr": 1e-4, "epochs": 1}, "perl": {"projector_init": "zero_out"}}
    assert base == {"training": {"lr": 1e-4, "epochs": 1}}  # not modified by the merge
    assert merged(base, nested("training.lr", 2e-2))["training"] == {"lr": 2e-2, "epochs": 1}


def test_fixed_settings_take_one_value() -> None:
    with pytest.raises(ValueError, match="one value"):
        parse_fixed("training.lr=1e-4,1e-3")


def test_the_table_names_the_fixed_settings() -> None:
    row = {
        "parameter": "perl.projector_init",
        "value": "zero_out",
        "trainable_parameters": 802,
        **{k: 50.0 for k in ("base", "novel", "hm", "hm_of_means", "zeroshot_base", "zeroshot_novel")},
        **{"zeroshot_hm": 50.0, "image_alignment": 0.99, "text_alignment": 0.98},
        **{"base_steps": "50.00 / 50.00", "experiment": "01-perl.projector_init=zero_out-20261201-020000"},
    }
    text = to_markdown(pl.DataFrame([row]), [("training.lr", 1e-4), ("training.epochs", 1)])
    assert "Every row also sets training.lr=0.0001, training.epochs=1." in text
    assert "Every row also sets" not in to_markdown(pl.DataFrame([row]))


def test_a_row_is_read_from_dvc_records() -> None:
    from perl_pipeline.tools.sweep import _experiments, summarize

    average = {"base": 60.0, "novel": 50.0, "hm": 54.5, "zeroshot_base": 56.0, "zeroshot_novel": 58.0}
    metrics = {
        "average (mean of HMs)": {**average, "zeroshot_hm": 57.0, "image_alignment_base": 0.97},
        "average (HM of means)": {"hm": 54.55},
        "trainable_parameters": 802,
    }
    metrics["average (mean of HMs)"]["text_alignment_base"] = 0.96
    per_step = [  # dvc plots diff gives the CSV's fields as strings
        {"benchmark": b, "subset": subset, "step": str(step), "accuracy": str(accuracy)}
        for b, shift in (("dtd", 0.0), ("eurosat", 2.0))
        for subset in ("base", "novel")
        for step, accuracy in ((0, 55.0 + shift), (1, 59.0 + shift))
    ]
    row = summarize(metrics, per_step)
    assert row["base_steps"] == "56.00 / 60.00" and row["trainable_parameters"] == 802
    assert (row["hm"], row["hm_of_means"], row["image_alignment"]) == (54.5, 54.55, 0.97)

    shown = [  # the shape of `dvc exp show --json` (DVC 3.67): baselines, their experiments
        {"rev": "workspace", "data": {}, "experiments": None},
        {
            "rev": "abc",
            "experiments": [
                {
                    "name": "01-perl.steps=1-x",
                    "revs": [
                        {
                            "rev": "f00",
                            "name": "01-perl.steps=1-x",
                            "data": {"metrics": {"m.json": {"data": {}}}},
                        }
                    ],
                },
            ],
        },
    ]
    failed = {
        "rev": "bad",
        "name": "02-x",
        "error": {"msg": "Experiment run failed"},
        "data": {"metrics": {"m": 1}},
    }
    shown[1]["experiments"].append({"name": "02-x", "revs": [failed]})
    assert _experiments(shown)["02-x"]["metrics"] == {}  # its baseline's files are not its results
    shown[1]["experiments"].pop()
    assert _experiments(shown) == {  # the commit itself too: a setting equal to it is its record
        "abc": {"rev": "abc", "metrics": {}},
        "01-perl.steps=1-x": {"rev": "f00", "metrics": {"m.json": {"data": {}}}},
    }


# -- one sweep at a time in a project ---------------------------------------------------------------


def test_a_second_sweep_in_the_same_project_is_refused_before_anything(tmp_path, monkeypatch):
    import subprocess
    import sys

    import perl_pipeline.tools.sweep as sweep
    from perl_pipeline.config import ConfigError

    monkeypatch.setattr(sweep, "_dvc", lambda *a, **k: pytest.fail("the second sweep called DVC"))
    lock = tmp_path / ".dvc" / "tmp" / "perl-sweep.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(  # the first sweep, holding the project's lock as a sweep does
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(lock)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.write('pid 4242, started 2026-12-03 19:00:00: python -m perl_pipeline.sweep perl.steps=1,2')\n"
            "f.flush(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="another sweep is running in .*pid 4242.*perl.steps=1,2"):
            sweep.run_sweep([("perl.rank", [2, 3])], env="demo", project_path=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with sweep.one_sweep_at_a_time(tmp_path):  # the lock goes with the process that held it
        assert "pid" in lock.read_text()
    assert lock.read_text() == ""


def test_the_latest_sweep_is_found_among_dvc_records_pulled_or_not() -> None:
    from perl_pipeline.tools.sweep import sweep_experiments

    def rev(name: str, steps) -> dict:
        params = {"conf/demo/parameters.yml": {"data": {"perl": {"steps": steps}}}}
        return {"name": name, "revs": [{"rev": name[:6], "name": name, "data": {"params": params}}]}

    shown = [
        {"rev": "workspace", "experiments": None},
        {
            "rev": "abc",
            "experiments": [
                rev("02-perl.steps=2-20261203-101010", 2),
                rev("01-perl.steps=1-20261203-101010", 1),
                rev("01-perl.steps=9-20261202-090000", 9),  # an older sweep
                rev("my-own-experiment", 3),  # not a sweep's
            ],
        },
    ]
    assert sweep_experiments(shown, "conf/demo/parameters.yml") == [
        ("perl.steps", 1, "01-perl.steps=1-20261203-101010"),
        ("perl.steps", 2, "02-perl.steps=2-20261203-101010"),
    ]
    assert sweep_experiments(shown[:1], "conf/demo/parameters.yml") == []


def test_table_takes_no_settings(capsys) -> None:
    from perl_pipeline.tools.sweep import main

    with pytest.raises(SystemExit):
        main(["--table", "perl.steps=1"])
    assert "--table rebuilds a table from DVC's records: it takes no settings" in capsys.readouterr().err
