"""Undefined indices: the low-variance rule on known arrays, and on demo runs every stored index
is finite or NaN exactly where flagged; every activation without variance is flagged constant."""

from __future__ import annotations

import numpy as np
import pytest

from sa_frame.engine.low_variance import CHECKPOINT_FLOOR, SCALE_FLOOR, low_variance, mark_low_variance, ratio_maps
from sa_frame.results import maps as read
from sa_frame.results.store import ResultsFile
from tests.cli_runner import cli


def test_the_rule_on_known_denominators():
    denominator = np.array([1.0, 1.0, 1.0, 0.5e-3, 2e-3, 0.04, 0.0])
    var = np.array([1.0, 1.0, 1.0, 1e-3, 2e-3, 1.0, 0.0])
    zero = np.array([0, 0, 0, 0, 0, 0, 1], bool)
    # median of the varying denominators is 1.0: 0.5e-3 < 1e-3 is noise, 2e-3 is not; 0.04 < 5% of 1.0
    assert low_variance(denominator, var, zero).tolist() == [False, False, False, True, False, True, False]
    assert CHECKPOINT_FLOOR == 1e-3 and SCALE_FLOOR == 0.05
    assert not low_variance(np.zeros(3), np.zeros(3), np.ones(3, bool)).any()  # all constant: nothing to mark


def test_marking_sets_nan_in_ratio_maps_only():
    maps = {"S1": np.ones((2, 3)), "S1_conf": np.ones((2, 3)), "S2": np.ones((2, 2, 3)), "mean": np.ones(3),
            "var": np.array([1.0, 1.0, 1.0]), "index_var": np.array([1.0, 0.01, 1.0]),
            "zero_variance": np.zeros(3, np.uint8)}
    names = ratio_maps({"S1", "S2"}, {"S1": ("S1", "clip")})
    assert names == {"S1", "S2", "S1_conf", "S2_conf", "S1_se", "S2_se"}
    assert mark_low_variance(maps, names) == 1
    assert np.isnan(maps["S1"][:, 1]).all() and np.isnan(maps["S1_conf"][:, 1]).all()
    assert np.isnan(maps["S2"][..., 1]).all() and np.isfinite(maps["S1"][:, [0, 2]]).all()
    assert maps["mean"].tolist() == [1, 1, 1] and maps["low_variance"].tolist() == [0, 1, 0]


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("low")
    runs = {}
    for estimator, extra in (("sobol", ["--quick"]), ("shapley", ["--n", "24", "--n-inner", "2"])):
        out = folder / f"{estimator}.h5"
        code, _, err = cli("run", "--estimator", estimator, *extra, "--out", out)
        assert code == 0, err
        runs[estimator] = (ResultsFile(out), err)
    return runs


@pytest.mark.parametrize("estimator", ["sobol", "shapley"])
def test_every_stored_index_is_finite_or_nan_where_flagged(demo_runs, estimator):
    results, err = demo_runs[estimator]
    stored = results.read("checkpoints")
    names = {"sobol": ("S1", "ST", "S1_conf", "ST_conf"), "shapley": ("shapley", "shapley_raw", "shapley_se")}
    marked = 0
    for checkpoint, values in stored.items():
        zero, low = values["zero_variance"].astype(bool), values["low_variance"].astype(bool)
        assert not (zero & low).any()
        assert zero[values["var"] == 0].all(), f"{checkpoint}: an activation of variance 0 is not flagged"
        denominator = values.get("index_var", values["var"])
        scale = values.get("index_scale", values["var"])
        np.testing.assert_array_equal(low, low_variance(denominator, scale, zero))  # the documented rule
        for name in names[estimator]:
            undefined, flagged = np.isnan(values[name]), np.broadcast_to(low, values[name].shape)
            assert undefined[flagged].all(), f"{checkpoint}/{name}"
            if not name.endswith(("_conf", "_se")):  # intervals may be undefined elsewhere too (few replicates)
                assert (undefined == flagged).all(), f"{checkpoint}/{name}"
            assert (values[name][:, zero] == 0).all() or name == "shapley_raw"
        if estimator == "shapley":  # |share| <= sum |effects| / total < 1 / SCALE_FLOOR where defined
            assert np.nanmax(np.abs(values["shapley"])) <= 1 / SCALE_FLOOR + 1e-6
        marked += int(low.sum())
        for value in read.value_types(results):  # the maps analyses read: in [0, 1], NaN read as 0
            processed = read.sensitivity(results, value, checkpoint)
            assert np.isfinite(processed).all() and processed.min() >= 0 and processed.max() <= 1
            assert (processed[:, low] == 0).all()
    assert marked > 0 and results.attrs()["low_variance"] == {
        c: int(v["low_variance"].sum()) for c, v in stored.items() if v["low_variance"].any()}
    assert "indices left undefined" in err and "docs/estimators.md" in err
