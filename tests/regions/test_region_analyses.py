"""The region analyses on planted scores: exact masking drops of a linear score, sensitivity-n
ordering, PIR statistics against a direct computation, region groups on the demo, and the
Captum baselines equal to the linear model's known attributions."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.stats

from sa_frame import ResultsFile
from tests.cli_runner import cli
from tests.plugins.known_regions import WEIGHTS, install

LINEAR = ["run", "--model", "ka-linear4", "--data", "ka-flat", "--estimator", "sbsa", "--regions", "grid:cells=2",
          "--per-class", "4", "--n", "128", "--quiet"]


@pytest.fixture(autouse=True)
def _plugins():
    install()


@pytest.fixture
def linear_run(tmp_path):
    out = tmp_path / "lin.h5"
    code, _, err = cli(*LINEAR, "--out", out)
    assert code == 0, err
    return out


def analysis(path, name):
    with h5py.File(path) as f:
        group = f[f"analyses/{name}"]
        return {k: group[k][()] for k in group if isinstance(group[k], h5py.Dataset)}


def test_masking_drops_equal_the_masked_regions_contributions(linear_run):
    code, out, err = cli("analyze", linear_run, "region-masking", "-o", "fraction=0.25", "-o", "rank_by=[ST,S1]")
    assert code == 0, err
    res = analysis(linear_run, "region-masking")
    # alpha = 1 -> masked 0 removes w_k: top by ST is the weight-4 cell, bottom the weight-1 cell
    np.testing.assert_allclose(res["drop_top"], 4.0, atol=1e-9)
    np.testing.assert_allclose(res["drop_bottom"], 1.0, atol=1e-9)
    np.testing.assert_allclose(res["base"], sum(WEIGHTS), atol=1e-12)
    assert "ST" in out and (linear_run.with_suffix(".masking.png")).stat().st_size > 10_000


def test_sensitivity_n_orders_st_above_random(linear_run):
    code, _, err = cli("analyze", linear_run, "sensitivity-n", "-o", "fractions=[0.25,0.5,0.75]", "-o", "subsets=60")
    assert code == 0, err
    res = analysis(linear_run, "sensitivity-n")
    assert res["correlation"].shape == (3, 3, 8)
    st, s1, random = res["mean"]
    assert np.all(st[:2] > 0.9) and np.all(s1[:2] > 0.9)  # ST ~ w^2 on a linear score: monotone, near linear
    assert np.all(st > random + 0.15)


def test_pearson_rows_equals_scipy():
    from sa_frame.plugins.regions.analyses import pearson_rows

    rng = np.random.default_rng(0)
    x, y = rng.random((3, 40)), rng.random((3, 40))
    np.testing.assert_allclose(pearson_rows(x, y), [scipy.stats.pearsonr(a, b)[0] for a, b in zip(x, y)], atol=1e-12)


def test_pir_statistics_match_a_direct_computation(linear_run):
    code, out, err = cli("analyze", linear_run, "pir")
    assert code == 0, err
    res = analysis(linear_run, "pir")
    with h5py.File(linear_run) as f:
        s1, st = f["checkpoints/score/S1"][()].astype(float), f["checkpoints/score/ST"][()].astype(float)
    pir = s1 / st
    np.testing.assert_allclose(res["pir"], pir, rtol=1e-12)
    assert res["fraction_gt1"] == pytest.approx(np.mean(pir > 1))
    assert res["mean_top20"] == pytest.approx(np.mean(pir[0]))  # top 20% of 4 cells: the weight-4 cell
    assert abs(res["mean_top20"] - 1) < 0.15 and abs(res["mean"] - 1) < 0.25  # additive: PIR = 1


def test_pir_trend_over_compared_files(linear_run, tmp_path):
    other = tmp_path / "prod.h5"
    code, _, err = cli("run", "--model", "ka-regions", "--data", "ka-flat", "--estimator", "sbsa", "--regions",
                       "grid:rows=1,cols=2", "--images", "1", "--n", "256", "--quiet",
                       "--out", other)
    assert code == 0, err
    code, _, err = cli("analyze", linear_run, "pir", "-o", f"compare=[{other}]", "-o", "labels=[linear,product]")
    assert code == 0, err
    with h5py.File(linear_run) as f:
        trend = f["analyses/pir/trend"]
        top = trend["mean_top20"][()]
        assert [v.decode() for v in trend["labels"][()]] == ["linear", "product"]
    assert top[0] > 0.85 and top[1] == pytest.approx(0.75, abs=0.1)  # the product's PIR is 3/4 (interactions)


def test_region_groups_need_named_regions_and_work_on_the_demo(linear_run, tmp_path):
    code, _, err = cli("analyze", linear_run, "region-groups")
    assert code == 2 and "needs regions with names" in err
    out = tmp_path / "fg.h5"
    code, _, err = cli("run", "--estimator", "sbsa", "--regions", "demo-foreground", "--per-class", "1", "--n", "32",
                       "--quiet", "--out", out)
    assert code == 0, err
    code, _, err = cli("analyze", out, "region-groups")
    assert code == 0, err
    res = analysis(out, "region-groups")
    np.testing.assert_allclose(res["st_diff"], res["st_by_group"][1] - res["st_by_group"][0])
    with h5py.File(out) as f:
        labels = f["regions/labels"][()]
    np.testing.assert_allclose(res["object_share"], (labels > 0).mean((1, 2)))


def test_analyses_refuse_the_other_kind_of_run(tmp_path, linear_run):
    out = tmp_path / "aug.h5"
    assert cli("run", "--quick", "--n", "16", "--quiet", "--out", out)[0] == 0
    for name in ("pir", "region-masking", "sensitivity-n", "region-groups"):
        code, _, err = cli("analyze", out, name)
        assert code == 2 and "reads region runs" in err, (name, err)
    for name in ("masking", "accuracy", "single-class", "lda", "segments", "clustering"):
        code, _, err = cli("analyze", linear_run, name)
        assert code == 2 and "reads augmentation runs" in err and "Traceback" not in err, (name, err)


def test_captum_baselines_equal_the_linear_attributions(linear_run):
    pytest.importorskip("captum")
    code, _, err = cli("analyze", linear_run, "region-masking", "-o", "rank_by=[ig,kernelshap,lime,ST]",
                       "-o", "fraction=0.25", "-o", "samples=64")
    assert code == 0, err
    from sa_frame import rebuild
    from sa_frame.core.analysis import no_progress
    from sa_frame.plugins.regions._baselines import baseline_rankings

    runner = rebuild(ResultsFile(linear_run)).region_runner
    got = baseline_rankings(runner, ["ig", "kernelshap"], 64, 0, no_progress)
    np.testing.assert_allclose(got["ig"], np.tile(WEIGHTS, (8, 1)), rtol=1e-6)  # IG of a linear score: w (x - x0)
    np.testing.assert_allclose(got["kernelshap"], np.tile(WEIGHTS, (8, 1)), rtol=1e-4)
    res = analysis(linear_run, "region-masking")
    np.testing.assert_allclose(res["drop_top"], 4.0, atol=1e-9)  # every ranking finds the weight-4 cell
