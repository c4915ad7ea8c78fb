"""Map analyses: Spearman correlations between variables, CoV correlation maps, LDA —
equal to scipy and scikit-learn on the same data, and run on demo results files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sa_frame.plugins.analyses._spearman import spearman_matrices, spearman_vectors, spearman_with
from sa_frame.plugins.analyses.correlation import pixel_averaged, unit_as_observations
from sa_frame.plugins.analyses.lda import cross_validated, samples
from sa_frame.results import maps
from sa_frame.results.store import ResultsFile
from tests.cli_runner import cli


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    runs = {"sobol": folder / "sobol.h5", "shapley": folder / "shapley.h5"}
    code, _, err = cli("run", "--n", "8", "--out", runs["sobol"], "--quiet")
    assert code == 0, err
    code, _, err = cli("run", "--estimator", "shapley", "--n", "8", "--n-outer", "2", "--n-inner", "2",
                       "--out", runs["shapley"], "--quiet")
    assert code == 0, err
    return runs


def test_spearman_matrices_equal_scipy_per_column():
    rng = np.random.default_rng(0)
    values = rng.random((4, 30, 6))
    values[1, :, 2] = 0.5                       # constant variable at one column
    values[2, :10, 3] = values[2, 10:20, 3]     # ties
    rho = spearman_matrices(values)
    for p in range(6):
        if p == 2:  # scipy gives one NaN for the whole matrix; here only the constant variable's cells
            assert np.isnan(rho[p, 1]).all() and np.isnan(rho[p, :, 1]).all()
            keep = [0, 2, 3]
            expected = stats.spearmanr(values[keep, :, p].T).statistic
            np.testing.assert_allclose(rho[p][np.ix_(keep, keep)], expected, atol=1e-12)
        else:
            np.testing.assert_allclose(rho[p], stats.spearmanr(values[:, :, p].T).statistic, atol=1e-12)
    reference = rng.random((30, 6))
    with_ref = spearman_with(values, reference)
    for v in range(4):
        for p in range(6):
            if v == 1 and p == 2:
                assert np.isnan(with_ref[v, p])
            else:
                assert with_ref[v, p] == pytest.approx(stats.spearmanr(values[v, :, p], reference[:, p]).statistic,
                                                       abs=1e-12)
    a, b = rng.random(10), rng.random(10)
    a[3] = np.nan
    assert spearman_vectors(a, b) == pytest.approx(stats.spearmanr(np.delete(a, 3), np.delete(b, 3)).statistic)


def _scipy_matrix(x):
    """scipy's Spearman between the rows of x; 0 where a row is constant (SPEC B §8.2)."""
    n = x.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if np.ptp(x[i]) > 0 and np.ptp(x[j]) > 0:
                out[i, j] = stats.spearmanr(x[i], x[j]).statistic
    return out


def test_pixel_averaging_and_nan_policy():
    rng = np.random.default_rng(1)
    values = rng.random((3, 12, 5))
    values[0, :, 4] = 1.0
    any_ = pixel_averaged(values, "any")
    all_ = pixel_averaged(values, "all")
    per_pixel = np.stack([_scipy_matrix(values[:, :, p]) for p in range(5)])
    np.testing.assert_allclose(any_["mean"], per_pixel.mean(0), atol=1e-12)
    np.testing.assert_allclose(any_["std"], per_pixel.std(0, ddof=1), atol=1e-12)
    assert any_["nan"][0, 1] and not all_["nan"][0, 1] and not any_["nan"][1, 2]


def test_correlation_and_cov_correlation_on_demo_runs(demo_runs):
    sobol, shapley = demo_runs["sobol"], demo_runs["shapley"]
    code, out, err = cli("analyze", sobol, "correlation", "-o", f"other={shapley}", "--no-figures")
    assert code == 0, err
    result = ResultsFile(sobol).read("analyses")["correlation"]
    assert sorted(result["within"]) == ["S1", "ST", "shapley"]
    assert sorted(result["cross"]) == ["S1-ST", "S1-shapley", "ST-shapley"]
    results = ResultsFile(sobol)
    s1 = unit_as_observations(maps.sensitivity(results, "S1", "features.5"))
    direct = np.stack([_scipy_matrix(s1[:, :, p]) for p in range(s1.shape[2])])
    np.testing.assert_allclose(result["within"]["S1"]["features.5"]["mean"], direct.mean(0), atol=1e-10)
    # a cross block between two value types is the off-diagonal block of their joint matrix
    shap = unit_as_observations(maps.sensitivity(ResultsFile(shapley), "shapley", "features.5"))
    i, j = 0, 6
    expected = np.mean([_scipy_matrix(np.stack([s1[i, :, p], shap[j, :, p]]))[0, 1] for p in range(s1.shape[2])])
    assert result["cross"]["S1-shapley"]["features.5"]["mean"][i, j] == pytest.approx(expected, abs=1e-10)
    assert result["evolution"]["S1"].shape == (28, 6)

    code, out, err = cli("analyze", sobol, "cov-correlation")
    assert code == 0, err
    cov = ResultsFile(sobol).read("analyses")["cov-correlation"]
    assert cov["maps"]["features.8"]["map"].shape == (8, 8, 8)
    cov_values = maps.coefficient_of_variation(results, "features.8")
    s1_8 = maps.sensitivity(results, "S1", "features.8")
    y, x = 3, 5
    expected = stats.spearmanr(s1_8[2, :, y, x], cov_values[:, y, x]).statistic
    assert cov["maps"]["features.8"]["map"][2, y, x] == pytest.approx(expected, abs=1e-12)
    assert cov["mean"].shape == (8, 6)
    assert sobol.with_suffix(".cov-correlation-maps.png").exists()


def test_cov_formula_and_shapley_shares():
    raw = np.array([[0.5, -0.1, 0.0], [0.5, 0.3, 1e-9], [1.0, 0.1, 0.0]])
    shares = maps.shapley_shares(raw)
    np.testing.assert_allclose(shares[:, 0], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(shares[:, 1], [0.0, 0.75, 0.25])
    np.testing.assert_allclose(shares[:, 2], [0.0, 0.0, 0.0])


def test_lda_equals_a_direct_scikit_learn_loop(demo_runs):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import RepeatedKFold

    sobol = demo_runs["sobol"]
    code, out, err = cli("analyze", sobol, "lda", "-o", "n_repeats=2", "-o", "random_state=7",
                         "-o", "checkpoints=features.8,features.10", "--no-figures")
    assert code == 0, err
    result = ResultsFile(sobol).read("analyses")["lda"]
    seeds = np.random.default_rng(7).integers(0, 100000, size=2)
    for checkpoint, seed in zip(["features.8", "features.10"], seeds):
        x, y = samples(maps.sensitivity(ResultsFile(sobol), "S1", checkpoint))
        valid = np.zeros((8, 8))
        accuracy = []
        for fit, test in RepeatedKFold(n_splits=5, n_repeats=2, random_state=int(seed)).split(x):
            model = LinearDiscriminantAnalysis(solver="svd", n_components=2, tol=1e-4).fit(x[fit], y[fit])
            predicted = model.predict(x[test])
            for t, q in zip(y[test], predicted):
                valid[t, q] += 1
            accuracy.append(np.mean(predicted == y[test]))
        stored = result["checkpoints"][checkpoint]
        np.testing.assert_allclose(stored["valid"], valid / valid.sum(1, keepdims=True), atol=1e-12)
        assert float(stored["valid_accuracy"]) == pytest.approx(np.mean(accuracy))
        assert int(stored["seed"]) == seed
        np.testing.assert_allclose(stored["valid"].sum(1), 1.0)
        assert stored["projection"].shape == (x.shape[0], 2)
    # same inputs, same folds: the function is deterministic
    again = cross_validated(x, y, 5, 2, int(seeds[-1]))
    np.testing.assert_array_equal(again["valid"], result["checkpoints"]["features.10"]["valid"])


@pytest.mark.parametrize("name, args, message", [
    ("correlation", ["-o", "nan_policy=some"], "nan_policy must be any or all"),
    ("lda", ["-o", "n_splits=1"], "n_splits >= 2"),
    ("lda", ["-o", "checkpoints=fc"], "unknown convolutional checkpoint 'fc'"),
    ("cov-correlation", ["-o", "value=shapley"], "unknown value type"),
])
def test_bad_map_analysis_options(demo_runs, name, args, message):
    code, _, err = cli("analyze", demo_runs["sobol"], name, *args, "--quiet")
    assert code == 2 and message in err, err


SEGMENTS = """
- name: early
  modules: [features.0, features.1, features.2]
  units: [0, 3, 5, 7]
- unit_name: middle            # the research code's keys
  modules_names: [features.3, features.4, features.5]
  module_type: sequential
  neurons: {features.3: {"1": [[erasing, si, 1]], "4": [], "9": []}}
"""


def test_segments_analysis_on_a_demo_run(demo_runs, tmp_path):
    from sa_frame.plugins.analyses.segments import load_segments, unit_matrices, upper

    definition = tmp_path / "segments.yaml"
    definition.write_text(SEGMENTS)
    specs = load_segments(str(definition))
    assert specs[1].name == "middle" and specs[1].units == [1, 4, 9]
    code, out, err = cli("analyze", demo_runs["sobol"], "segments", "-o", f"segments={definition}", "-o", "n=8",
                         "-o", "channels=value,hue", "--no-figures")
    assert code == 0, err
    result = ResultsFile(demo_runs["sobol"]).read("analyses")["segments"]
    assert list(result["channels"]) == ["value", "hue"]
    s1 = result["maps"]["value"]["middle"]["S1"]
    assert s1.shape == (8, 3, 32, 32)  # segments see the whole 64x64 image: larger maps than features.5 (16x16)
    # per-unit matrices use the pixels as observations
    values = maps.processed("clip", s1)  # how analyses read S1
    matrices = unit_matrices(values)
    u = 1
    direct = _scipy_matrix(values[:, u].reshape(8, -1))
    np.testing.assert_allclose(np.nan_to_num(matrices[u]), direct, atol=1e-10)
    units = result["units"]["value"]
    # Figure 5 (a): Spearman of the strict upper triangles of two segments' mean matrices
    expected = stats.spearmanr(upper(units["early"]["mean"], False), upper(units["middle"]["mean"], False)).statistic
    assert result["layers"]["value"]["spearman"][0, 1] == pytest.approx(expected, abs=1e-12)
    # (b) against the original checkpoints' matrices of the same units, diagonal included
    original = result["original"]
    assert str(original["middle"]["checkpoint"]) == "features.5"
    expected = stats.spearmanr(upper(units["early"]["mean"], True), upper(original["middle"]["mean"], True)).statistic
    assert result["versus_original"]["value"][0, 1] == pytest.approx(expected, abs=1e-12)
    full = maps.sensitivity(ResultsFile(demo_runs["sobol"]), "S1", "features.5")[:, [1, 4, 9]]
    np.testing.assert_allclose(original["middle"]["mean"], summarised_mean(unit_matrices(full)), atol=1e-12)


def test_default_segments_come_from_the_results(demo_runs):
    """Without a segments file: one segment per convolutional checkpoint, from the previous one,
    keeping the units whose maps give the augmentations the largest mean index."""
    from sa_frame import rebuild
    from sa_frame.plugins.analyses.segments import default_segments

    results = ResultsFile(demo_runs["sobol"])
    specs = default_segments(rebuild(results).net, results, "S1", 4)
    assert [s.modules for s in specs] == [["features.0", "features.1", "features.2"],
                                          ["features.3", "features.4", "features.5"],
                                          ["features.6", "features.7", "features.8"], ["features.9", "features.10"]]
    rows = maps.map_rows(results)
    augs = [i for i, r in enumerate(rows) if r not in ("class", "partition", "permutation")]
    score = maps.sensitivity(results, "S1", "features.5")[augs].mean(axis=(0, 2, 3))
    assert specs[1].units == sorted(np.argsort(-score, kind="stable")[:4].tolist())
    assert specs[1].original == "features.5" and specs[1].kind == "sequential"
    code, _, err = cli("analyze", demo_runs["sobol"], "segments", "-o", "n=8", "-o", "units=4", "-o", "channels=value",
                       "--no-figures", "--quiet")
    assert code == 0, err
    result = ResultsFile(demo_runs["sobol"]).read("analyses")["segments"]
    assert [str(s) for s in result["segments"]] == ["features.2", "features.5", "features.8", "features.10"]
    assert result["maps"]["value"]["features.5"]["S1"].shape[1] == 4


def summarised_mean(matrices):
    return np.where(np.isnan(matrices), 0.0, matrices).mean(0)


def test_segment_equals_the_full_network_slice_on_its_intermediate_input():
    import torch

    from sa_frame.plugins.analyses._network_segments import build_segment
    from sa_frame.plugins.models.demo import DemoModel

    net = DemoModel().build("imagenet")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        intermediate = net.features[:3](x)
        full = net.features[:6](x)
        segment = build_segment(net, ["features.3", "features.4", "features.5"], "sequential", [1, 4, 9])
        torch.testing.assert_close(segment(intermediate), full[:, [1, 4, 9]])


def test_segment_channels_are_hsv_of_rgb():
    import torch

    from sa_frame.plugins.analyses.segments import channel_inputs

    images = torch.rand(2, 3, 5, 5)
    channels = channel_inputs(images, ["value", "saturation"], 0.0, 1.0)
    torch.testing.assert_close(channels["value"][:, 0], images.amax(1))
    low, high = images.amin(1), images.amax(1)
    torch.testing.assert_close(channels["saturation"][:, 0], (high - low) / high)


@pytest.mark.parametrize("text, message", [
    ("- {name: a, modules: [features.0], unitz: [1]}", "unknown key 'unitz' (did you mean 'units'?)"),
    ("- {name: a}", "needs 'modules'"),
    ("- {name: a, modules: [features.0], kind: diagonal}", "kind must be one of"),
    ("[1, 2", "not valid YAML/JSON"),
    ("- {name: a, modules: [features.0]}\n- {name: a, modules: [features.3]}", "names must be unique"),
])
def test_bad_segment_files(demo_runs, tmp_path, text, message):
    definition = tmp_path / "s.yaml"
    definition.write_text(text)
    code, _, err = cli("analyze", demo_runs["sobol"], "segments", "-o", f"segments={definition}", "--quiet")
    assert code == 2 and message in err, err
