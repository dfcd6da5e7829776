"""Reports are written all at once: the project's catalog entries for them, on a full disk."""

from __future__ import annotations

import errno
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from kedro.io import AbstractDataset  # noqa: E402

CATALOG = Path(__file__).resolve().parents[3] / "conf" / "base" / "catalog.yml"


def _report(name: str, tmp_path: Path) -> AbstractDataset:
    """The catalog's entry `name` ({protocol} = base_to_novel), its data under tmp_path."""
    config = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))[name]
    config["filepath"] = (
        config["filepath"].replace("${globals:data}", str(tmp_path)).replace("{protocol}", "base_to_novel")
    )
    return AbstractDataset.from_config(name, config)


def _figure():
    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    return figure


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("{protocol}.results_markdown", "# Base-to-novel\n"),
        ("{protocol}.metrics", {"dtd": {"hm": 61.2}}),
        ("{protocol}.results_table", pl.DataFrame({"benchmark": ["dtd"], "hm": [61.2]})),
        ("{protocol}.plots", {"accuracy_per_step.png": None}),
    ],
)
def test_each_report_is_moved_into_place_whole(tmp_path, monkeypatch, name, data):
    import os

    moved: list[Path] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: moved.append(Path(dst)) or real_replace(src, dst))
    dataset = _report(name, tmp_path)
    if name.endswith("plots"):
        data = {"accuracy_per_step.png": _figure()}
    dataset.save(data)
    dataset.save(data)  # over an earlier report
    assert dataset.exists()
    folder = tmp_path / "08_reporting" / "base_to_novel"
    final = folder / Path(dataset._describe()["filepath"]).name
    assert moved[-1] == (final / "accuracy_per_step.png" if name.endswith("plots") else final)
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]
    if name.endswith("plots"):
        assert (folder / "plots" / "accuracy_per_step.png").read_bytes()[:4] == b"\x89PNG"
    elif isinstance(data, pl.DataFrame):
        assert dataset.load().equals(data)
    else:
        assert dataset.load() == data


def test_a_full_disk_leaves_the_previous_report_whole_and_names_it(tmp_path, monkeypatch):
    from kedro_datasets.text import TextDataset

    dataset = _report("{protocol}.results_markdown", tmp_path)
    dataset.save("# Base-to-novel\n| dtd | 61.2 |\n")
    report = tmp_path / "08_reporting" / "base_to_novel" / "results.md"

    def disk_full(self, data):  # writes the start of the report, then runs out of space
        Path(str(self._filepath)).write_text(data[:7])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TextDataset, "save", disk_full)
    with pytest.raises(Exception, match=f"cannot write the report {report}: No space left on device"):
        dataset.save("# Base-to-novel\n| dtd | 70.0 |\n")
    assert report.read_text() == "# Base-to-novel\n| dtd | 61.2 |\n"
    assert sorted(p.name for p in report.parent.iterdir()) == ["results.md"]
