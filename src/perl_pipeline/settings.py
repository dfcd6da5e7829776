"""Kedro project settings (https://docs.kedro.org/en/stable/kedro_project_setup/settings.html)."""

from perl_pipeline.pipelines.freshness import Provenance
from perl_pipeline.pipelines.hooks import CheckModelSettings, OwnBenchmarks
from perl_pipeline.pipelines.reporting.partial import PartialReport

# pluggy calls the hooks registered last first: the settings are checked before the artefacts
HOOKS = (PartialReport(), Provenance(), CheckModelSettings(), OwnBenchmarks())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (and `--params`, which Kedro merges into it) overrides the base parameters key
    # by key, not whole sections: `--params toy_clip.pairs=10` keeps the rest of `toy_clip`.
    "merge_strategy": {"parameters": "soft"},
}
