"""python -m perl_pipeline.paper: what users type, and what is checked before anything runs."""

from __future__ import annotations

import pytest

from perl_pipeline.config import ConfigError
from perl_pipeline.tools.paper import parse_artefacts, plan
from tests.pipelines.conftest import ROOT


def test_artefacts_are_named_as_users_type_them():
    assert parse_artefacts(["fig3", "layer", "table4"]) == ["fig3_layer", "table4"]
    assert parse_artefacts(["fig3"]) == ["fig3_layer", "fig3_steps"]
    assert parse_artefacts(["all", "table3"]) == ["table3", "table4", "fig3_layer", "fig3_steps", "dynamics"]
    with pytest.raises(ConfigError, match="unknown paper artefact 'table9'.*table3, table4, fig3 layer"):
        parse_artefacts(["table9"])


def test_the_plan_lists_every_rows_settings_and_refuses_a_malformed_row():
    params = {
        "paper": {
            "table4": {
                "rows": [
                    {"name": "PERL-Layer", "set": ["perl.split_layer=[7, 9, 11]", "perl.share_layers=false"]},
                    {"name": "PERL-Shared", "set": []},
                ]
            }
        }
    }
    assert plan(params, ["table4", "dynamics"]) == [
        ("table4", "PERL-Layer", [("perl.split_layer", [7, 9, 11]), ("perl.share_layers", False)]),
        ("table4", "PERL-Shared", []),
    ]
    with pytest.raises(ConfigError, match=r"paper.table3: no rows .*conf/base/parameters_paper.yml"):
        plan(params, ["table3"])
    params["paper"]["table4"]["rows"].append({"name": "x", "set": ["perl.steps"]})
    with pytest.raises(ConfigError, match=r"paper.table4.rows: .*expected key=value"):
        plan(params, ["table4"])


@pytest.mark.parametrize("env", ["base", "demo"])
def test_every_environments_paper_rows_are_valid_settings_for_its_backbone(env):
    """Each row of the shipped definitions passes the checks a run makes of its PERL settings
    against its backbone's architecture (every Table 4 variant at the depths it has)."""
    from kedro.config import OmegaConfigLoader

    from perl_pipeline.config import ClipConfig, PerlConfig
    from perl_pipeline.models.factory import check_model_settings
    from perl_pipeline.settings import CONFIG_LOADER_ARGS
    from perl_pipeline.tools.sweep import fixed_params, merged

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(str(ROOT / "conf"), env=env, **args, runtime_params={})
    params = loader["parameters"]
    runs = plan(params, ["table3", "table4", "fig3_layer", "fig3_steps"])
    assert len(runs) == {"base": 20, "demo": 17}[env]
    for *_, values in runs:
        row = merged(params, fixed_params(values))
        clip, perl = ClipConfig.model_validate(row["clip"]), PerlConfig.model_validate(row["perl"])
        check_model_settings(clip, perl)  # raises for a depth the backbone does not have
