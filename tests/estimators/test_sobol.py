"""Sobol indices: analytic values, exact agreement with SALib, streaming invariants."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from SALib.analyze import sobol as salib_sobol
from SALib.sample import sobol as salib_sample

import sa_frame
from sa_frame import UsageError
from sa_frame.core.registry import lookup
from tests.functions import ishigami, ishigami_problem, sobol_g, unit_problem

SE_PER_CONF = 1 / 1.959963984540054  # S1_conf is a 95% half-width


def _within(estimate, exact, conf, slack):
    """|estimate - exact| <= 3 standard errors + a documented absolute slack."""
    estimate, exact, conf = (np.asarray(v, dtype=float).ravel() for v in (estimate, exact, conf))
    assert np.all(np.abs(estimate - exact) <= 3 * conf * SE_PER_CONF + slack), (estimate, exact, conf)


def test_ishigami_first_total_second_order(analytic):
    ref = analytic["ishigami"]
    res = sa_frame.estimate(ishigami_problem(), ishigami, "sobol", n=2**13, seed=7)
    _within(res["S1"], ref["S1"], res["S1_conf"], 0.005)
    _within(res["ST"], ref["ST"], res["ST_conf"], 0.005)
    s2 = res["S2"][..., 0]
    assert abs(s2[0, 2] - ref["S2"]["x1,x3"]) < 0.02
    assert abs(s2[0, 1]) < 0.02 and abs(s2[1, 2]) < 0.02
    assert np.isnan(s2[np.tril_indices(3)]).all()
    # the design's mean/variance of the output
    assert abs(res["var"][0] - ref["V"]) < 0.03 * ref["V"]


def test_ishigami_grouped(analytic):
    ref = analytic["ishigami"]["grouped"]
    res = sa_frame.estimate(ishigami_problem(ref["groups"]), ishigami, "sobol", n=2**13, seed=3,
                            second_order=False)
    assert res["S1"].shape == (2, 1)
    _within(res["S1"], ref["S1"], res["S1_conf"], 0.005)
    _within(res["ST"], ref["ST"], res["ST_conf"], 0.005)


def test_sobol_g_function(analytic):
    ref = analytic["sobol_g"]
    res = sa_frame.estimate(unit_problem(len(ref["a"])), sobol_g(ref["a"]), "sobol", n=2**12, seed=11,
                            second_order=False)
    _within(res["S1"], ref["S1"], res["S1_conf"], 0.005)
    _within(res["ST"], ref["ST"], res["ST_conf"], 0.005)
    assert np.all(res["S1"][:, 0] <= res["ST"][:, 0] + 3 * SE_PER_CONF * (res["S1_conf"][:, 0] + res["ST_conf"][:, 0]))


def test_design_equals_salib_sample():
    problem = ishigami_problem({"g1": ["x1", "x3"], "g2": ["x2"]})
    est = lookup("estimator", "sobol")
    for second in (True, False):
        design = est.design(problem, 64, seed=5, second_order=second, points_per_block=8, replicates=1)
        rows = torch.cat([b.unit for b in design]).numpy()
        salib_problem = {"num_vars": 3, "names": problem.names, "bounds": [[0, 1]] * 3,
                         "groups": ["g1", "g2", "g1"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = salib_sample.sample(salib_problem, 64, calc_second_order=second, seed=5)
        assert np.array_equal(rows, expected)


def test_groups_listed_in_any_order_give_salib_rows_and_labels():
    """SALib orders groups by their first column; so does a Problem, whatever order they are listed in."""
    shuffled = ishigami_problem({"g2": ["x2"], "g3": ["x3"], "g1": ["x1"]})
    assert shuffled.group_names == ["g1", "g2", "g3"] and shuffled.group_of_column.tolist() == [0, 1, 2]
    design = lookup("estimator", "sobol").design(shuffled, 32, seed=2, points_per_block=16, replicates=1)
    rows = torch.cat([b.unit for b in design]).numpy()
    salib_problem = {"num_vars": 3, "names": shuffled.names, "bounds": [[0, 1]] * 3, "groups": ["g1", "g2", "g3"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = salib_sample.sample(salib_problem, 32, calc_second_order=True, seed=2)
    assert np.array_equal(rows, expected)
    res = sa_frame.estimate(shuffled, ishigami, "sobol", n=2**12, seed=3)
    assert res["S1"][1, 0] == pytest.approx(0.4424, abs=0.03)  # x2's share, under its own label g2


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 6), n=st.integers(2, 300), outputs=st.integers(1, 4), second=st.booleans(),
       offset=st.floats(-1e4, 1e4), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31))
def test_point_estimates_equal_salib(d, n, outputs, second, offset, scale, seed):
    """Any N (SALib allows any): whole units of 16 base points and a shorter tail."""
    rpp = 2 * d + 2 if second else d + 2
    rng = np.random.default_rng(seed)
    y = offset + scale * (rng.normal(size=(n * rpp, outputs)) + rng.normal(size=(1, outputs)))
    res = sa_frame.sobol_from_outputs(y, n_groups=d, second_order=second)
    problem = {"num_vars": d, "names": [f"x{i}" for i in range(d)], "bounds": [[0, 1]] * d}
    for c in range(outputs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = salib_sobol.analyze(problem, y[:, c], calc_second_order=second, num_resamples=2)
        keys = ("S1", "ST", "S2") if second else ("S1", "ST")
        for key in keys:
            np.testing.assert_allclose(res[key][..., c], ref[key], rtol=1e-10, atol=1e-12 * (1 + abs(offset) / scale))


def test_bootstrap_intervals_equal_salib():
    d, n = 3, 64
    rng = np.random.default_rng(0)
    y = rng.normal(size=(n * (2 * d + 2), 3)) + np.array([0.0, 5.0, -2.0])
    res = sa_frame.sobol_from_outputs(y, n_groups=d, num_resamples=40, seed=9)
    problem = {"num_vars": d, "names": ["a", "b", "c"], "bounds": [[0, 1]] * d}
    for c in range(3):
        ref = salib_sobol.analyze(problem, y[:, c], num_resamples=40, seed=9)
        for key in ("S1_conf", "ST_conf", "S2_conf"):
            np.testing.assert_allclose(res[key][..., c], ref[key], rtol=1e-9)


def _run(problem, fn, n, seed, blocks=None, **options):
    est = lookup("estimator", "sobol")
    design = est.design(problem, n, seed, **options)
    acc = est.accumulator(problem, design, {"y": (1,)})
    for block in (design.block(k) for k in (blocks if blocks is not None else range(design.n_blocks))):
        acc.update(block, {"y": fn(problem.values(block.unit))})
    return design, acc


@pytest.mark.parametrize("replicates", [1, 4])
def test_finalizing_a_slice_of_activations_at_a_time_changes_nothing(monkeypatch, replicates):
    """finalize_checkpoint works FINALIZE_COLUMNS activations at a time (memory); with slices of
    3 of 11 activations every map, S2 and the intervals included, equals one piece bit for bit."""
    import sa_frame.plugins.estimators.sobol as sobol

    problem = ishigami_problem()
    est = lookup("estimator", "sobol")
    design = est.design(problem, 64, 3, second_order=True, points_per_block=16, replicates=replicates)
    acc = est.accumulator(problem, design, {"y": (11,)})
    scale = torch.linspace(-2.0, 2.0, 11, dtype=torch.float64)
    for block in design:
        y = ishigami(problem.values(block.unit)).reshape(-1, 1)
        acc.update(block, {"y": y * scale + torch.sin(y * scale)})
    whole = acc.finalize()["y"]
    monkeypatch.setattr(sobol, "FINALIZE_COLUMNS", 3)
    sliced = acc.finalize()["y"]
    assert set(sliced) == set(whole) and {"S2", "S1_conf", "ST_conf"} <= set(whole)
    assert ("S2_conf" in whole) == (replicates > 1)  # the jackknife gives S2 an interval, batch means do not
    for key in whole:
        np.testing.assert_array_equal(sliced[key], whole[key], err_msg=key)
    assert np.isfinite(whole["S2"][0, 1]).all() and whole["S2"].shape == (3, 3, 11)


def test_merge_of_two_halves_equals_one_run():
    problem = ishigami_problem()
    design, full = _run(problem, ishigami, 256, 1, points_per_block=16)
    _, even = _run(problem, ishigami, 256, 1, blocks=range(0, design.n_blocks, 2), points_per_block=16)
    _, odd = _run(problem, ishigami, 256, 1, blocks=range(1, design.n_blocks, 2), points_per_block=16)
    odd.merge(even)  # different shifts: exercises the exact shift conversion
    a, b = full.finalize()["y"], odd.finalize()["y"]
    for key in ("S1", "ST", "S2", "S1_conf", "ST_conf", "mean", "var"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, atol=1e-13)


def test_resume_from_state_is_bitwise_identical():
    problem = ishigami_problem()
    design, full = _run(problem, ishigami, 128, 2, points_per_block=8)
    _, first = _run(problem, ishigami, 128, 2, blocks=range(5), points_per_block=8)
    est = lookup("estimator", "sobol")
    resumed = est.accumulator(problem, design, {"y": (1,)})
    resumed.load_state({k: v.clone() for k, v in first.state().items()})
    for k in range(5, design.n_blocks):
        block = design.block(k)
        resumed.update(block, {"y": ishigami(problem.values(block.unit))})
    a, b = full.finalize()["y"], resumed.finalize()["y"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_vectorised_over_many_outputs_and_checkpoints():
    problem = unit_problem(3)
    est = lookup("estimator", "sobol")
    design = est.design(problem, 64, 0, replicates=1)  # one 64-point net: ST of a linear x1 near 1
    acc = est.accumulator(problem, design, {"conv": (2, 3, 3), "fc": (5,)})
    w = torch.linspace(0.5, 2.0, 18, dtype=torch.float64).reshape(2, 3, 3)
    for block in design:
        x = problem.values(block.unit)
        acc.update(block, {"conv": x[:, 0, None, None, None] * w, "fc": x @ torch.ones(3, 5, dtype=torch.float64)})
    res = acc.finalize()
    assert res["conv"]["S1"].shape == (3, 2, 3, 3) and res["conv"]["S2"].shape == (3, 3, 2, 3, 3)
    assert res["fc"]["S1"].shape == (3, 5)
    # conv depends on x1 only: ST of x2, x3 is exactly 0 (AB rows repeat A), and every
    # activation, a scaled copy of x1, has the same indices (scale invariance)
    np.testing.assert_array_equal(res["conv"]["ST"][1:], 0.0)
    for key in ("S1", "ST"):
        np.testing.assert_allclose(res["conv"][key][0], res["conv"][key][0, 0, 0, 0], rtol=1e-12)
    assert abs(res["conv"]["ST"][0, 0, 0, 0] - 1) < 0.1
    np.testing.assert_allclose(res["fc"]["ST"], 1 / 3 * np.ones((3, 5)), atol=0.1)  # additive: 1/3 each


def test_zero_variance_and_nonfinite_outputs():
    problem = unit_problem(2)

    def fn(x):
        y = torch.stack([x[:, 0], torch.full_like(x[:, 0], 3.0), x[:, 1]], 1)
        y[::37, 2] = float("nan")
        return y

    res = sa_frame.estimate(problem, fn, "sobol", n=64, seed=0)
    assert res["zero_variance"].tolist() == [0, 1, 0]
    assert np.all(res["S1"][:, 1] == 0) and np.all(res["ST"][:, 1] == 0)
    s2 = res["S2"][..., 1]  # a flat output: 0 above the diagonal, NaN elsewhere (as for every output)
    assert s2[0, 1] == 0 and np.isnan(s2[1, 0]) and np.isnan(np.diag(s2)).all()
    assert np.all(np.isfinite(res["S1"][:, 2])) and res["nonfinite"][2] > 0 and res["nonfinite"][0] == 0
    assert res["n_points"][2] < 64 and res["n_points"][0] == 64
    np.testing.assert_allclose(res["ST"][:, 2], [0, 1], atol=0.05)


def test_bad_inputs():
    problem = unit_problem(2)
    with pytest.raises(UsageError, match="power of two.*use 512 or 1024"):
        sa_frame.estimate(problem, lambda x: x[:, 0], "sobol", n=1000)
    with pytest.raises(UsageError, match="not a multiple of 8"):
        sa_frame.sobol_from_outputs(np.zeros(13), n_groups=3, second_order=True)
    with pytest.raises(UsageError, match="unknown estimator 'sobl' \\(did you mean 'sobol'"):
        sa_frame.estimate(problem, lambda x: x[:, 0], "sobl", n=8)
    with pytest.raises(UsageError, match="unknown options"):
        sa_frame.estimate(problem, lambda x: x[:, 0], "sobol", n=8, n_inner=3)
    dependent = sa_frame.Problem({"x": sa_frame.MultivariateNormal([0, 0], np.eye(2), ["a", "b"])})
    with pytest.raises(UsageError, match="independent groups"):
        sa_frame.estimate(dependent, lambda x: x[:, 0], "sobol", n=8)


def test_nonfinite_base_points_are_left_out_exactly():
    """An output's base points with a NaN/inf in any row are dropped for that output only: the
    indices equal those of the same outputs with those base points removed."""
    d, n, rpp = 3, 64, 5
    rng = np.random.default_rng(7)
    y = rng.normal(size=(n * rpp, 2)) + np.array([0.0, 5.0])
    bad_points = [3, 17, 40]
    for point, row in zip(bad_points, (0, 2, 4)):  # A, an AB_j and B rows
        y[point * rpp + row, 1] = [np.nan, np.inf, -np.inf][bad_points.index(point)]
    res = sa_frame.sobol_from_outputs(y, n_groups=d, second_order=False)
    keep = np.setdiff1d(np.arange(n), bad_points)
    clean = sa_frame.sobol_from_outputs(y.reshape(n, rpp, 2)[keep, :, 1].reshape(-1), n_groups=d, second_order=False)
    for key in ("S1", "ST"):
        np.testing.assert_allclose(res[key][:, 1], clean[key][:, 0], rtol=1e-10)
    assert res["nonfinite"].tolist() == [0, 3] and res["n_points"].tolist() == [n, n - 3]
    np.testing.assert_allclose(res["S1"][:, 0], sa_frame.sobol_from_outputs(y[:, 0], d, False)["S1"][:, 0], rtol=1e-12)


@pytest.mark.parametrize("second", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_kernel_state_equals_torch_path(second, dtype, monkeypatch):
    """The fused CPU kernel and the torch Gram path (the one GPUs run) build the same state:
    whole units and a tail, columns beyond one kernel block, NaN/inf in some base points,
    an offset that the shift must absorb, several calls per block."""
    from sa_frame.plugins.estimators._saltelli_design import SaltelliDesign
    from sa_frame.plugins.estimators._sobol_cpu_kernel import BLOCK
    from sa_frame.plugins.estimators.sobol import SobolAccumulator

    d, m = 4, BLOCK + 77
    problem = unit_problem(d)
    est = lookup("estimator", "sobol")
    design = SaltelliDesign(problem, 53, 0, second_order=second, points_per_block=48,  # 48 + 5: a tail unit
                            require_power_of_two=False)
    rng = np.random.default_rng(3)
    outputs = []
    for block in design:
        y = rng.normal(size=(block.n_rows, m)) * rng.uniform(0.1, 3, m) + 1e3
        y[rng.integers(0, block.n_rows, 6), rng.integers(0, m, 6)] = [np.nan, np.inf, -np.inf, np.nan, 1.0, np.inf]
        outputs.append((block, torch.from_numpy(y).to(dtype)))
    states = []
    threads = torch.get_num_threads()
    for kernel, n_threads in ((True, 2), (False, threads), (True, 1)):
        monkeypatch.setattr(SobolAccumulator, "cpu_kernel", kernel)
        torch.set_num_threads(n_threads)
        try:
            acc = est.accumulator(problem, design, {"y": (m,)})
            for block, y in outputs:
                unit = design.unit_rows
                for r0 in range(0, block.n_rows, 2 * unit):  # row ranges, as the pipeline sends them
                    rows = slice(r0, min(r0 + 2 * unit, block.n_rows))
                    acc.update(block, {"y": y[rows]}, rows=rows)
        finally:
            torch.set_num_threads(threads)
        states.append(acc.state())
    kernel_state, torch_state, one_thread = states
    for key, value in kernel_state.items():  # columns split between threads: the same arithmetic
        torch.testing.assert_close(one_thread[key], value, rtol=0, atol=0)
    assert kernel_state.keys() == torch_state.keys()
    assert kernel_state["y/nonfinite"].sum() > 0 and (kernel_state["y/n"] < 53).any()
    for key, value in torch_state.items():
        scale = value.abs().max().clamp(min=1)
        np.testing.assert_allclose(kernel_state[key], value, rtol=1e-11, atol=1e-11 * float(scale), err_msg=key)
