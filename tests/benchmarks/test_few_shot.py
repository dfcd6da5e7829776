"""Few-shot draws (docs/method.md §6.2): exact, deterministic; base/novel from one draw.

The ``sorted`` rule is also order-free; CoOp's rule (the default) is checked against Dassl's
procedure in test_few_shot_coop.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

import polars as pl
import pytest

from perl_pipeline.benchmarks.few_shot import (
    DEFAULT_DRAW,
    DRAWS,
    FEW_SHOT_SCHEMA,
    draw_few_shot,
    few_shot_recipe,
    few_shot_recipe_of,
    index_content_hash,
    index_order_hash,
    subsample_classes,
    subset_labels,
)
from perl_pipeline.benchmarks.index import INDEX_SCHEMA, label_classnames


def make_index(
    num_classes: int,
    train: int = 20,
    val: int = 6,
    test: int = 5,
    small: dict[int, int] | None = None,
) -> pl.DataFrame:
    """A synthetic index; ``small`` = {label: train images} for under-filled classes."""
    cols: dict[str, list] = {"split": [], "path": [], "label": [], "classname": []}
    for label in range(num_classes):
        counts = {"train": (small or {}).get(label, train), "val": val, "test": test}
        for split, k in counts.items():
            for i in range(k):
                cols["split"].append(split)
                cols["path"].append(f"ds/{split}/class_{label:03d}/img_{i:04d}.jpg")
                cols["label"].append(label)
                cols["classname"].append(f"class {label}")
    return pl.DataFrame(cols, schema=INDEX_SCHEMA)


def shuffled(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    return df.sample(fraction=1.0, shuffle=True, seed=seed)


def rows(df: pl.DataFrame, **where: object) -> pl.DataFrame:
    return df.filter(*(pl.col(k) == v for k, v in where.items()))


def test_exact_counts_per_class_and_schema() -> None:
    index = make_index(10)
    table = draw_few_shot(index, shots=16, seeds=[1, 2, 3])
    assert dict(table.schema) == FEW_SHOT_SCHEMA
    assert set(table["subset"].unique().to_list()) == {"all", "base", "novel"}
    all_rows = rows(table, subset="all")
    counts = all_rows.group_by("seed", "split", "label").len()
    assert counts.filter(pl.col("split") == "train")["len"].unique().to_list() == [16]
    assert counts.filter(pl.col("split") == "val")["len"].unique().to_list() == [4]
    assert counts.height == 3 * 2 * 10
    assert not table.filter(pl.col("split") == "test").height
    few = draw_few_shot(index, shots=2, seeds=[1])
    assert rows(few, subset="all", split="val").group_by("label").len()["len"].unique().to_list() == [
        2
    ]  # val gets min(shots, 4)


def test_matches_the_reference_algorithm() -> None:
    """draw=sorted: per class, sorted paths; one random.Random(seed) class by class, train then val."""
    index = make_index(3)
    table = rows(draw_few_shot(index, shots=5, seeds=[7], draw="sorted"), subset="all")
    rng = random.Random(7)
    for split, k in (("train", 5), ("val", 4)):
        for label in range(3):
            items = sorted(rows(index, split=split, label=label)["path"].to_list())
            expected = sorted(rng.sample(items, k))
            assert sorted(rows(table, split=split, label=label)["path"].to_list()) == expected


def test_deterministic_across_runs_and_input_order() -> None:
    index = make_index(8)
    first = draw_few_shot(index, shots=4, seeds=[1, 2], draw="sorted")
    assert draw_few_shot(index, shots=4, seeds=[1, 2], draw="sorted").equals(first)
    for seed in (0, 1, 2):
        assert draw_few_shot(shuffled(index, seed), shots=4, seeds=[1, 2], draw="sorted").equals(first)


def test_coop_draw_is_deterministic_and_follows_the_index_order() -> None:
    index = shuffled(make_index(8), 4)
    first = draw_few_shot(index, shots=4, seeds=[1, 2])
    assert draw_few_shot(index, shots=4, seeds=[1, 2], draw="coop").equals(first)
    reordered = draw_few_shot(shuffled(index, 9), shots=4, seeds=[1, 2])
    assert not reordered.select("path").equals(first.select("path"))  # another split-file order


def test_sorted_draw_is_todays_table_exactly() -> None:
    """draw=sorted reproduces, row for row, the table of the rule it was before draws had names."""
    index = shuffled(make_index(9, small={3: 5, 6: 16}), 11)
    table = draw_few_shot(index, shots=16, seeds=[1, 2, 3], draw="sorted")
    digest = hashlib.sha256(json.dumps(table.rows()).encode()).hexdigest()
    assert digest == "3fa3c4533a7463b516c062707f78659d187fcfe4fee76561ac1847b66aadafcd"


def test_draw_is_part_of_the_recipe() -> None:
    index = make_index(4)
    source = index_content_hash(index)
    assert DRAWS == ("coop", "sorted") and DEFAULT_DRAW == "coop"
    coop = few_shot_recipe_of(draw_few_shot(index, shots=2, seeds=[1]), 1)
    assert coop == few_shot_recipe(source, 2, 1, "coop", index_order_hash(index))
    assert coop["draw"] == "coop" and coop["order"] == index_order_hash(index)
    ordered = few_shot_recipe_of(draw_few_shot(index, shots=2, seeds=[1], draw="sorted"), 1)
    assert ordered == {"index": source, "shots": 2, "seed": 1, "draw": "sorted"}
    with pytest.raises(ValueError, match="order hash"):
        few_shot_recipe(source, 2, 1, "coop")
    with pytest.raises(ValueError, match="draw must be one of"):
        few_shot_recipe(source, 2, 1, "dassl")


@pytest.mark.parametrize("draw", DRAWS)
def test_does_not_touch_global_random_state(draw: str) -> None:
    random.seed(1234)
    state = random.getstate()
    draw_few_shot(shuffled(make_index(4), 2), shots=3, seeds=[1], draw=draw)
    assert random.getstate() == state


def test_seeds_differ_and_repeat() -> None:
    table = rows(draw_few_shot(make_index(6), shots=4, seeds=[1, 2, 1]), subset="all", split="train")
    by_seed = {s: set(rows(table, seed=s)["path"].to_list()) for s in (1, 2)}
    assert by_seed[1] != by_seed[2]
    assert rows(table, seed=1).height == 2 * 24  # seed 1 twice: the same rows twice
    assert draw_few_shot(make_index(6), shots=4, seeds=[2]).filter(
        pl.col("subset") == "all", pl.col("split") == "train"
    )["path"].to_list() == sorted(by_seed[2], key=lambda p: (int(p.split("class_")[1][:3]), p))


def test_classes_with_fewer_images_keep_all(caplog: pytest.LogCaptureFixture) -> None:
    index = make_index(4, small={2: 3})
    table = rows(draw_few_shot(index, shots=16, seeds=[1]), subset="all", split="train")
    name = rows(index, label=2)["classname"][0]
    assert f"1 class(es) have fewer than 16 training images and are kept whole: {name} (3)" in caplog.text
    assert rows(table, label=2).height == 3
    assert sorted(rows(table, label=2)["path"].to_list()) == sorted(
        rows(index, split="train", label=2)["path"].to_list()
    )
    assert rows(table, label=0).height == 16


def test_37_classes_split_19_base_18_novel_relabelled_from_zero() -> None:
    index = make_index(37, train=3, val=1, test=1)
    table = draw_few_shot(index, shots=2, seeds=[1])
    base, novel = rows(table, subset="base"), rows(table, subset="novel")
    assert sorted(base["label"].unique().to_list()) == list(range(19))
    assert sorted(novel["label"].unique().to_list()) == list(range(18))
    assert sorted(novel["original_label"].unique().to_list()) == list(range(19, 37))
    assert (novel["original_label"] - novel["label"]).unique().to_list() == [19]
    assert rows(novel, label=0)["classname"].unique().to_list() == ["class 19"]
    names = label_classnames(index)
    assert len(names) == 37
    assert [names[i] for i in subset_labels("base", 37)] == [f"class {i}" for i in range(19)]
    assert [names[i] for i in subset_labels("novel", 37)] == [f"class {i}" for i in range(19, 37)]
    assert [names[i] for i in subset_labels("all", 37)][-1] == "class 36"


def test_base_and_novel_come_from_one_all_class_draw() -> None:
    table = draw_few_shot(make_index(11), shots=4, seeds=[1, 2])
    key = ["seed", "split", "path", "original_label", "classname"]
    all_rows = rows(table, subset="all").select(key).sort(key)
    parts = pl.concat([rows(table, subset=s).select(key) for s in ("base", "novel")]).sort(key)
    assert parts.equals(all_rows)
    only_base = draw_few_shot(make_index(11), shots=4, seeds=[1], subsets=["base"])
    assert only_base.drop("subset").equals(rows(table, subset="base", seed=1).drop("subset"))


def test_subsample_classes_on_index_test_split() -> None:
    index = make_index(5)
    test = index.filter(pl.col("split") == "test")
    novel = subsample_classes(test, "novel", 5)
    assert sorted(novel["label"].unique().to_list()) == [0, 1]
    assert sorted(novel["original_label"].unique().to_list()) == [3, 4]
    assert "subset" not in novel.columns
    assert subsample_classes(test, "all", 5)["label"].equals(test["label"])
    with pytest.raises(ValueError, match="subset must be one of"):
        subsample_classes(test, "new", 5)
    with pytest.raises(ValueError, match="0..3"):
        subsample_classes(test, "base", 4)
    with pytest.raises(ValueError, match="all-class rows"):
        subsample_classes(draw_few_shot(index, shots=1, seeds=[1]), "base", 5)


def test_no_val_split_gives_train_rows_only() -> None:
    index = make_index(4).filter(pl.col("split") != "val")  # like ImageNet (val = test)
    table = draw_few_shot(index, shots=2, seeds=[1])
    assert table["split"].unique().to_list() == ["train"]


def test_content_hash_is_order_independent_and_content_sensitive() -> None:
    index = make_index(4)
    h = index_content_hash(index)
    assert len(h) == 64 and index_content_hash(shuffled(index, 3)) == h
    assert index_content_hash(index.head(index.height - 1)) != h
    renamed = index.with_columns(pl.col("classname").replace({"class 1": "class one"}))
    assert index_content_hash(renamed) != h
    relabelled = index.with_columns(pl.col("split").replace({"val": "test"}))
    assert index_content_hash(relabelled) != h


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shots": 0, "seeds": [1]}, "shots must be a positive integer"),
        ({"shots": 1.5, "seeds": [1]}, "shots must be a positive integer"),
        ({"shots": 1, "seeds": []}, "at least one seed"),
        ({"shots": 1, "seeds": [1], "subsets": ["new"]}, "subsets must be among"),
        ({"shots": 1, "seeds": [1], "draw": "dassl"}, "few_shot.draw"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        draw_few_shot(make_index(2), **kwargs)


def test_base_count_is_ceil_half() -> None:
    for n in (1, 2, 10, 47, 100, 397, 1000):
        index = make_index(n, train=1, val=0, test=0)
        assert len(label_classnames(index)) == n
        assert len(subset_labels("base", n)) == math.ceil(n / 2)
        assert len(subset_labels("novel", n)) == n - math.ceil(n / 2)
