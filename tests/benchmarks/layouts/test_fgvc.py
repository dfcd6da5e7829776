"""Layout fgvc: variants.txt and the shuffled split lists read back as written."""

from __future__ import annotations

import polars as pl

from tests.benchmarks.layouts.conftest import assert_same_index


def test_round_trip_with_slashes_and_spaces_in_names(trip) -> None:
    result = trip("fgvc_aircraft", 14)
    assert result.spec.layout == "fgvc"
    assert_same_index(result)
    names = dict(result.read.select("label", "classname").unique().iter_rows())
    assert names[9] == "F-16A/B" and names[10] == "F/A-18" and names[5] == "BAE 146-200"
    assert names[13] == "X-013"  # synthetic beyond the 12 real variants
    assert result.read["path"].str.contains(r"^fgvc_aircraft/images/\d{7}\.jpg$").all()


def test_labels_follow_variants_txt_not_the_shuffled_lists(trip) -> None:
    result = trip("fgvc_aircraft", 6)
    folder = result.root / "fgvc_aircraft"
    variants = (folder / "variants.txt").read_text().splitlines()
    assert variants == [name for _, name in result.classes]
    train = (folder / "images_variant_train.txt").read_text().splitlines()
    listed = [line.split(" ", 1)[1] for line in train]
    assert listed != sorted(listed, key=variants.index)  # the lines really are shuffled
    assert_same_index(result)
    by_label = result.read.group_by("label").agg(pl.col("classname").first()).sort("label")
    assert by_label["classname"].to_list() == variants
