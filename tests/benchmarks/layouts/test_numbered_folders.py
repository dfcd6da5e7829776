"""Layout numbered_folders: folder i holds label i, named by line i of classnames.txt."""

from __future__ import annotations

import polars as pl

from tests.benchmarks.layouts.conftest import assert_same_index


def test_round_trip_past_ten_folders(trip) -> None:
    result = trip("imagenet_v2", 12)  # "10" and "11" sort before "2" as strings: must not matter
    assert result.spec.layout == "numbered_folders"
    assert_same_index(result)
    lines = (result.root / "imagenetv2" / "classnames.txt").read_text().splitlines()
    for label in (2, 10, 11):
        rows = result.read.filter(pl.col("label") == label)
        assert rows["path"].str.contains(f"/{label}/").all()
        assert rows["classname"].unique().to_list() == [lines[label].split(" ", 1)[1]]
    assert set(result.read["split"]) == {"test"}
