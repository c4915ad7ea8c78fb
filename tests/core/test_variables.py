"""Property tests of the SA variables: ranges, monotone maps, Lehmer bijection,
spike-and-slab semantics and exact conditional sampling of the normal block."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sa_frame import (
    Categorical,
    Constant,
    IntUniform,
    LogUniform,
    MultivariateNormal,
    Permutation,
    Problem,
    SpikeAndSlab,
    Switch,
    Uniform,
    UsageError,
)

units = st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=64)
bounds = st.tuples(st.floats(-1e3, 1e3), st.floats(1e-3, 1e3)).map(lambda t: (t[0], t[0] + t[1]))


def _sorted(u):
    return torch.tensor(sorted(u), dtype=torch.float64)


@given(units, bounds)
def test_uniform_in_range_and_monotone(u, b):
    x = Uniform(*b).from_unit(_sorted(u))
    assert bool((x >= b[0]).all()) and bool((x <= b[1]).all())
    assert bool((torch.diff(x) >= 0).all())


@given(units, st.floats(1e-3, 10.0), st.floats(1.01, 100.0))
def test_log_uniform_in_range_and_monotone(u, low, ratio):
    x = LogUniform(low, low * ratio).from_unit(_sorted(u))
    assert bool((x >= low * (1 - 1e-12)).all()) and bool((x <= low * ratio * (1 + 1e-12)).all())
    assert bool((torch.diff(x) >= 0).all())


@given(units, st.integers(-50, 50), st.integers(0, 60))
def test_int_uniform_inclusive_integers_monotone(u, low, width):
    x = IntUniform(low, low + width).from_unit(_sorted(u))
    assert bool((x == torch.round(x)).all())
    assert bool((x >= low).all()) and bool((x <= low + width).all())
    assert bool((torch.diff(x) >= 0).all())


def test_int_uniform_hits_both_bounds_equally():
    u = (torch.arange(10_000, dtype=torch.float64) + 0.5) / 10_000
    x = IntUniform(-44, 44).from_unit(u)
    counts = torch.bincount((x + 44).long())
    assert counts.numel() == 89 and int(counts.min()) >= 112 and int(counts.max()) <= 113


@given(units, st.floats(0.01, 0.99))
def test_switch_is_bernoulli_p_and_monotone(u, p):
    x = Switch(p).from_unit(_sorted(u))
    assert set(x.tolist()) <= {0.0, 1.0}
    assert bool((torch.diff(x) >= 0).all())
    grid = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    assert abs(float(Switch(p).from_unit(grid).mean()) - p) < 1e-4


@given(units, st.integers(1, 1000))
def test_categorical_split_reconstructs_u(u, n):
    c = Categorical(n)
    idx, within = c.split(torch.tensor(u, dtype=torch.float64))
    assert bool((idx >= 0).all()) and bool((idx <= n - 1).all())
    assert bool((within >= 0).all()) and bool((within < 1).all())
    assert torch.allclose((idx + within) / n, torch.tensor(u, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_permutation_lehmer_is_a_bijection(n):
    perm = Permutation(n)
    index = torch.arange(math.factorial(n))
    orders = perm.decode(index)
    assert len({tuple(o) for o in orders.tolist()}) == math.factorial(n)
    assert all(sorted(o) == list(range(n)) for o in orders.tolist())
    assert torch.equal(perm.encode(orders), index)
    assert orders[0].tolist() == list(range(n))  # index 0 = identity order
    # lexicographic order, as the factorial number system
    assert [tuple(o) for o in orders.tolist()] == sorted(tuple(o) for o in orders.tolist())


@given(st.integers(2, 18), st.data())
@settings(max_examples=30)
def test_permutation_large_n_roundtrip(n, data):
    perm = Permutation(n)
    index = torch.tensor(data.draw(st.lists(st.integers(0, perm.count - 1), min_size=1, max_size=8)))
    assert torch.equal(perm.encode(perm.decode(index)), index)


def test_permutation_from_unit_covers_range_monotone():
    x = Permutation(5).from_unit(torch.linspace(0, 1, 1001, dtype=torch.float64))
    assert x.min() == 0 and x.max() == 119 and bool((torch.diff(x) >= 0).all())


def test_constant():
    assert torch.equal(Constant(2.5).from_unit(torch.rand(4, dtype=torch.float64)), torch.full((4,), 2.5,
                                                                                            dtype=torch.float64))


def test_variable_check_names_value_and_range():
    with pytest.raises(UsageError, match=r"sigma.*3.*outside its range \[0.1, 2\]"):
        Uniform(0.1, 2.0).check(torch.tensor([1.0, 3.0]), "sigma")


def test_spike_and_slab_off_gives_identity_on_gives_slab():
    block = SpikeAndSlab({"a": Uniform(2.0, 3.0), "b": IntUniform(0, 5)}, identity={"a": 1.0, "b": 0.0}, p=0.25)
    u = torch.rand(20_000, 3, dtype=torch.float64)
    x = block.values(u)
    on = x[:, 0] == 1
    assert abs(float(on.double().mean()) - 0.25) < 0.015
    assert bool((x[~on, 1] == 1.0).all()) and bool((x[~on, 2] == 0.0).all())
    assert bool((x[on, 1] >= 2).all()) and bool((x[on, 2] >= 0).all())


def test_spike_and_slab_conditional_is_exact():
    block = SpikeAndSlab({"a": Uniform(2.0, 3.0)}, identity={"a": 1.0}, p=0.5)
    n = 40_000
    # a known parameter with an unknown switch: the switch follows the parameter
    u = torch.rand(n, 2, dtype=torch.float64)
    known = torch.tensor([False, True]).expand(n, 2)
    x = block.values(u, known)
    assert bool(((x[:, 1] != 1.0) == (x[:, 0] == 1.0)).all())
    assert abs(float((x[:, 0] == 1).double().mean()) - 0.5) < 0.015  # marginal law kept
    on_values = x[x[:, 0] == 1, 1]
    assert abs(float(on_values.mean()) - 2.5) < 0.01  # slab law kept after the rescaling
    # a known switch: unknown parameters come from the slab or sit at identity
    u2 = u.clone()
    u2[:, 0] = 0.9
    x2 = block.values(u2, torch.tensor([True, False]).expand(n, 2))
    assert bool((x2[:, 0] == 1).all()) and bool((x2[:, 1] >= 2).all())


def _random_spd(rng, k):
    a = rng.normal(size=(k, k))
    return a @ a.T + k * np.eye(k) * 0.3


@given(st.integers(2, 4), st.integers(0, 10_000), st.data())
@settings(max_examples=10, deadline=None)
def test_normal_block_conditional_moments(k, seed, data):
    rng = np.random.default_rng(seed)
    cov = _random_spd(rng, k)
    mean = rng.normal(size=k)
    mask = data.draw(st.lists(st.booleans(), min_size=k, max_size=k).filter(lambda m: 0 < sum(m) < k))
    block = MultivariateNormal(mean, cov, [f"x{i}" for i in range(k)])
    n = 60_000
    torch.manual_seed(seed)
    u = torch.rand(n, k, dtype=torch.float64)
    u[:, torch.tensor(mask)] = torch.rand(1, k, dtype=torch.float64)[:, torch.tensor(mask)]  # fixed known part
    x = block.values(u, torch.tensor(mask).expand(n, k)).numpy()
    kn, un = np.array(mask), ~np.array(mask)
    x_known = x[0, kn]
    assert np.allclose(x[:, kn], x_known)  # known values are the same on every row
    # exact conditional law through the precision matrix (an independent formula)
    prec = np.linalg.inv(cov)
    cond_cov = np.linalg.inv(prec[np.ix_(un, un)])
    cond_mean = mean[un] - cond_cov @ prec[np.ix_(un, kn)] @ (x_known - mean[kn])
    sample = x[:, un]
    se = np.sqrt(np.diag(cond_cov) / n)
    assert np.all(np.abs(sample.mean(0) - cond_mean) < 5 * se)
    assert np.allclose(np.cov(sample.T).reshape(cond_cov.shape), cond_cov, rtol=0.05, atol=0.02 * cond_cov.max())


def test_normal_block_joint_moments():
    cov = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.8], [0.0, 1.8, 4.0]])
    block = MultivariateNormal([1.0, 2.0, 3.0], cov, ["x1", "x2", "x3"])
    x = block.values(torch.rand(200_000, 3, dtype=torch.float64)).numpy()
    assert np.allclose(x.mean(0), [1, 2, 3], atol=0.02)
    assert np.allclose(np.cov(x.T), cov, atol=0.04)


def test_normal_block_rejects_bad_covariance():
    with pytest.raises(UsageError, match="positive definite"):
        MultivariateNormal([0, 0], [[1, 2], [2, 1]], ["a", "b"])


def test_problem_groups_default_and_explicit():
    p = Problem({"x1": Uniform(0, 1), "x2": Uniform(0, 1), "x3": Uniform(0, 1)},
                groups={"g1": ["x1", "x3"], "g2": ["x2"]})
    assert p.names == ["x1", "x2", "x3"] and p.group_names == ["g1", "g2"]
    assert p.group_of_column.tolist() == [0, 1, 0]
    q = Problem({"erasing": SpikeAndSlab({"scale": Uniform(0.02, 0.33)}, {"scale": 0.0}),
                 "x": MultivariateNormal([0, 0], np.eye(2), ["a", "b"])})
    assert q.names == ["erasing.on", "erasing.scale", "a", "b"]
    assert q.group_names == ["erasing", "a", "b"] and not q.groups_independent


@pytest.mark.parametrize("groups, message", [
    ({"g": ["x1", "nope"]}, "nope"),
    ({"g": ["x1"], "h": ["x1", "x2"]}, "two groups"),
    ({"g": ["x1"]}, "not in any group"),
])
def test_problem_bad_groups(groups, message):
    with pytest.raises(UsageError, match=message):
        Problem({"x1": Uniform(0, 1), "x2": Uniform(0, 1)}, groups=groups)


def test_problem_values_shape_check():
    p = Problem({"x1": Uniform(0, 1)})
    with pytest.raises(UsageError, match=r"\(rows, 1\)"):
        p.values(torch.rand(3, 2))
