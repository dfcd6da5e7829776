"""The experiment grid of the protocol (docs/method.md §6): which benchmarks each protocol uses, which seeds.

Kedro builds one namespaced copy of each stage per benchmark (and per seed for training) from
these tuples, following Kedro's pattern for dynamic pipelines. What a benchmark is (its files,
numbers and title) is its block in ``conf/base/parameters_benchmarks.yml``; DVC's foreach lists in
``params.yaml`` repeat this grid (a test keeps them equal).
"""

BASE_TO_NOVEL = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
)
SOURCE = "imagenet"  # the all-class model of cross-dataset transfer and domain generalisation
CROSS_DATASET_TARGETS = tuple(name for name in BASE_TO_NOVEL if name != SOURCE)
DOMAIN_GENERALIZATION_TARGETS = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
ALL_BENCHMARKS = BASE_TO_NOVEL + DOMAIN_GENERALIZATION_TARGETS
SEEDS = (1, 2, 3)
