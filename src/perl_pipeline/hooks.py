"""Project hooks: checks that need several parameters together, run before any node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.framework.hooks import hook_impl


class CheckModelSettings:
    """Fail before any data or model is loaded when a parameter has the wrong type or range, the
    backbone cannot take the PERL settings, its weights cannot be had or do not fit it, or the
    requested device is missing."""

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        used = sorted(name for name in pipeline.inputs() if name.startswith("params:"))
        check_parameters({name.removeprefix("params:"): catalog.load(name) for name in used})


class OwnBenchmarks:
    """Let the pipeline registry see the run's parameters, so that benchmarks of your own (a
    block in conf/local/, or an environment's) join the protocols (`pipeline_registry.own_benchmarks`)."""

    @hook_impl
    def after_context_created(self, context) -> None:
        from perl_pipeline.pipeline_registry import use_parameters

        def parameters() -> Mapping[str, Any]:
            from kedro.config import MissingConfigException

            try:
                return context.config_loader["parameters"]
            except MissingConfigException:  # no parameters: no benchmarks of your own
                return {}

        use_parameters(parameters)
        from kedro.framework.project import pipelines

        # pipelines a session of another environment built earlier in this process are stale
        pipelines.configure("perl_pipeline.pipeline_registry")


def typed_sections() -> dict[str, type]:
    """Parameter section -> the typed configuration Kedro builds for the nodes."""
    from perl_pipeline.config import (
        ClipConfig,
        DataSourceConfig,
        EvalConfig,
        FewShotConfig,
        PerlConfig,
        TrainConfig,
    )
    from perl_pipeline.toy.config import PretrainConfig, ToyClipConfig

    classes = (ClipConfig, PerlConfig, TrainConfig, EvalConfig, FewShotConfig, DataSourceConfig)
    return {cls.SECTION: cls for cls in (*classes, ToyClipConfig, PretrainConfig)}


def check_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Build and check every parameter a pipeline uses (name -> value, as in ``params:<name>``).

    Typed sections become their configuration, ``<benchmark>.benchmark`` blocks their
    BenchmarkSpec; clip and perl are checked together against the backbone's architecture, the
    weights (a file's format and architecture, a tag's local copy or host) against clip, and
    ``device`` against the machine.

    Returns:
        The typed values, by name.

    Raises:
        ConfigError: a wrong type, range, unknown key or impossible setting, naming the key.
        ValueError: a device the machine does not have.
    """
    from perl_pipeline.benchmarks.spec import BenchmarkSpec

    sections = typed_sections()
    typed: dict[str, Any] = {}
    for name, value in params.items():
        if name in sections:
            typed[name] = _typed(sections[name], value)
        elif name.rpartition(".")[2] == "benchmark":
            typed[name] = value if isinstance(value, BenchmarkSpec) else BenchmarkSpec.from_params(value)
    if "clip" in typed and "perl" in typed:
        from perl_pipeline.models.factory import check_model_settings  # imports torch: only when needed

        check_model_settings(typed["clip"], typed["perl"])
    if "clip" in typed:
        from perl_pipeline.models.loading import check_weights  # imports torch: only when needed

        clip = typed["clip"]
        check_weights(clip.model_name, clip.pretrained, clip.cache_dir)
    if "device" in params:
        from perl_pipeline.device import resolve_device  # imports torch: only when needed

        resolve_device(params["device"])
    return typed


def _typed(cls, value):
    """Kedro hands nodes typed parameters; the catalog may still hold the raw dict."""
    from perl_pipeline.config import check_fields

    return value if isinstance(value, cls) else cls(**check_fields(cls, value, cls.SECTION))
