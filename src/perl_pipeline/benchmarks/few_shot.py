"""Few-shot draws and the base/novel class split (docs/method.md §6.2), deterministic everywhere.

One draw per seed over ALL classes, as Dassl's ``generate_fewshot_dataset`` after CoOp's
``set_random_seed(seed)``: the ``coop`` draw picks the CoOp lineage's very images (index row order);
``sorted`` sorts each class's paths. Base/novel rows are the first ``ceil(n/2)`` labels / the rest of
that one draw, relabelled from 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections import defaultdict
from collections.abc import Sequence

import polars as pl

from perl_pipeline.benchmarks.index import INDEX_SCHEMA, label_classnames
from perl_pipeline.benchmarks.spec import BenchmarkError
from perl_pipeline.config import FEW_SHOT_DRAWS
from perl_pipeline.provenance import canonical_json

logger = logging.getLogger(__name__)

SUBSETS = ("all", "base", "novel")
FEW_SHOT_SCHEMA: dict[str, pl.DataType] = {
    "seed": pl.Int64(),
    "subset": pl.String(),
    "split": pl.String(),
    "path": pl.String(),
    "label": pl.Int64(),
    "original_label": pl.Int64(),
    "classname": pl.String(),
    "source_hash": pl.String(),
    "recipe": pl.String(),  # canonical JSON of few_shot_recipe(...), the same on every row
}
DRAWS = FEW_SHOT_DRAWS  # one home: the configuration
"""``coop``: the index's (split file's) order, as Dassl; ``sorted``: paths sorted, label order."""
DEFAULT_DRAW = "coop"
_HASH_VERSION = b"perl-index-v1\n"
_ORDER_VERSION = b"perl-index-order-v1\n"
_HASH_CHUNK = 100_000


def index_content_hash(index: pl.DataFrame) -> str:
    """sha256 of the index rows (split, path, label, classname), independent of row order."""
    return _digest(_HASH_VERSION, index, ["split", "path", "label", "classname"], sort=True)


def index_order_hash(index: pl.DataFrame) -> str:
    """sha256 of the train and val rows (split, path, label) in the index's row order, on which the
    ``coop`` draw depends and which :func:`index_content_hash` deliberately ignores."""
    train_val = index.filter(pl.col("split").is_in(["train", "val"]))
    return _digest(_ORDER_VERSION, train_val, ["split", "path", "label"])


def _digest(version: bytes, index: pl.DataFrame, columns: list[str], sort: bool = False) -> str:
    """sha256 of the version tag and one line per row (the columns joined by a unit separator; the
    lines sorted if ``sort``), in chunks (bounded memory for 1.3 M rows)."""
    joined = pl.concat_str([pl.col(c).cast(pl.String) for c in columns], separator="\x1f")
    lines = index.select(joined).to_series()
    lines = lines.sort() if sort else lines
    digest = hashlib.sha256(version)
    for start in range(0, lines.len(), _HASH_CHUNK):
        digest.update("\x1e".join(lines.slice(start, _HASH_CHUNK).to_list()).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def few_shot_recipe(source_hash: str, shots: int, seed: int, draw: str, order: str | None = None) -> dict:
    """What determines one seed's draw: the index, K, the seed, the rule and (``coop`` only, required
    there) the index's :func:`index_order_hash`."""
    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS}, got {draw!r}")
    if (draw == "coop") != (order is not None):
        raise ValueError("the coop draw needs the index's order hash, and only the coop draw has one")
    recipe = {"index": source_hash, "shots": int(shots), "seed": int(seed), "draw": draw}
    return recipe if order is None else recipe | {"order": order}


def few_shot_recipe_of(few_shot: pl.DataFrame, seed: int) -> dict:
    """The recipe of one seed's draw in a few-shot table (its ``draw`` names the rule used)."""
    has_recipes = "recipe" in few_shot.columns
    recipes = few_shot.filter(pl.col("seed") == seed)["recipe"].unique().to_list() if has_recipes else []
    if len(recipes) != 1:
        raise BenchmarkError(
            f"the few-shot table has no single recipe for seed {seed} (it lacks that seed, or was "
            "written by an older version of the pipeline): draw it again: "
            "kedro run --pipelines few_shot_splits"
        )
    return json.loads(recipes[0])


def draw_few_shot(
    index: pl.DataFrame,
    *,
    shots: int,
    seeds: Sequence[int],
    subsets: Sequence[str] = SUBSETS,
    draw: str = DEFAULT_DRAW,
) -> pl.DataFrame:
    """Draw ``shots`` train images (and ``min(shots, 4)`` val images) per class, per seed, with its
    own generator; base/novel rows come from the ``all`` draw. Rows sorted by seed, subset, split,
    label, path."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS} (few_shot.draw), got {draw!r}")
    bad = [s for s in subsets if s not in SUBSETS]
    if bad:
        raise ValueError(f"subsets must be among {SUBSETS}, got {bad}")
    num_classes = len(label_classnames(index))
    source_hash = index_content_hash(index)
    order = index_order_hash(index) if draw == "coop" else None
    pools = _pools(index, draw)
    small = {items[0][1]: len(items) for items in pools["train"].values() if len(items) < shots}
    if small:  # as Dassl's generate_fewshot_dataset: such a class is kept whole
        names = ", ".join(f"{name} ({n})" for name, n in sorted(small.items()))
        msg = "%d class(es) have fewer than %d training images and are kept whole: %s"
        logger.warning(msg, len(small), shots, names)
    frames = []
    for seed in seeds:
        drawn = _draw(pools, shots, int(seed))
        all_rows = drawn.with_columns(
            seed=pl.lit(int(seed), pl.Int64),
            subset=pl.lit("all"),
            original_label=pl.col("label"),
            source_hash=pl.lit(source_hash),
            recipe=pl.lit(canonical_json(few_shot_recipe(source_hash, shots, seed, draw, order))),
        )
        frames += [subsample_classes(all_rows, s, num_classes) for s in subsets]
    table = pl.concat([f.select(list(FEW_SHOT_SCHEMA)) for f in frames]).cast(FEW_SHOT_SCHEMA)
    return table.sort(
        pl.col("seed"),
        pl.col("subset").replace_strict({name: i for i, name in enumerate(SUBSETS)}),
        pl.col("split").replace_strict({"train": 0, "val": 1}),
        pl.col("label"),
        pl.col("path"),
    )


Pools = dict[str, dict[int, list[tuple[str, str]]]]
"""split -> label -> [(path, classname)] for train and val."""


def _pools(index: pl.DataFrame, draw: str) -> Pools:
    """The train and val pools, in the order the draw visits them."""
    pools: Pools = {"train": defaultdict(list), "val": defaultdict(list)}
    rows = index.filter(pl.col("split").is_in(["train", "val"])).select("split", "label", "path", "classname")
    if draw == "sorted":
        rows = rows.sort("split", "label", "path")
    for split, label, path, classname in rows.iter_rows():
        pools[split][label].append((path, classname))
    return pools


def _draw(pools: Pools, shots: int, seed: int) -> pl.DataFrame:
    """One seeded draw: train classes in pool order, then val classes, with ``random.Random(seed)``
    (seeded as ``random.seed(seed)`` is, so it samples what Dassl's does)."""
    rng = random.Random(seed)
    rows = []
    for split, k in (("train", shots), ("val", min(shots, 4))):
        for label, items in pools[split].items():
            chosen = rng.sample(items, k) if len(items) >= k else items
            rows += [(split, path, label, classname) for path, classname in chosen]
    return pl.DataFrame(rows, schema=INDEX_SCHEMA, orient="row")


def subsample_classes(df: pl.DataFrame, subset: str, num_classes: int) -> pl.DataFrame:
    """Keep the rows of one class subset (:func:`subset_labels`) of an index or of a few-shot table's
    ``all`` rows, labels renumbered from 0 (``original_label`` keeps the full-dataset label)."""
    labels = subset_labels(subset, num_classes)
    if "subset" in df.columns and set(df["subset"].unique().to_list()) - {"all"}:
        raise ValueError("subsample_classes needs the all-class rows; filter subset == 'all' first")
    source = "original_label" if "original_label" in df.columns else "label"
    if df.height and (df[source].min() < 0 or df[source].max() >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}; got {df[source].min()}..{df[source].max()}"
        )
    first, stop = labels.start, labels.stop
    out = df.filter(pl.col(source).is_between(first, stop, closed="left")).with_columns(
        original_label=pl.col(source), label=pl.col(source) - first
    )
    return out.with_columns(subset=pl.lit(subset)) if "subset" in df.columns else out


def subset_labels(subset: str, num_classes: int) -> range:
    """The original labels of a class subset: base = first ceil(n/2), novel = the rest, or all."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    m = math.ceil(num_classes / 2)
    return {"all": range(num_classes), "base": range(m), "novel": range(m, num_classes)}[subset]
