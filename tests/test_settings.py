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


def _leaves(tree: object, path: tuple = ()) -> dict[tuple, object]:
    if isinstance(tree, dict):
        return {leaf: v for k, sub in tree.items() for leaf, v in _leaves(sub, (*path, k)).items()}
    return {path: tree}


def _raw(env: str) -> dict[tuple, object]:
    import yaml

    files = sorted((ROOT / "conf" / env).glob("parameters*.yml"))
    return {leaf: v for f in files for leaf, v in _leaves(yaml.safe_load(f.read_text()) or {}).items()}


def _merged(env: str) -> dict[tuple, object]:
    from kedro.config import OmegaConfigLoader

    from perl_pipeline.settings import CONFIG_LOADER_ARGS

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    return _leaves(OmegaConfigLoader(str(ROOT / "conf"), env=env, **args, runtime_params={})["parameters"])


def test_the_demo_overrides_only_what_differs_from_base():
    base, demo = _raw("base"), _raw("demo")
    assert not [".".join(map(str, leaf)) for leaf, value in demo.items() if base.get(leaf, object()) == value]


def test_an_environment_is_merged_into_base_key_by_key():
    """Kedro's soft merge is a deep merge: every base setting the demo leaves out is the base's
    (interpolated ones resolve with the demo's globals), every one it sets is its own."""
    base, demo, local, merged = _raw("base"), _raw("demo"), _merged("local"), _merged("demo")
    for leaf, value in base.items():
        if (
            leaf not in demo
            and "${" not in str(value)
            and not any(leaf[:i] in demo for i in range(len(leaf)))
        ):
            assert merged[leaf] == local[leaf], leaf
    for leaf, value in demo.items():
        if "${" not in str(value):
            assert merged[leaf] == value, leaf
    assert merged[("data_root",)] == "data/demo/01_raw" and merged[("training", "weight_decay")] == 0.01
    assert merged[("perl", "steps")] == 4 and merged[("perl", "split_layer")] == 2


def test_kedro_builds_the_typed_parameters_and_reports_ours_for_a_wrong_value():
    import pytest
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.validation.exceptions import ParameterValidationError

    from perl_pipeline.config import TrainConfig

    bootstrap_project(ROOT)
    overrides = {"training": {"batch_size": 2.5}, "perl": {"stepz": 2}}
    with KedroSession.create(project_path=ROOT, env="demo", runtime_params=overrides) as session:
        with pytest.raises(ParameterValidationError) as error:  # Kedro's, around our messages
            _ = session.load_context().params
    assert "training.batch_size=2.5: expected an integer >= 1" in str(error.value)
    assert "perl: unknown key 'stepz' -- did you mean 'steps'?" in str(error.value)
    with KedroSession.create(project_path=ROOT, env="demo") as session:
        assert isinstance(session.load_context().params["training"], TrainConfig)
