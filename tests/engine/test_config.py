"""The run configuration: estimator options from -o, aliases and YAML agree; YAML keys checked."""

from __future__ import annotations

import pytest
import yaml

from sa_frame import UsageError
from sa_frame.engine.config import build_config, load_config_file
from sa_frame.engine.plan import plan
from tests.cli_runner import cli


def test_aliases_flags_and_yaml_give_the_same_options(tmp_path):
    by_flag = build_config({}, {"estimator": "shapley", "options": {"n_outer": 3, "players": "variables"}})
    by_alias = build_config({}, {"estimator": "shapley", "n_outer": 3, "players": "variables"})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"estimator": "shapley", "n_outer": 3, "options": {"players": "variables"},
                                    "out": str(tmp_path / "r.h5")}))
    by_yaml = build_config(load_config_file(path), {})
    assert by_flag.options == by_alias.options == by_yaml.options == {"n_outer": 3, "players": "variables"}
    assert by_flag.identity() == by_alias.identity()
    assert by_yaml.out == str(tmp_path / "r.h5")  # `out:` is a valid key of a config file
    # flags win over the file, option by option
    merged = build_config(load_config_file(path), {"options": {"n_outer": 5}})
    assert merged.options == {"n_outer": 5, "players": "variables"}


def test_plan_takes_sizes_from_the_estimator_and_options_from_the_config():
    run = plan(build_config({}, {"estimator": "shapley", "quick": True, "options": {"n_inner": 2}}),
               with_network=False)
    assert run.n == 8 and run.options.n_outer == 6 and run.options.n_inner == 2  # quick sizes, then -o
    assert run.design.config()["n_inner"] == 2 and run.chain.scheme == 2
    with pytest.raises(UsageError, match="estimator 'contrast' takes augmentation scheme 2, got --scheme 1"):
        plan(build_config({}, {"estimator": "contrast", "scheme": 1}), with_network=False)
    demo = plan(build_config({}, {}), with_network=False)
    assert demo.n == 512 and demo.options.second_order is True and demo.net is None
    contrast = plan(build_config({}, {"estimator": "contrast", "aug": "a2", "n": 4}), with_network=False)
    assert contrast.chain.permutation is None  # contrast varies one augmentation at a time: no order variable


def test_bad_estimator_options_get_one_line(tmp_path):
    with pytest.raises(UsageError, match=r"unknown options \['n_outer'\] \(did you mean 'n_inner'"):
        plan(build_config({}, {"estimator": "contrast", "n_outer": 2}), with_network=False)
    with pytest.raises(UsageError, match="option 'second_order' of estimator 'sobol' must be true or false"):
        plan(build_config({}, {"options": {"second_order": "yes"}}), with_network=False)
    code, _, err = cli("run", "-o", "second_order", "--out", tmp_path / "x.h5")
    assert code == 2 and "must be key=value" in err
    path = tmp_path / "bad.yaml"
    path.write_text("options: 3\n")
    with pytest.raises(UsageError, match="'options' must be a mapping"):
        load_config_file(path)


def test_options_listing_names_every_option_and_profile():
    code, out, err = cli("run", "--estimator", "contrast", "--options")
    assert code == 0, err
    for text in ("n_inner", "outer_per_block", "mode", "bins", "sampler", "binned", "paper", "n=50,000", "quick"):
        assert text in out, text
