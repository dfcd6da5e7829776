"""The experiment grid of the protocol (docs/method.md §6): which benchmarks, which seeds.

Kedro builds one namespaced copy of each stage per benchmark (and per seed for training) from
these tuples, following Kedro's pattern for dynamic pipelines.
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
