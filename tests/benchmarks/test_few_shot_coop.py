"""few_shot.draw=coop picks the CoOp lineage's images: checked against Dassl's procedure.

The reference below is written from Dassl's ``set_random_seed`` (``random.seed``) and
``DatasetBase.generate_fewshot_dataset`` / ``split_dataset_by_label`` (items grouped by label in
a dict of lists, in order of first appearance; ``random.sample`` per label, all items when fewer
than k), with CoOp's readers (``OxfordPets.read_split``: the split file's list order;
``FGVCAircraft.read_data``: the ``images_variant_<split>.txt`` line order) and CoOp's order of
calls (train with k = shots, then val with k = min(shots, 4), on the one seeded global
generator; base / novel classes cut afterwards by ``subsample_classes``).
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from perl_pipeline.benchmarks.few_shot import draw_few_shot
from perl_pipeline.benchmarks.index import rel_path
from perl_pipeline.benchmarks.layouts import LAYOUTS
from perl_pipeline.benchmarks.spec import BenchmarkSpec
from perl_pipeline.toy.miniature import write_miniature

SEEDS = (1, 2, 3)
Item = tuple[str, int, str]  # (impath, label, classname), as a Dassl Datum


@pytest.fixture(autouse=True)
def keep_global_random() -> Iterator[None]:
    """The reference seeds the global generator, as CoOp does; give the caller's state back."""
    state = random.getstate()
    yield
    random.setstate(state)


def dassl_generate_fewshot(data_source: list[Item], num_shots: int) -> list[Item]:
    """Dassl's generate_fewshot_dataset (repeat=False) on one data source."""
    tracker: dict[int, list[Item]] = defaultdict(list)
    for item in data_source:
        tracker[item[1]].append(item)
    dataset: list[Item] = []
    for _, items in tracker.items():
        dataset.extend(random.sample(items, num_shots) if len(items) >= num_shots else items)
    return dataset


def coop_draw(train: list[Item], val: list[Item], shots: int, seed: int) -> dict[str, list[Item]]:
    """CoOp's dataset constructor after train.py's set_random_seed(seed)."""
    random.seed(seed)
    return {
        "train": dassl_generate_fewshot(train, shots),
        "val": dassl_generate_fewshot(val, min(shots, 4)),
    }


def coop_subsample(items: list[Item], subsample: str, labels: list[int]) -> list[Item]:
    """CoOp's OxfordPets.subsample_classes for one list (labels: those of the train list)."""
    if subsample == "all":
        return items
    ordered = sorted(set(labels))
    m = math.ceil(len(ordered) / 2)
    selected = ordered[:m] if subsample == "base" else ordered[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    return [(path, relabel[y], name) for path, y, name in items if y in relabel]


def read_split_json(path: Path) -> dict[str, list[Item]]:
    """CoOp's OxfordPets.read_split, paths left relative to the image folder."""
    split = json.loads(path.read_text())
    return {s: [(p, int(y), c) for p, y, c in split[s]] for s in ("train", "val", "test")}


def read_fgvc_lists(folder: Path) -> dict[str, list[Item]]:
    """CoOp's FGVCAircraft: labels in variants.txt order, items in each list's line order."""
    names = [line.strip() for line in (folder / "variants.txt").read_text().splitlines()]
    label_of = {name: i for i, name in enumerate(names)}
    out = {}
    for split in ("train", "val", "test"):
        items = []
        for line in (folder / f"images_variant_{split}.txt").read_text().splitlines():
            fields = line.strip().split(" ")
            name = " ".join(fields[1:])
            items.append((fields[0] + ".jpg", label_of[name], name))
        out[split] = items
    return out


def ours(table: pl.DataFrame, seed: int, subset: str, split: str) -> list[tuple[str, int]]:
    rows = table.filter(pl.col("seed") == seed, pl.col("subset") == subset, pl.col("split") == split)
    return sorted(rows.select("path", "label").iter_rows())


def theirs(items: list[Item], prefix: str) -> list[tuple[str, int]]:
    return sorted((f"{prefix}/{path}", label) for path, label, _ in items)


def assert_same_draws(table: pl.DataFrame, lists: dict[str, list[Item]], shots: int, prefix: str) -> None:
    """Same images and labels per seed, split and class subset as CoOp's draw of ``lists``."""
    for seed in SEEDS:
        drawn = coop_draw(lists["train"], lists["val"], shots, seed)
        labels = [y for _, y, _ in drawn["train"]]
        for subset in ("all", "base", "novel"):
            coop_subset = subset.replace("novel", "new")
            for split in ("train", "val"):
                expected = theirs(coop_subsample(drawn[split], coop_subset, labels), prefix)
                assert ours(table, seed, subset, split) == expected, (seed, subset, split)


def dtd_spec(benchmark_specs: dict) -> BenchmarkSpec:
    return benchmark_specs["dtd"]


def write_split(root: Path, spec: BenchmarkSpec, split: dict[str, list[list]]) -> None:
    folder = root / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (spec.split_file or "")).write_text(json.dumps(split))


def hand_written_split(rng: random.Random) -> dict[str, list[list]]:
    """7 classes interleaved in a shuffled list, first appearing in a shuffled label order;
    train sizes below, at and above 16, val sizes below and above 4."""
    train_sizes = {0: 30, 1: 3, 2: 16, 3: 41, 4: 17, 5: 1, 6: 25}
    val_sizes = {0: 9, 1: 2, 2: 4, 3: 6, 4: 3, 5: 0, 6: 12}
    split: dict[str, list[list]] = {}
    for name, sizes in (("train", train_sizes), ("val", val_sizes), ("test", {y: 2 for y in range(7)})):
        entries = [
            [f"class_{y}/{name}_{y}_{i:03d}.jpg", y, f"class {y}"] for y, n in sizes.items() for i in range(n)
        ]
        rng.shuffle(entries)
        split[name] = entries
    firsts = list(dict.fromkeys(e[1] for e in split["train"]))
    assert firsts != sorted(firsts)  # the test is only meaningful with a shuffled label order
    return split


def test_private_generator_samples_like_the_seeded_global_one() -> None:
    """random.Random(seed).sample gives what random.seed(seed); random.sample gives (both of
    sample's internal methods: small and large populations), call after call."""
    sizes = [(3, 3), (16, 16), (17, 16), (40, 16), (1000, 16), (50_000, 16), (9, 4), (300, 4)]
    for seed in SEEDS:
        random.seed(seed)
        expected = [random.sample(range(n), k) for n, k in sizes]
        rng = random.Random(seed)
        assert [rng.sample(range(n), k) for n, k in sizes] == expected


@pytest.mark.parametrize("shots", [16, 2])
def test_hand_written_split_file(tmp_path: Path, benchmark_specs: dict, shots: int) -> None:
    spec = dtd_spec(benchmark_specs)
    write_split(tmp_path, spec, hand_written_split(random.Random(5)))
    index = LAYOUTS[spec.layout].read(spec, tmp_path)
    table = draw_few_shot(index, shots=shots, seeds=SEEDS)
    lists = read_split_json(tmp_path / spec.folder / (spec.split_file or ""))
    assert_same_draws(table, lists, shots, f"{spec.folder}/{spec.image_dir}")
    sorted_rule = draw_few_shot(index, shots=shots, seeds=SEEDS, draw="sorted")
    assert not sorted_rule.select("path").equals(table.select("path"))  # the rules do differ here


def test_miniature_split_file(tmp_path: Path, benchmark_specs: dict) -> None:
    """A split file as the miniature writer lays it out (CoOp's real format), then shuffled."""
    spec = write_miniature(
        dtd_spec(benchmark_specs), tmp_path, classes=6, per_class={"train": 20, "val": 6, "test": 1}
    )
    path = tmp_path / spec.folder / (spec.split_file or "")
    split = json.loads(path.read_text())
    shuffler = random.Random(3)
    for entries in split.values():
        shuffler.shuffle(entries)
    path.write_text(json.dumps(split))
    index = LAYOUTS[spec.layout].read(spec, tmp_path)
    table = draw_few_shot(index, shots=16, seeds=SEEDS)
    assert_same_draws(table, read_split_json(path), 16, f"{spec.folder}/{spec.image_dir}")


def test_fgvc_variant_lists(tmp_path: Path, benchmark_specs: dict) -> None:
    """FGVC-Aircraft: the draw follows images_variant_<split>.txt (the writer shuffles its lines)."""
    spec = write_miniature(
        benchmark_specs["fgvc_aircraft"], tmp_path, classes=5, per_class={"train": 18, "val": 5, "test": 1}
    )
    folder = tmp_path / spec.folder
    index = LAYOUTS[spec.layout].read(spec, tmp_path)
    table = draw_few_shot(index, shots=16, seeds=SEEDS)
    assert_same_draws(table, read_fgvc_lists(folder), 16, f"{spec.folder}/{spec.image_dir}")


def test_imagenet_in_sorted_folder_and_file_order(tmp_path: Path, benchmark_specs: dict) -> None:
    """ImageNet: CoOp lists files in file-system order; ours is the documented, machine-independent
    one (sorted folders, sorted file names), where the coop and sorted rules coincide."""
    spec = write_miniature(
        benchmark_specs["imagenet"], tmp_path, classes=4, per_class={"train": 19, "test": 1}
    )
    train_dir = tmp_path / spec.folder / spec.image_dir / spec.split_dirs["train"]
    listing = [
        (f"{wnid.name}/{image.name}", label, wnid.name)
        for label, wnid in enumerate(sorted(p for p in train_dir.iterdir() if p.is_dir()))
        for image in sorted(wnid.iterdir())
    ]
    index = LAYOUTS[spec.layout].read(spec, tmp_path)
    table = draw_few_shot(index, shots=16, seeds=SEEDS)
    prefix = rel_path(spec.folder, spec.image_dir, spec.split_dirs["train"])
    assert_same_draws(table, {"train": listing, "val": []}, 16, prefix)
    assert table.equals(
        draw_few_shot(index, shots=16, seeds=SEEDS, draw="sorted").with_columns(table["recipe"])
    )
