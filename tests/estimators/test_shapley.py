"""Shapley effects: analytic values (independent and dependent inputs), invariants, merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sa_frame
from sa_frame import MultivariateNormal, Problem, SpikeAndSlab, Uniform, UsageError
from sa_frame.core.registry import lookup
from tests.functions import ishigami, ishigami_problem, sobol_g, unit_problem


def _within(res, exact, slack):
    est, se = res["shapley"][:, 0], res["shapley_se"][:, 0]
    assert np.all(np.abs(est - np.asarray(exact)) <= 3 * se + slack), (est, exact, se)


def test_ishigami_shapley(analytic):
    ref = analytic["ishigami"]
    res = sa_frame.estimate(ishigami_problem(), ishigami, "shapley", n=3000, seed=4, n_outer=4, n_inner=3)
    _within(res, ref["shapley"], 0.005)
    np.testing.assert_allclose(res["shapley"].sum(0), 1.0, rtol=1e-12)  # shares sum to one
    # invariant S1 <= Sh <= ST (checked on the analytic values and, loosely, the estimate)
    s1, st_ = np.array(ref["S1"]), np.array(ref["ST"])
    assert np.all(s1 <= np.array(ref["shapley"])) and np.all(np.array(ref["shapley"]) <= st_)
    assert np.all(res["shapley"][:, 0] >= s1 - 3 * res["shapley_se"][:, 0] - 0.005)
    assert np.all(res["shapley"][:, 0] <= st_ + 3 * res["shapley_se"][:, 0] + 0.005)
    assert abs(res["var"][0] - ref["V"]) < 0.06 * ref["V"]


@pytest.mark.parametrize("case", [0, 1])
def test_linear_gaussian_dependent_inputs(analytic, case):
    ref = analytic["linear_gaussian"]["cases"][case]
    s, rho = np.array(ref["sigma"], dtype=float), ref["rho_x2_x3"]
    cov = np.diag(s**2)
    cov[1, 2] = cov[2, 1] = rho * s[1] * s[2]
    problem = Problem({"x": MultivariateNormal([0, 0, 0], cov, ["x1", "x2", "x3"])})
    beta = torch.tensor(ref["beta"], dtype=torch.float64)
    res = sa_frame.estimate(problem, lambda x: x @ beta, "shapley", n=1200, seed=case, n_outer=4, n_inner=4)
    _within(res, ref["shapley"], 0.005)
    assert abs(res["var"][0] - ref["VarY"]) < 0.06 * ref["VarY"]


def test_sobol_g_shapley(analytic):
    ref = analytic["sobol_g"]
    res = sa_frame.estimate(unit_problem(len(ref["a"])), sobol_g(ref["a"]), "shapley", n=600, seed=2,
                            n_outer=2, n_inner=3)
    _within(res, ref["shapley"], 0.01)


def test_additive_model_shares_and_exhaustive_permutations():
    b = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    problem = unit_problem(3)
    est = lookup("estimator", "shapley")
    design = est.design(problem, 60, seed=0, n_outer=8, n_inner=4)
    assert design.exhaustive and design.n_blocks == 60  # 3! = 6 orders, each used 10 times
    assert sorted(map(tuple, design.permutations[:6].tolist())) == sorted(
        [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)])
    res = sa_frame.estimate(problem, lambda x: x @ b, "shapley", n=60, seed=0, n_outer=8, n_inner=4)
    _within(res, (b**2 / (b**2).sum()).tolist(), 0.01)


def test_players_variables_sum_to_group_values():
    """players='variables' (the paper's per-variable permutations) on a spike-and-slab problem."""
    problem = Problem({"aug": SpikeAndSlab({"a": Uniform(1.0, 2.0)}, {"a": 0.0}), "x": Uniform(0.0, 1.0)})

    def fn(x):
        return x[:, 1] + x[:, 2]  # aug.a (0 when off) + x

    by_var = sa_frame.estimate(problem, fn, "shapley", n=2000, seed=1, n_outer=2, n_inner=3, players="variables")
    by_group = sa_frame.estimate(problem, fn, "shapley", n=400, seed=1, n_outer=4, n_inner=3)
    assert by_var["shapley"].shape == (3, 1) and by_group["shapley"].shape == (2, 1)
    grouped = by_var["shapley"][0, 0] + by_var["shapley"][1, 0]
    se = np.hypot(by_var["shapley_se"][:2, 0].sum(), by_group["shapley_se"][0, 0])
    assert abs(grouped - by_group["shapley"][0, 0]) <= 3 * se + 0.01
    # Var(aug) = Var(on * U(1,2)) = 0.5*(1/12 + 2.25) - 0 ... exact share of the group:
    v_aug = 0.5 * (1 / 12 + 1.5**2) - (0.5 * 1.5) ** 2
    share = v_aug / (v_aug + 1 / 12)
    assert abs(by_group["shapley"][0, 0] - share) <= 3 * by_group["shapley_se"][0, 0] + 0.01


def _run(problem, fn, blocks, design, acc=None):
    acc = acc or lookup("estimator", "shapley").accumulator(problem, design, {"y": (1,)})
    for k in blocks:
        block = design.block(k)
        y = fn(problem.values(block.unit, block.known))
        half = block.n_rows // 2 // design.unit_rows * design.unit_rows  # two aligned chunks per block
        acc.update(block, {"y": y[:half]}, slice(0, half))
        acc.update(block, {"y": y[half:]}, slice(half, block.n_rows))
    return acc


def test_merge_and_resume():
    problem = ishigami_problem()
    design = lookup("estimator", "shapley").design(problem, 40, seed=3, n_outer=3, n_inner=3)
    assert design.n_blocks == 42  # 3! = 6 orders, budget rounded up to 7 rounds
    full = _run(problem, ishigami, range(42), design)
    merged = _run(problem, ishigami, range(0, 42, 2), design)
    merged.merge(_run(problem, ishigami, range(1, 42, 2), design))
    a, b = full.finalize()["y"], merged.finalize()["y"]
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, atol=1e-14)
    resumed = lookup("estimator", "shapley").accumulator(problem, design, {"y": (1,)})
    resumed.load_state(_run(problem, ishigami, range(17), design).state())
    _run(problem, ishigami, range(17, 42), design, acc=resumed)
    c = resumed.finalize()["y"]
    for key in a:
        np.testing.assert_array_equal(c[key], a[key])
    assert resumed.blocks_done == 42


def test_bad_inputs():
    problem = unit_problem(2)
    with pytest.raises(UsageError, match="n_inner >= 2"):
        sa_frame.estimate(problem, lambda x: x[:, 0], "shapley", n=4, n_inner=1)
    with pytest.raises(UsageError, match="players must be one of"):
        sa_frame.estimate(problem, lambda x: x[:, 0], "shapley", n=4, players="units")


def test_share_errors_include_the_total_and_cover():
    """Delta-method errors of the shares: 0 for a single player (its share is exactly 1), and
    intervals t(M-1) * se that cover the exact share of an additive function over 60 seeds."""
    one = sa_frame.estimate(Problem({"x": Uniform(0, 1)}), lambda x: 3 * x[:, 0], "shapley", n=20, seed=0,
                            n_outer=2, n_inner=3)
    assert one["shapley"][0, 0] == pytest.approx(1.0) and one["shapley_se"][0, 0] == 0.0
    problem = Problem({"x1": Uniform(0, 1), "x2": Uniform(0, 1)})
    exact = np.array([1 / 5, 4 / 5])  # y = x1 + 2 x2: variances 1/12 and 4/12
    shares, ses, covered = [], [], []
    for seed in range(60):
        res = sa_frame.estimate(problem, lambda x: x[:, 0] + 2 * x[:, 1], "shapley", n=30, seed=seed, n_outer=2,
                                n_inner=3)
        shares.append(res["shapley"][:, 0])
        ses.append(res["shapley_se"][:, 0])
        covered.append(np.abs(res["shapley"][:, 0] - exact) <= res["shapley_conf"][:, 0])
    spread = np.std(shares, axis=0, ddof=1)
    assert np.all((np.median(ses, axis=0) > 0.6 * spread) & (np.median(ses, axis=0) < 1.6 * spread)), (ses, spread)
    assert np.all(np.mean(covered, axis=0) >= 0.85), np.mean(covered, axis=0)


def test_exhaustive_permutations_give_stratified_share_errors(analytic):
    """With every permutation used equally often the choice of permutations is no error: the
    share errors pool the spread within permutations (Student t on M - d!), so they match the
    real spread of the shares over seeds (the permutation-to-permutation spread overstated it
    by up to 1.46x on this case) and the intervals cover the exact dependent-input effects."""
    ref = analytic["linear_gaussian"]["cases"][0]
    s, rho = np.array(ref["sigma"], dtype=float), ref["rho_x2_x3"]
    cov = np.diag(s**2)
    cov[1, 2] = cov[2, 1] = rho * s[1] * s[2]
    problem = Problem({"x": MultivariateNormal([0, 0, 0], cov, ["x1", "x2", "x3"])})
    shares, ses, covered = [], [], []
    for seed in range(200):
        res = sa_frame.estimate(problem, lambda x: x.sum(1), "shapley", n=126, seed=seed, n_outer=2, n_inner=3)
        shares.append(res["shapley"][:, 0])
        ses.append(res["shapley_se"][:, 0])
        covered.append(np.abs(res["shapley"][:, 0] - ref["shapley"]) <= res["shapley_conf"][:, 0])
    ratio = np.median(ses, axis=0) / np.sqrt(np.mean((np.array(shares) - ref["shapley"]) ** 2, axis=0))
    assert np.all((ratio > 0.85) & (ratio < 1.2)), ratio
    assert np.all((np.mean(covered, axis=0) >= 0.9) & (np.mean(covered, axis=0) <= 0.99)), np.mean(covered, axis=0)
    design = sa_frame.lookup("estimator", "shapley").design(problem, 126, 0, n_outer=2, n_inner=3)
    assert design.strata == 6 and sa_frame.lookup("estimator", "shapley").intervals(design)["dof"] == 120
