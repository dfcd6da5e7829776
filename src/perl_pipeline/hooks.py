"""Project hooks: checks that need several parameters together, run before any node."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl


class CheckModelSettings:
    """Fail before any data or model is loaded when the backbone cannot take the PERL settings,
    its weights cannot be had or do not fit it, or the requested device is missing."""

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        from perl_pipeline.config import ClipConfig, PerlConfig, check_model_settings

        used = {name.removeprefix("params:") for name in pipeline.inputs() if name.startswith("params:")}
        if {"clip", "perl"} <= used:
            clip, perl = catalog.load("params:clip"), catalog.load("params:perl")
            check_model_settings(_typed(ClipConfig, clip), _typed(PerlConfig, perl))
        if "clip" in used:
            from perl_pipeline.models.loading import check_weights  # imports torch: only when needed

            clip = _typed(ClipConfig, catalog.load("params:clip"))
            check_weights(clip.model_name, clip.pretrained, clip.cache_dir)
        if "device" in used:
            from perl_pipeline.device import resolve_device  # imports torch: only when needed

            resolve_device(catalog.load("params:device"))


def _typed(cls, value):
    """Kedro hands nodes typed parameters; the catalog may still hold the raw dict."""
    return value if isinstance(value, cls) else cls(**value)
