"""Project settings: parameters overridden key by key, by an environment and by --params."""

from __future__ import annotations

from tests.pipelines.conftest import ROOT


def test_an_override_keeps_the_rest_of_its_section():
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    overrides = {"toy_clip": {"pairs": 7}, "training": {"lr": 0.5}}
    for env in ("demo", None):  # toy_clip exists in base only; training in base and in demo
        with KedroSession.create(project_path=ROOT, env=env, runtime_params=overrides) as session:
            params = session.load_context().params
        assert params["toy_clip"].pairs == 7 and len(params["toy_clip"].held_out) == 8, env
        assert params["training"].lr == 0.5
