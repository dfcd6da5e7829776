"""Project hooks: checks that need several parameters together, run before any node."""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline


class CheckModelSettings:
    """Fail before any data or model is loaded on a wrong parameter (`check_parameters`) or a
    ``--params`` section no pipeline reads; every ``kedro run ...`` a message suggests, here and in
    a node's error, repeats the run's environment, configuration folder and ``--params``."""

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        try:
            runtime = run_params.get("runtime_params") or {}
            _check_runtime_sections(runtime, pipeline)
            used = {name for name in pipeline.inputs() if name.startswith("params:")}
            used |= {f"params:{root}" for root in runtime if f"params:{root}" in catalog}
            check_parameters({name.removeprefix("params:"): catalog.load(name) for name in sorted(used)})
        except Exception as error:
            _repeat_in(error, run_params)
            raise

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params, pipeline, catalog) -> None:
        _repeat_in(error, run_params)


def _check_runtime_sections(runtime_params: Mapping[str, Any], pipeline: Pipeline) -> None:
    """Refuse ``--params`` whose top-level section no registered pipeline (nor `pipeline`) reads and
    no typed section has (a misspelt ``trainig.lr``), naming the closest known section (ConfigError)."""
    from perl_pipeline.config import ConfigError

    names = set(pipeline.inputs()) | {f"params:{section}" for section in [*typed_sections(), "parameters"]}
    try:
        from kedro.framework.project import pipelines

        for registered in pipelines.values():
            names |= set(registered.inputs())
    except Exception:  # noqa: BLE001 - no project configured (a library test): this pipeline's own
        pass
    known = sorted({n.removeprefix("params:").split(".")[0] for n in names if n.startswith("params:")})
    for root in runtime_params:
        if root not in known:
            close = difflib.get_close_matches(str(root), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"--params {root}...: no pipeline of this project reads a parameter {root!r}, so the "
                f"value would be ignored; {hint}(known sections: {', '.join(known)})"
            )


def repeat_run_settings(message: str, run_params: Mapping[str, Any]) -> str:
    """`message` with every ``kedro run ...`` it suggests repeating the run's ``--env``,
    ``--conf-source`` and ``--params`` (a key the suggestion sets itself keeps its value)."""
    from perl_pipeline.pipelines.freshness import _flatten, _flow, user_command

    prefix = user_command(run_params)
    user = _flatten(run_params.get("runtime_params") or {})
    if prefix == "kedro run" and not user:
        return message

    def rewrite(match: re.Match) -> str:
        tail, end = match.group(1), ""
        while tail and tail[-1] in ".,;:)":
            tail, end = tail[:-1], tail[-1] + end
        if "--env" in tail or "--conf-source" in tail:
            return match.group(0)  # the suggestion names its own environment (freshness' commands)
        own = re.search(r"--params[ =](\"[^\"]*\"|'[^']*'|\S+)", tail)
        keys = {item.partition("=")[0] for item in own.group(1).strip("'\"").split(",")} if own else set()
        extra = ",".join(f"{k}={_flow(v)}" for k, v in user.items() if k not in keys)
        if extra and own:
            merged = own.group(1).strip("'\"") + "," + extra
            tail = tail[: own.start()] + f"--params {shlex.quote(merged)}" + tail[own.end() :]
        elif extra:
            tail += f" --params {shlex.quote(extra)}"
        return prefix + tail + end

    value = r"(?:\"[^\"]*\"|'[^']*'|(?!-)[^\s`'\"]+)"
    option = rf"(?: --?[A-Za-z][\w-]*(?:[ =]{value})?)"
    return re.sub(rf"kedro run({option}*)", rewrite, message)


def _repeat_in(error: BaseException, run_params: Mapping[str, Any]) -> None:
    """Rewrite the commands an exception's message suggests (in place: the run re-raises it)."""
    if isinstance(error, KeyError) or not error.args or not isinstance(error.args[0], str):
        return
    if "kedro run" in error.args[0]:
        error.args = (repeat_run_settings(error.args[0], run_params), *error.args[1:])


class OwnBenchmarks:
    """Let the pipeline registry see the run's parameters: benchmarks of your own (a block in
    conf/local/, or an environment's) join the protocols (`registry.own_benchmarks`)."""

    @hook_impl
    def after_context_created(self, context) -> None:
        from perl_pipeline.pipelines.registry import use_parameters

        def parameters() -> Mapping[str, Any]:
            from kedro.config import MissingConfigException

            try:
                return context.config_loader["parameters"]
            except MissingConfigException:  # no parameters: no benchmarks of your own
                return {}

        use_parameters(parameters)
        from kedro.framework.project import pipelines

        # pipelines a session of another environment built earlier in this process are stale
        pipelines.configure("perl_pipeline.pipelines.registry")


def typed_sections() -> dict[str, type]:
    """Parameter section -> the typed configuration Kedro builds for the nodes (every `config.Section`)."""
    import perl_pipeline.toy.config  # noqa: F401 - its sections join the library's
    from perl_pipeline.config import Section

    return {cls.SECTION: cls for cls in Section.__subclasses__()}


def check_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """The typed value of every parameter a pipeline uses (``params:<name>`` -> value), checked:
    sections and ``<benchmark>.benchmark`` blocks (ConfigError naming the key), clip and perl
    against the backbone, the weights against clip, ``device`` against the machine (ValueError)."""
    from perl_pipeline.benchmarks.spec import BenchmarkSpec

    sections = typed_sections()
    typed: dict[str, Any] = {}
    for name, value in params.items():
        if name in sections:
            typed[name] = sections[name].model_validate(value)  # Kedro may have built it already
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
