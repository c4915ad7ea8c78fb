"""Variance/CoV and the contrast statistics against numpy and scipy on the same data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import sa_frame
from sa_frame import Categorical, Problem, SpikeAndSlab, Switch, Uniform, UsageError
from sa_frame.core.registry import lookup
from tests.functions import ishigami, ishigami_problem


def _outputs(problem, fn, design):
    return [(b, fn(problem.values(b.unit, b.known))) for b in design]


def test_variance_equals_numpy_on_the_same_rows():
    problem = ishigami_problem()
    est = lookup("estimator", "variance")
    design = est.design(problem, 1000, seed=3, rows_per_block=128)

    def fn(x):
        y = torch.cat([ishigami(x), x[:, :1] * 1e3 + 5e6], 1)
        y[::97, 0] = float("nan")
        y[5, 1] = float("inf")
        return y

    acc = est.accumulator(problem, design, {"y": (2,)})
    rows = []
    for block, y in _outputs(problem, fn, design):
        acc.update(block, {"y": y})
        rows.append(y)
    res = acc.finalize()["y"]
    y = torch.cat(rows).numpy()
    finite = np.where(np.isfinite(y), y, np.nan)
    np.testing.assert_allclose(res["mean"], np.nanmean(finite, 0), rtol=1e-12)
    np.testing.assert_allclose(res["var"], np.nanvar(finite, 0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(res["cov"], np.sqrt(res["var"]) / (np.abs(res["mean"]) + 1e-5), rtol=1e-14)
    assert res["nonfinite"].tolist() == (~np.isfinite(y)).sum(0).tolist() == [16, 8]  # 2 NaN, 1 inf per block
    assert res["n"].tolist() == [1000 - 16, 1000 - 8]
    # merge of disjoint halves (Chan) equals the single run to round-off
    halves = [est.accumulator(problem, design, {"y": (2,)}) for _ in range(2)]
    for i, (block, y) in enumerate(_outputs(problem, fn, design)):
        halves[i % 2].update(block, {"y": y})
    halves[0].merge(halves[1])
    merged = halves[0].finalize()["y"]
    for key in ("mean", "var", "cov", "n"):
        np.testing.assert_allclose(merged[key], res[key], rtol=1e-12)


def _contrast_problem():
    return Problem({
        "shift": SpikeAndSlab({"delta": Uniform(0.5, 1.5)}, {"delta": 0.0}),
        "flip": Switch(0.5),
        "context": Uniform(0.0, 1.0),
    })


def _contrast_fn(x):
    # four activations: shifted by `shift`, negated by `flip`, untouched, and noisy
    base = x[:, 3]
    noise = torch.sin(1e4 * (x[:, 1] + 3 * x[:, 3]))
    sign = 1 - 2 * x[:, 2]
    return torch.stack([base + x[:, 1], sign * base, base, base + 0.3 * noise * x[:, 0]], 1)


def _differences(problem, design, y_blocks):
    """Paired differences recomputed in the test from the design's row layout."""
    per_treatment = {g: [] for g in design.treatment_names}
    for y in y_blocks:
        y = y.reshape(-1, design.unit_rows, y.shape[-1])
        row = 1
        for g, rows in zip(design.treatment_names, design.rows_per_treatment):
            per_treatment[g].append((y[:, row:row + rows] - y[:, :1]).reshape(-1, y.shape[-1]))
            row += rows
    return {g: torch.cat(v).numpy() for g, v in per_treatment.items()}


def test_contrast_design_layout():
    problem = _contrast_problem()
    design = lookup("estimator", "contrast").design(problem, 5, seed=0, n_inner=3)
    assert design.treatment_names == ["shift", "flip"] and design.unit_rows == 1 + 3 + 1
    x = problem.values(design.block(0).unit).reshape(5, 5, 4)
    assert torch.all(x[:, 0, 0] == 0) and torch.all(x[:, 0, 2] == 0)  # original: everything off
    assert torch.all(x[:, 1:4, 0] == 1) and torch.all(x[:, 1:4, 2] == 0)  # shift alone, 3 draws
    assert torch.all(x[:, 4, 0] == 0) and torch.all(x[:, 4, 2] == 1)  # flip alone
    assert torch.all(x[:, :, 3] == x[:, :1, 3])  # context shared by the pair


def test_contrast_exact_equals_scipy():
    problem = _contrast_problem()
    est = lookup("estimator", "contrast")
    design = est.design(problem, 60, seed=1, n_inner=4, outer_per_block=16, mode="exact")
    acc = est.accumulator(problem, design, {"y": (4,)})
    ys = []
    for block, y in _outputs(problem, _contrast_fn, design):
        acc.update(block, {"y": y})
        ys.append(y)
    res = acc.finalize()["y"]
    diffs = _differences(problem, design, ys)
    all_p = []
    for g, name in enumerate(design.treatment_names):
        d = diffs[name]
        ref = stats.wilcoxon(d, zero_method="zsplit", correction=True, method="asymptotic", axis=0)
        np.testing.assert_allclose(res["pvalue"][g], ref.pvalue, rtol=1e-10)
        # rank-biserial from first principles (ranks of |d|, zeros split)
        for c in range(4):
            r = stats.rankdata(np.abs(d[:, c]))
            r_plus = r[d[:, c] > 0].sum() + 0.5 * r[d[:, c] == 0].sum()
            total = len(d) * (len(d) + 1) / 2
            assert res["rank_biserial"][g, c] == pytest.approx((2 * r_plus - total) / total, abs=1e-12)
        # point-biserial = Pearson correlation of the group label with the values
        y = torch.cat(ys).reshape(-1, design.unit_rows, 4).numpy()
        rows = design.rows_per_treatment[g]
        start = 1 + sum(design.rows_per_treatment[:g])
        for c in range(4):
            x0, x1 = y[:, 0, c], y[:, start:start + rows, c].ravel()
            ref_pb = stats.pointbiserialr(np.r_[np.zeros(len(x0)), np.ones(len(x1))], np.r_[x0, x1]).statistic
            if np.isfinite(ref_pb):
                assert res["point_biserial"][g, c] == pytest.approx(ref_pb, abs=1e-9)
        all_p.append(res["pvalue"][g])
    # obvious effects come out as such
    assert res["rank_biserial"][0, 0] == pytest.approx(1.0) and res["rank_biserial"][0, 2] == 0
    assert res["pvalue"][0, 0] < 1e-10 and res["pvalue"][0, 2] == 1.0
    # Benjamini-Yekutieli over all activations, per treatment
    for g in range(2):
        np.testing.assert_allclose(res["pvalue_by"][g], stats.false_discovery_control(all_p[g], method="by"))


def test_contrast_binned_close_to_exact():
    """The streaming (binned-rank) mode stays within 0.01 of the exact rank-biserial."""
    problem = Problem({"shift": SpikeAndSlab({"delta": Uniform(-0.3, 1.0)}, {"delta": 0.0}),
                       "context": Categorical(50)})
    weights = torch.linspace(-1, 1, 64, dtype=torch.float64)

    def fn(x):  # 64 activations: effects of every size, and pair-level noise that mixes the
        # signs of the differences at every magnitude (so that ties within a bin matter)
        context = torch.sin(1e3 * x[:, 2:3] + 7 * weights)
        return context + weights * x[:, 1:2] + 0.5 * torch.sin(1e3 * x[:, 1:2] + 7 * weights)

    est = lookup("estimator", "contrast")
    results = {}
    for mode in ("exact", "binned"):
        design = est.design(problem, 400, seed=2, n_inner=5, outer_per_block=64, mode=mode)
        acc = est.accumulator(problem, design, {"y": (64,)})
        for block, y in _outputs(problem, fn, design):
            acc.update(block, {"y": y})
        results[mode] = acc.finalize()["y"]
    err = np.abs(results["binned"]["rank_biserial"] - results["exact"]["rank_biserial"])
    assert err.max() <= 0.01, err.max()
    assert err.max() > 0  # the bins do lose something: the comparison is not vacuous
    p_exact, p_binned = results["exact"]["pvalue"], results["binned"]["pvalue"]
    ok = (p_exact > 1e-250) & (p_binned > 1e-250)
    assert np.all(np.maximum(p_exact[~ok], p_binned[~ok]) < 1e-200)  # near float64 underflow together
    log_err = np.abs(np.log10(p_binned[ok]) - np.log10(p_exact[ok]))
    assert np.all(log_err <= 0.02 * np.abs(np.log10(p_exact[ok])) + 0.05), log_err.max()
    assert np.abs(results["binned"]["rank_biserial"]).max() > 0.5  # there are real effects to rank
    np.testing.assert_allclose(results["binned"]["point_biserial"], results["exact"]["point_biserial"], rtol=1e-12)
    assert np.array_equal(results["binned"]["n_pairs"], results["exact"]["n_pairs"])


def test_binning_in_slices_of_activations_changes_nothing(monkeypatch):
    """`_bin` and the statistics take the activations a slice at a time (memory); with slices of
    one to seven columns the counts and every map equal the run in one piece bit for bit."""
    import sa_frame.plugins.estimators.contrast as contrast

    problem = _contrast_problem()
    est = lookup("estimator", "contrast")

    def run():
        design = est.design(problem, 96, seed=4, n_inner=3, outer_per_block=16, mode="binned")
        acc = est.accumulator(problem, design, {"y": (4,), "z": (40,)})
        for block, y in _outputs(problem, lambda x: torch.cat([_contrast_fn(x), torch.sin(
                x[:, 1:2] + 9 * x[:, 3:4] * torch.arange(40.0, dtype=x.dtype))], 1), design):
            acc.update(block, {"y": y[:, :4], "z": y[:, 4:]})
        return {k: v.clone() for k, v in acc.stats["z"].items()}, acc.finalize()

    whole_state, whole = run()
    # 16 outer samples: 48 differences per block for `shift`, 16 for `flip` -> slices of 2 and 7
    # columns in `_bin`; slices of 3 in the statistics (66 bins)
    monkeypatch.setattr(contrast, "BIN_CHUNK", 7 * 16)
    monkeypatch.setattr(contrast, "STATS_CHUNK", 3 * 66)
    sliced_state, sliced = run()
    for key in ("pos", "neg", "zero", "edges"):
        assert torch.equal(whole_state[key], sliced_state[key]), key
    assert whole_state["pos"].sum() > 0
    for name in whole:
        for key in whole[name]:
            np.testing.assert_array_equal(whole[name][key], sliced[name][key])


def test_contrast_needs_switched_treatments():
    with pytest.raises(UsageError, match="switched treatments"):
        sa_frame.estimate(ishigami_problem(), ishigami, "contrast", n=4)
    with pytest.raises(UsageError, match="mode must be one of"):
        sa_frame.estimate(_contrast_problem(), _contrast_fn, "contrast", n=4, mode="fast")


def test_contrast_keeps_the_ties_of_float64_outputs():
    """Decimal outputs whose differences tie only in the outputs' own rounding: the ranks (and so
    the Wilcoxon p and the rank-biserial) equal scipy's on y1 - y0 exactly."""
    problem = Problem({"on": Switch(0.5), "level": Categorical(10)})
    steps = [(1.1, 0.3, 0.2), (0.1, 0.3, 0.0), (0.1, 0.2, 0.0), (0.01, 0.03, 0.0)]

    def fn(x):  # y = a * level + b * on + c, decimal steps
        return torch.stack([a * x[:, 1] + b * x[:, 0] + c for a, b, c in steps], 1)

    est = lookup("estimator", "contrast")
    design = est.design(problem, 40, seed=4, n_inner=1, mode="exact")
    acc = est.accumulator(problem, design, {"y": (len(steps),)})
    ys = []
    for block, y in _outputs(problem, fn, design):
        acc.update(block, {"y": y})
        ys.append(y)
    res = acc.finalize()["y"]
    y = torch.cat(ys).reshape(-1, design.unit_rows, len(steps)).numpy()
    d = y[:, 1] - y[:, 0]  # the paired differences as scipy takes them
    assert len(np.unique(d[:, 0])) < len(d)  # there are ties, and rounding-level distinct values
    ref = stats.wilcoxon(d, zero_method="zsplit", correction=True, method="asymptotic", axis=0)
    np.testing.assert_allclose(res["pvalue"][0], ref.pvalue, rtol=1e-12)
    for c in range(len(steps)):
        r = stats.rankdata(np.abs(d[:, c]))
        r_plus = r[d[:, c] > 0].sum() + 0.5 * r[d[:, c] == 0].sum()
        total = len(d) * (len(d) + 1) / 2
        assert res["rank_biserial"][0, c] == pytest.approx((2 * r_plus - total) / total, abs=1e-12)


def _state_bytes(n: int, mode: str | None) -> int:
    problem = _contrast_problem()
    est = lookup("estimator", "contrast")
    design = est.design(problem, n, seed=3, n_inner=4, **({"mode": mode} if mode else {}))
    acc = est.accumulator(problem, design, {"y": (4,)})
    for block, y in _outputs(problem, _contrast_fn, design):
        acc.update(block, {"y": y})
    return sum(t.numel() * t.element_size() for t in acc.state().values())


def test_contrast_default_memory_does_not_grow_with_n():
    """Binned by default: the state (all the run keeps) is the same at n and 4n; exact mode's grows."""
    assert lookup("estimator", "contrast").options({}).mode == "binned"
    small, large = _state_bytes(64, None), _state_bytes(256, None)
    assert large <= 1.1 * small and large == small
    assert _state_bytes(256, "exact") > 3 * _state_bytes(64, "exact")  # what the default avoids
