"""`sa_frame.estimate` speaks SALib's problem dicts and labels its results."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from SALib.analyze import sobol as salib_sobol
from SALib.sample import sobol as salib_sample

import sa_frame
from sa_frame import UsageError
from tests.functions import ishigami


def test_salib_problem_dict_gives_salib_indices_labelled_by_name():
    """The same SALib dict, the same rows (one replicate = SALib's design), the same indices,
    labelled by SALib's group names in SALib's order."""
    spec = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-math.pi, math.pi]] * 3,
            "groups": ["late", "early", "late"]}
    res = sa_frame.estimate(spec, ishigami, "sobol", n=256, seed=4, replicates=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = salib_sample.sample(spec, 256, calc_second_order=True, seed=4)
        y = ishigami(torch.from_numpy(rows)).numpy()[:, 0]
        ref = salib_sobol.analyze(spec, y, num_resamples=2)
    assert res["names"].tolist() == ["late", "early"]  # groups in order of their first column, as SALib
    for key in ("S1", "ST", "S2"):
        np.testing.assert_allclose(res[key][..., 0], ref[key], rtol=1e-10, atol=1e-13)


def test_salib_normal_variables():
    """`norm` [mean, sd]: Y = a + b with a ~ U(0, 1), b ~ N(0, 2) gives S1 = (1/12, 4) / (4 + 1/12)."""
    spec = {"num_vars": 2, "names": ["a", "b"], "bounds": [[0, 1], [0, 2]], "dists": ["unif", "norm"]}
    res = sa_frame.estimate(spec, lambda x: x.sum(1), "sobol", n=2048, seed=1)
    exact = np.array([1 / 12, 4]) / (4 + 1 / 12)
    assert res["names"].tolist() == ["a", "b"]
    assert np.all(np.abs(res["S1"][:, 0] - exact) <= res["S1_conf"][:, 0] + 1e-3), (res["S1"][:, 0], exact)


@pytest.mark.parametrize("spec, match", [
    ({"num_vars": 2, "names": ["a"], "bounds": [[0, 1]]}, "num_vars = 2 but 1 names, 1 bounds"),
    ({"num_vars": 1, "names": ["a"], "bounds": [[0, 1]], "dists": ["lognorm"]}, "dist 'lognorm'; supported: unif"),
    ({"num_vars": 1, "names": ["a"]}, "needs bounds"),
    ({"num_vars": 1, "names": ["a"], "bounds": [[0, -1]], "dists": ["norm"]}, "positive sd"),
    ([1, 2], "a sa_frame.Problem or a SALib problem dict, got list")])
def test_bad_salib_problems(spec, match):
    with pytest.raises(UsageError, match=match):
        sa_frame.estimate(spec, lambda x: x[:, 0], "sobol", n=64)
