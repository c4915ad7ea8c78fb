"""Prediction analyses on the demo model and data: accuracy, guided masking, clustering,
single-class sensitivity — numbers checked against direct evaluations, scipy and hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform
from scipy.stats import spearmanr

from sa_frame import StackedMasking
from sa_frame.engine.capture import Masking
from sa_frame.engine.rebuild import rebuild
from sa_frame.plugins.analyses._predictions import MaskConfig, intersections, mask_configs, mask_factors
from sa_frame.plugins.analyses.clustering import average_linkage, signature_distances
from sa_frame.plugins.analyses.masking import signature_pattern
from sa_frame.plugins.analyses.single_class import jaccard, sensitive_classes
from sa_frame.results.store import ResultsFile
from tests.cli_runner import cli

SMALL = ["-o", "per_class=2", "-o", "n_inner=2", "-o", "batch_size=8"]


@pytest.fixture(scope="module")
def shapley_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("masking") / "shap.h5"
    code, _, err = cli("run", "--estimator", "shapley", "--n", "8", "--n-outer", "2", "--n-inner", "2",
                       "--out", out, "--quiet")
    assert code == 0, err
    return out


def test_mask_factors_equal_hand_made_masks():
    torch.manual_seed(0)
    m = torch.rand(4, 5, 5)
    configs = mask_configs(["v"], alphas=[0.0, 1.5], quantiles=[0.5, 0.9])
    factors = mask_factors({"c": {"v": m}}, configs)["c"]
    assert [c.label for c in configs][:2] == ["none", "v:alpha=0.00,q=0.50"]
    assert torch.equal(factors[0], torch.ones_like(m))
    flat = m.flatten().numpy().astype(np.float64)
    for k, config in enumerate(configs[1:], 1):
        if config.mode == "raw":
            expected = m.numpy()
        elif config.mode == "invert":
            expected = 1 - m.numpy()
        else:
            level = np.quantile(flat, config.q)
            expected = np.where(m.numpy() >= level, config.alpha, 1.0)
        np.testing.assert_allclose(factors[k].numpy(), expected, rtol=0, atol=1e-7)
    # the thresholded mask changes the top (1 - q) share of activations
    assert int((factors[1] == 0).sum()) == int(np.ceil(0.5 * m.numel()))


def test_stacked_masking_equals_one_masking_forward_per_configuration():
    """One forward for all configurations gives the outputs of the kernel's Masking, one by one."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3),
                              torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3)).eval()
    x = torch.rand(5, 3, 8, 8)
    masks = {"1": {"a": torch.rand(4, 8, 8), "b": torch.rand(4, 8, 8)}, "2": {"a": torch.rand(2, 6, 6),
                                                                          "b": torch.rand(2, 6, 6)}}
    configs = mask_configs(["a", "b"], alphas=[0.0, 0.5], quantiles=[0.6])
    with torch.no_grad(), StackedMasking(net, mask_factors(masks, configs)) as stacked:
        stacked.active = slice(0, len(configs))
        together = net(x.repeat(len(configs), 1, 1, 1)).view(len(configs), 5, 3)
    with torch.no_grad():
        for k, c in enumerate(configs):
            if c.mode == "none":
                alone = net(x)
            else:
                with Masking(net, {n: masks[n][c.variable] for n in masks}, c.mode, c.alpha, c.q):
                    alone = net(x)
            torch.testing.assert_close(together[k], alone, rtol=1e-5, atol=1e-6)


class _Replay:
    """What predict_batch reads of a rebuilt run: the network, its device and input transform."""

    def __init__(self, net):
        self.net, self.device = net, torch.device("cpu")

    def inputs(self, images):
        return images


class _Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.inner = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))

    def forward(self, x):
        h = torch.relu(self.stem(x))
        return self.head(h + self.inner(h))  # a skip connection around the masked `inner`


@pytest.mark.parametrize("kind", ["sequential", "residual"])
def test_shared_prefix_gives_the_predictions_of_repeated_inputs(kind):
    """The layers before the first masked checkpoint run once per image; the predictions equal
    those of repeating the input per configuration (residual: the skip forces the fallback)."""
    from sa_frame.plugins.analyses._predictions import predict_batch

    torch.manual_seed(2)
    if kind == "sequential":
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                                  torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10)).eval()
        masks = {"1": {"a": torch.rand(4, 8, 8), "b": torch.rand(4, 8, 8)}, "2": {"a": torch.rand(4, 6, 6),
                                                                              "b": torch.rand(4, 6, 6)}}
    else:
        net = _Residual().eval()
        masks = {"inner": {"a": torch.rand(4, 8, 8), "b": torch.rand(4, 8, 8)}}
    configs = mask_configs(["a", "b"], alphas=[0.0, 0.5], quantiles=[0.6])
    x = torch.rand(3, 3, 8, 8)
    results = {}
    for shared in (True, False):
        with torch.no_grad(), StackedMasking(net, mask_factors(masks, configs), shared_prefix=shared) as stacked:
            results[shared] = predict_batch(_Replay(net), stacked, x, len(configs), max_rows=12, top_n=5)
            results[f"{shared}-still"] = stacked.shared_prefix
    np.testing.assert_array_equal(results[True][0], results[False][0])
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-5, atol=1e-7)
    assert results["True-still"] is (kind == "sequential")  # the residual net fell back


def test_accuracy_of_the_original_equals_a_direct_evaluation(shapley_run):
    code, out, err = cli("analyze", shapley_run, "accuracy", *SMALL, "--no-figures")
    assert code == 0, err
    assert "grayscale" in out
    stored = ResultsFile(shapley_run).read("analyses")["accuracy"]
    replay = rebuild(ResultsFile(shapley_run))
    classes, index, partition = replay.evaluation_images(2)
    assert classes.numel() == 20 and set(partition.tolist()) == {1}  # the valid partition
    with torch.no_grad():
        logits = replay.net(replay.inputs(replay.source.load(classes, index, partition)))
    top5 = logits.topk(5, dim=1).indices
    assert stored["top1"][0] == pytest.approx((logits.argmax(1) == classes).double().mean().item())
    assert stored["top5"][0] == pytest.approx((top5 == classes[:, None]).any(1).double().mean().item())
    assert list(stored["inputs"]) == ["original", "erasing", "sharpness", "rolling", "grayscale", "gaussian_blur"]
    assert np.all((stored["top1"] <= stored["top5"]) & (stored["top1"] >= 0) & (stored["top5"] <= 1))


def test_masking_alpha_one_leaves_predictions_unchanged_and_resumes(shapley_run, tmp_path):
    store = tmp_path / "store"
    args = ["analyze", shapley_run, "masking", *SMALL, "-o", "alphas=1.0", "-o", "quantiles=0.5,0.9",
            "-o", f"predictions={store}", "--no-figures", "--quiet"]
    code, _, err = cli(*args)
    assert code == 0, err
    first = ResultsFile(shapley_run).read("analyses")["masking"]
    variables = list(first["variables"])
    assert variables == ["erasing", "sharpness", "rolling", "grayscale", "gaussian_blur", "permutation", "class",
                         "partition"]
    top1 = first["masked"]["top1"]  # (inputs, variables, 2 thresholds + raw + invert)
    assert top1.shape == (6, 8, 4)
    np.testing.assert_array_equal(top1[:, :, :2], np.broadcast_to(first["unmasked"]["top1"][:, None, None],
                                                                   (6, 8, 2)))
    # the stored top-5 predictions themselves are identical with and without the alpha = 1 mask
    from sa_frame.plugins.analyses._predictions import PredictionStore

    store = next(store.glob("*/identity.json")).parent  # one sub-folder per settings
    for _, tops in PredictionStore(store).parts():
        for top in tops.values():  # (draws, configs, B, 5); config 0: no mask
            for k in (1, 2, 5, 6):  # thresholded configurations of the first two variables
                np.testing.assert_array_equal(top[:, k], top[:, 0])
    # resume: a lost part file is recomputed, identically
    parts = sorted(store.glob("batch-*.h5"))
    assert len(parts) == 3
    parts[1].unlink()
    code, _, err = cli(*args)
    assert code == 0, err
    again = ResultsFile(shapley_run).read("analyses")["masking"]
    np.testing.assert_array_equal(again["masked"]["top1"], top1)
    # other settings get their own store; force recomputes the parts of these settings
    code, _, err = cli("analyze", shapley_run, "masking", *SMALL, "-o", f"predictions={store.parent}", "--quiet")
    assert code == 0, err
    assert len(list(store.parent.glob("*/identity.json"))) == 2
    before = parts[0].stat().st_mtime_ns
    code, _, err = cli(*args, "-o", "force=true")
    assert code == 0, err
    assert parts[0].stat().st_mtime_ns != before
    np.testing.assert_array_equal(ResultsFile(shapley_run).read("analyses")["masking"]["masked"]["top1"], top1)


def test_masking_pattern_clustering_and_single_class(shapley_run, tmp_path):
    code, out, err = cli("analyze", shapley_run, "masking", *SMALL, "-o", "alphas=0,1.5",
                         "-o", f"predictions={tmp_path / 'p'}")
    assert code == 0, err
    assert (shapley_run.with_suffix(".masking-pattern.png")).stat().st_size > 0
    masking = ResultsFile(shapley_run).read("analyses")["masking"]
    features = masking["masked"]["top1"]
    assert features.shape == (6, 8, 12) and list(masking["features"][-2:]) == ["raw", "invert"]
    pattern = masking["pattern"]
    i, j = 1, 6
    if np.ptp(features[i + 1, j]) > 0 and np.ptp(features[0, j]) > 0:
        assert pattern[i, j] == pytest.approx(spearmanr(features[i + 1, j], features[0, j]).statistic)
    np.testing.assert_array_equal(signature_pattern(features[1:], features[0]), pattern)

    code, out, err = cli("analyze", shapley_run, "clustering")
    assert code == 0, err
    clustering = ResultsFile(shapley_run).read("analyses")["clustering"]
    assert clustering["linkage"].shape == (5 * 8 - 1, 4)
    assert shapley_run.with_suffix(".clustering.png").exists()

    code, out, err = cli("analyze", shapley_run, "single-class", "-o", "k=3", "--no-figures")
    assert code == 0, err
    single = ResultsFile(shapley_run).read("analyses")["single-class"]
    values = ResultsFile(shapley_run).dataset("checkpoints/fc/shapley_raw")
    assert single["classes"].shape == (5, 10)
    assert "warm" in out or "cool" in out  # class names of the demo set
    jac = single["jaccard"]
    assert jac["unmasked"].shape == (6, 5) and jac["masked"].shape == (5, 12)
    assert np.all((jac["unmasked"] >= 0) & (jac["unmasked"] <= 1))
    assert values.shape == (8, 10)


def test_sensitive_classes_and_jaccard():
    values = np.array([[0.1, 0.5, 0.3, 0.5], [0.0, 0.0, 1.0, 0.2]])
    classes, top = sensitive_classes(values, 2)
    np.testing.assert_array_equal(classes, [[1, 3], [2, 3]])  # ties keep class order
    np.testing.assert_array_equal(top, [[0.5, 0.5], [1.0, 0.2]])
    assert jaccard({1, 2, 3}, {1, 2, 3}) == 1.0
    assert jaccard({1, 2}, {3, 4}) == 0.0
    assert jaccard({1, 2, 3}, {2, 3, 4}) == pytest.approx(0.5)
    predictions = np.array([[[1, 3, 0], [5, 6, 7]]])  # (1, 2 images, n = 3)
    inter = intersections(predictions, np.array([[1, 3, 0], [7, 8, 9]]))
    np.testing.assert_array_equal(inter, [[[3, 0], [0, 1]]])


def test_clustering_equals_scipy_average_linkage():
    rng = np.random.default_rng(3)
    features = rng.random((9, 17))
    features[4] = features[2] * 2 + 1  # identical ranks: rho 1, distance 0
    rho, distance = signature_distances(features)
    expected = spearmanr(features, axis=1).statistic
    np.testing.assert_allclose(rho, expected, atol=1e-12)
    np.testing.assert_allclose(distance, np.sqrt(np.clip(1 - np.abs(expected), 0, None)) * (1 - np.eye(9)),
                               atol=1e-7)
    ours = average_linkage(distance)
    reference = hierarchy.linkage(squareform(distance, checks=False), method="average")
    np.testing.assert_allclose(np.sort(ours[:, 2]), np.sort(reference[:, 2]), atol=1e-12)
    np.testing.assert_allclose(hierarchy.cophenet(ours), hierarchy.cophenet(reference), atol=1e-12)
    np.testing.assert_array_equal(ours[-1, 3], 9)


@pytest.mark.parametrize("args, message", [
    (["accuracy", "-o", "per_clas=2"], "did you mean 'per_class'"),
    (["accuracy", "-o", "per_class=two"], "must be an integer"),
    (["accuracy", "-o", "per_class"], "must be key=value"),
    (["masking", "-o", "value=ST"], "unknown value type"),
    (["masking", "-o", "checkpoints=fc"], "unknown convolutional checkpoint 'fc'"),
    (["masking", "-o", "quantiles=1.5", "-o", "per_class=1"], "quantiles must lie in [0, 1]"),
    (["maskin"], "did you mean 'masking'"),
    (["accuracy", "-o", "partition=test"], "unknown partition 'test'"),
    (["single-class", "-o", "k=7", "-o", "predictions=."], "is not a prediction store"),
])
def test_bad_analysis_input_is_one_line_and_exit_2(shapley_run, args, message):
    code, _, err = cli("analyze", shapley_run, *args, "--quiet")
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1


def test_analyses_need_a_complete_results_file_and_their_inputs(tmp_path):
    code, _, err = cli("analyze", tmp_path / "missing.h5", "accuracy")
    assert code == 2 and "results file not found" in err
    out = tmp_path / "small.h5"
    assert cli("run", "--n", "2", "--out", out, "--quiet")[0] == 0
    code, _, err = cli("analyze", out, "clustering")
    assert code == 2 and "has no 'masking' analysis" in err
    with __import__("h5py").File(out, "a") as f:
        f.attrs["status"] = "running"
    code, _, err = cli("analyze", out, "accuracy")
    assert code == 2 and "not complete" in err


def test_mask_config_labels():
    assert MaskConfig("class", "threshold", 1.5, 0.9).label == "class:alpha=1.50,q=0.90"
    assert MaskConfig("class", "invert").label == "class:invert"


def test_a_third_party_analysis_runs_through_analyze(shapley_run):
    """A plugin's analysis gets typed options, its outputs stored under /analyses/<name>."""
    from dataclasses import dataclass

    import sa_frame
    from sa_frame import hookimpl
    from sa_frame.core.registry import registry
    from sa_frame.results import maps as analysed_maps

    @dataclass
    class ThresholdOptions:
        threshold: float = 0.5

    class SensitiveUnits(sa_frame.Analysis):
        name = "sensitive-units"
        description = "share of activations whose top variable's share exceeds a threshold"
        Options = ThresholdOptions

        def run(self, results, options, progress=None):
            shares = analysed_maps.sensitivity(results, "shapley", "features.8")
            return {"share": float((shares.max(axis=0) > options.threshold).mean())}

    class Plugin:
        @hookimpl
        def register_analyses(self, register):
            register(SensitiveUnits())

    registry().add_plugin(Plugin(), provider="third-party")
    code, out, err = cli("analyze", shapley_run, "sensitive-units", "-o", "threshold=0.25")
    assert code == 0, err
    assert "share:" in out  # the default report
    stored = ResultsFile(shapley_run).read("analyses")["sensitive-units"]
    expected = (analysed_maps.sensitivity(ResultsFile(shapley_run), "shapley", "features.8").max(0) > 0.25).mean()
    assert stored["share"] == pytest.approx(expected)
    assert ResultsFile(shapley_run).analysis_attrs("sensitive-units")["options"] == {"threshold": 0.25}
    code, out, _ = cli("analyze", shapley_run, "sensitive-units", "--options")
    assert code == 0 and "threshold" in out
