"""Sobol confidence intervals: randomised-QMC replicates (jackknife, Student t on R - 1),
batch means of a one-replicate design (Student t on the batches), their record in the
results, and coverage of the exact Ishigami indices."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from SALib.analyze import sobol as salib_sobol
from scipy.stats import qmc
from scipy.stats import t as student_t

import sa_frame
from sa_frame import UsageError
from sa_frame.core.registry import lookup
from sa_frame.results.store import ResultsFile
from tests.cli_runner import cli
from tests.functions import ishigami, ishigami_problem


def _rows_and_outputs(problem, fn, n, seed, **options):
    """Every design row in order and fn's outputs on them (SALib's row order per base point)."""
    design = lookup("estimator", "sobol").design(problem, n, seed, **options)
    rows = torch.cat([b.unit for b in design])
    return design, rows, fn(problem.values(rows)).numpy()[:, 0]


def _salib(y, d, second=True):
    problem = {"num_vars": d, "names": [f"x{i}" for i in range(d)], "bounds": [[0, 1]] * d}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return salib_sobol.analyze(problem, y, calc_second_order=second, num_resamples=2)


def test_replicates_are_independent_scramblings():
    """Replicate r holds points [rN/R, (r+1)N/R) of its own scrambled Sobol sequence, seeded
    by (seed, r); blocks never straddle two replicates."""
    problem = ishigami_problem()
    design, rows, _ = _rows_and_outputs(problem, ishigami, 64, 3, replicates=4, points_per_block=8)
    per = rows.numpy().reshape(4, 16, 8, 3)  # replicate, point, row (A, AB_1..3, BA_1..3, B), column
    for r in range(4):
        base = qmc.Sobol(6, scramble=True, seed=np.random.default_rng([3, r])).random(16)
        np.testing.assert_array_equal(per[r, :, 0], base[:, :3])  # A
        np.testing.assert_array_equal(per[r, :, -1], base[:, 3:])  # B
    assert [design.block(k).info["replicate"] for k in range(design.n_blocks)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_point_estimates_with_replicates_equal_salib_on_the_same_rows():
    """The point estimate stays the full-sample estimator over all replicates' rows."""
    _, _, y = _rows_and_outputs(ishigami_problem(), ishigami, 256, 5, replicates=8)
    res = sa_frame.estimate(ishigami_problem(), ishigami, "sobol", n=256, seed=5, replicates=8)
    ref = _salib(y, 3)
    for key in ("S1", "ST", "S2"):
        np.testing.assert_allclose(res[key][..., 0], ref[key], rtol=1e-10, atol=1e-13)


def test_replicate_intervals_are_the_jackknife_of_salib_estimates():
    """S1_conf, ST_conf and S2_conf = t(R - 1) x the delete-one-replicate jackknife standard
    error, each left-out estimate computed by SALib on the remaining rows."""
    r, n, d = 4, 128, 3
    _, _, y = _rows_and_outputs(ishigami_problem(), ishigami, n, 2, replicates=r)
    res = sa_frame.estimate(ishigami_problem(), ishigami, "sobol", n=n, seed=2, replicates=r)
    per = y.reshape(r, -1)
    t = student_t.ppf(0.975, r - 1)
    loo = [_salib(np.delete(per, i, axis=0).ravel(), d) for i in range(r)]
    for key in ("S1", "ST", "S2"):
        theta = np.array([x[key] for x in loo])
        jack = np.sqrt((r - 1) / r * ((theta - theta.mean(0)) ** 2).sum(0))
        np.testing.assert_allclose(res[f"{key}_conf"][..., 0], t * jack, rtol=1e-9, atol=1e-13)
    assert res["conf_dof"].tolist() == [r - 1]


def test_batch_means_intervals_use_student_t_on_the_batches():
    """One replicate: batch means over units of 16 base points, Student t on units - 1,
    checked against a numpy computation from the outputs."""
    d, n = 3, 96  # 6 units of 16 points
    rng = np.random.default_rng(4)
    y = rng.normal(size=(n * (d + 2),)) + 10 * np.repeat(rng.normal(size=n), d + 2)
    res = sa_frame.sobol_from_outputs(y, n_groups=d, second_order=False)
    blocks = y.reshape(n, d + 2)
    a, b, ab = blocks[:, 0], blocks[:, -1], blocks[:, 1:d + 1]
    m = y.mean()
    var = np.concatenate([a, b]).var()
    x = (b - m)[:, None] * (ab - a[:, None])  # per-point S1 terms
    tt = 0.5 * (a[:, None] - ab) ** 2  # per-point ST terms
    t = student_t.ppf(0.975, n // 16 - 1)
    for key, terms in (("S1_conf", x), ("ST_conf", tt)):
        batch = terms.reshape(n // 16, 16, d).sum(1)
        sd = np.sqrt(((batch - 16 * terms.mean(0)) ** 2).sum(0) / (n - 16))
        np.testing.assert_allclose(res[key][:, 0], t * sd / math.sqrt(n) / var, rtol=1e-10)
    assert res["conf_dof"].tolist() == [n // 16 - 1]


def test_replicate_intervals_cover_the_exact_ishigami_indices(analytic):
    """200 seeds at n = 512 (R = 8): every S1 and ST interval covers its exact value in
    92-98% of the runs (the binomial band around 95%)."""
    ref = analytic["ishigami"]
    hits = []
    for seed in range(200):
        res = sa_frame.estimate(ishigami_problem(), ishigami, "sobol", n=512, seed=seed, second_order=False)
        hits.append([np.abs(res[k][:, 0] - ref[k]) <= res[f"{k}_conf"][:, 0] for k in ("S1", "ST")])
    coverage = np.mean(hits, axis=0)
    assert np.all((coverage >= 0.92) & (coverage <= 0.98)), coverage


def test_interval_record_in_results_and_show(tmp_path):
    """The results say how the intervals were made; too few batches are a warning on the
    console and in `show`."""
    out = tmp_path / "r.h5"
    code, _, err = cli("run", "--quick", "--out", out, "-o", "replicates=1", "--quiet")
    assert code == 0, err
    assert "only 4 batches back the intervals" in err
    record = ResultsFile(out).attrs()["intervals"]
    assert record["method"] == "batch-means" and record["dof"] == 3 and record["level"] == 0.95
    code, shown, _ = cli("show", out)
    assert "95% batch-means" in shown and "warning: only 4 batches" in " ".join(shown.split())
    maps = ResultsFile(out).checkpoint_maps()
    assert all(np.all(stats["conf_dof"] == 3) for stats in maps.values())
    default = tmp_path / "d.h5"
    assert cli("run", "--quick", "--out", default, "--quiet")[0] == 0
    record = ResultsFile(default).attrs()["intervals"]
    assert record["method"] == "replicates" and record["dof"] == 7 and "warning" not in record


@pytest.mark.parametrize("replicates, match", [(3, "replicates must be a power of two"),
                                                (128, "replicates must be a power of two that divides n = 64")])
def test_bad_replicates(replicates, match):
    with pytest.raises(UsageError, match=match):
        sa_frame.estimate(ishigami_problem(), ishigami, "sobol", n=64, replicates=replicates)
