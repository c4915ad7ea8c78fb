"""SSA relevances and the ssa estimator against known answers: |W| for linear layers (both AD
modes), VJP = JVP on the demo CNN, streamed per-class moments and Tukey frequencies equal to
NumPy on the stored relevances, resume equality, and bad input."""

from __future__ import annotations

from collections import OrderedDict

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import sa_frame
from sa_frame import RelevanceContext
from tests.cli_runner import cli
from tests.interrupt import stop_after

DEMO_PAIRS = ["features.2", "features.5", "features.8", "features.10", "fc"]


def linear_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(inp=nn.Identity(), l1=nn.Linear(4, 3), l2=nn.Linear(3, 2))).double().eval()


def context(net, inputs, names, upper="mean"):
    modules = dict(net.named_modules())
    pairs = list(zip(names[1:], names[:-1]))[::-1]
    return RelevanceContext(net, inputs, torch.zeros(inputs.shape[0], dtype=torch.long),
                            {n: modules[n] for n in names}, pairs, upper)


@pytest.mark.parametrize("mode", ["vjp", "jvp", "auto"])
def test_gradients_of_a_linear_network_are_the_absolute_weights(mode):
    net = linear_net()
    ctx = context(net, torch.randn(5, 4, dtype=torch.float64), ["inp", "l1", "l2"])
    gradients = sa_frame.lookup("relevance", "gradients")
    out = gradients.compute(ctx, gradients.options({"mode": mode}))
    for pair, layer in (("l2|l1", net.l2), ("l1|inp", net.l1)):
        expected = layer.weight.detach().abs().expand(5, -1, -1)
        torch.testing.assert_close(out[pair], expected, rtol=0, atol=1e-12)
    weights = sa_frame.lookup("relevance", "weights")
    torch.testing.assert_close(weights.compute(ctx, None)["l2|l1"], out["l2|l1"], rtol=0, atol=1e-12)


def test_a_model_without_autograd_is_one_clear_error():
    class NoGrad(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.l1 = nn.Identity(), nn.Linear(4, 3)

        def forward(self, x):
            with torch.no_grad():
                return self.l1(self.inp(x))

    net = NoGrad().eval()
    ctx = context(net, torch.randn(2, 4), ["inp", "l1"])
    g = sa_frame.lookup("relevance", "gradients")
    with pytest.raises(sa_frame.UsageError, match="runs without autograd"):
        g.compute(ctx, g.options({"mode": "vjp"}))
    assert sa_frame.lookup("relevance", "activations").compute(ctx, None)["l1|inp"].shape == (2, 3, 4)


def test_activation_relevances_are_the_lower_mean_absolute_activations():
    net = linear_net()
    x = torch.randn(5, 4, dtype=torch.float64)
    ctx = context(net, x, ["inp", "l1", "l2"])
    act = sa_frame.lookup("relevance", "activations").compute(ctx, None)
    h = net.l1(x).detach().abs()
    torch.testing.assert_close(act["l2|l1"], h[:, None, :].expand(-1, 2, -1))
    wa = sa_frame.lookup("relevance", "weight-activations").compute(ctx, None)
    torch.testing.assert_close(wa["l2|l1"], net.l2.weight.detach().abs()[None] * h[:, None, :])


def test_weight_gradients_of_a_linear_layer_are_the_lower_activations_over_k_up():
    """d mean_n(W a + b)_n / d W_nk = a_k / K_up for every image."""
    net = linear_net()
    x = torch.randn(5, 4, dtype=torch.float64)
    ctx = context(net, x, ["inp", "l1", "l2"])
    got = sa_frame.lookup("relevance", "weight-gradients").compute(ctx, None)
    h = net.l1(x).detach()
    torch.testing.assert_close(got["l2|l1"], (h.abs() / 2)[:, None, :].expand(-1, 2, -1))
    torch.testing.assert_close(got["l1|inp"], (x.abs() / 3)[:, None, :].expand(-1, 3, -1))


def test_weight_gradients_run_on_the_demo_cnn(tmp_path):
    code, _, err = cli("run", "--estimator", "ssa", "--relevance", "weight-gradients", "--checkpoints",
                       "features.2,features.3", "--n", "16", "--quiet", "--out", tmp_path / "w.h5")
    assert code == 0, err
    rel = sa_frame.ResultsFile(tmp_path / "w.h5").dataset("checkpoints/features.3|features.2/relevance")
    assert rel.shape == (11, 32, 16) and np.all(rel[-1] >= 0)


def test_vjp_equals_jvp_on_the_demo_cnn():
    spec = sa_frame.lookup("model", "demo-cnn")
    net = spec.build()
    source = sa_frame.lookup("data_source", "demo").open("demo", spec.input_format())
    x = spec.normalize(source.load(torch.arange(4), torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)))
    ctx = context(net, x, DEMO_PAIRS)
    g = sa_frame.lookup("relevance", "gradients")
    vjp, jvp = g.compute(ctx, g.options({"mode": "vjp"})), g.compute(ctx, g.options({"mode": "jvp"}))
    for pair in vjp:
        scale = float(vjp[pair].abs().max())
        torch.testing.assert_close(jvp[pair], vjp[pair], rtol=1e-4, atol=1e-6 * scale, msg=pair)
    # fc | features.10: the logits read the channel means through avgpool: d logit_n / d a_k,hw = W_nk / HW
    np.testing.assert_allclose(vjp["fc|features.10"][0].numpy(), net.fc.weight.detach().abs().numpy() / 64,
                               rtol=1e-5)


def test_grouped_moments_equal_numpy_on_the_same_relevances():
    from sa_frame.plugins.ssa.estimator import GroupedMoments

    rng = np.random.default_rng(0)
    problem = sa_frame.Problem({"class": sa_frame.Categorical(3)})
    design = sa_frame.lookup("sampler", "iid").design(problem, 40, 0, rows_per_block=40)
    block = design.block(0)
    y = rng.standard_normal((40, 2, 7)) ** 2
    y[:, :, 3] += 50 * (rng.random((40, 2)) > 0.6)  # planted outliers in lower neuron 3
    acc = GroupedMoments(problem, design, {"p": (2, 7)})
    acc.update(block, {"p": torch.from_numpy(y)})
    maps = acc.finalize()["p"]
    classes = np.floor(block.unit[:, 0].numpy() * 3).astype(int)
    q1, q3 = np.percentile(y, 25, axis=-1, keepdims=True), np.percentile(y, 75, axis=-1, keepdims=True)
    flags = y > q3 + 1.5 * (q3 - q1)
    for c, rows in enumerate([classes == 0, classes == 1, classes == 2, np.ones(40, bool)]):
        np.testing.assert_allclose(maps["relevance"][c], y[rows].mean(0), rtol=1e-12)
        np.testing.assert_allclose(maps["relevance_var"][c], y[rows].var(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(maps["outlier_frequency"][c], flags[rows].mean(0), rtol=1e-12)
        assert np.all(maps["count"][c] == rows.sum())
    others = np.delete(maps["outlier_frequency"][3], 3, axis=1)
    assert np.all(maps["outlier_frequency"][3][:, 3] > 2 * others.mean(1))  # the planted outliers stand out


SSA = ["run", "--estimator", "ssa", "--checkpoints", ",".join(DEMO_PAIRS), "--quiet"]


def test_an_ssa_run_records_every_pair_per_class_and_resumes_exactly(tmp_path):
    from sa_frame.engine.config import build_config
    from sa_frame.engine.run import execute

    args = dict(estimator="ssa", checkpoints=",".join(DEMO_PAIRS), n=48, options={"rows_per_block": 16},
                save_every=1, quiet=True)
    whole = execute(build_config({}, {**args, "out": str(tmp_path / "whole.h5")}))[1]
    assert set(whole) == {"fc|features.10", "features.10|features.8", "features.8|features.5", "features.5|features.2"}
    assert whole["features.5|features.2"]["relevance"].shape == (11, 32, 16)  # 10 classes + all, K_up, K_low
    np.testing.assert_allclose(whole["fc|features.10"]["count"][-1], 48)
    part = tmp_path / "part.h5"
    with pytest.raises(Exception):
        execute(build_config({}, {**args, "out": str(part)}), stop_after(2))
    resumed = execute(build_config({}, {**args, "out": str(part), "resume": True}))[1]
    for pair, stats in whole.items():
        for key, value in stats.items():
            np.testing.assert_array_equal(resumed[pair][key], value, err_msg=f"{pair} {key}")
    with h5py.File(part) as f:
        assert f.attrs["mode"] == "relevance" and f.attrs["relevance"] == "gradients"
        assert list(f["variables/groups"][()].astype(str)) == ["class"]


@pytest.mark.parametrize("args, message", [
    (["--estimator", "ssa", "--checkpoints", "features.5,features.2"], "must be in forward order"),
    (["--estimator", "ssa", "--relevance", "gradient"], "did you mean 'gradients'"),
    (["--estimator", "ssa", "--checkpoints", "fc"], "at least two --checkpoints"),
    (["--estimator", "sobol", "--relevance", "gradients"], "--relevance is for step-wise estimators"),
    (["--estimator", "ssa", "--relevance", "gradients:mode=jvp,abs=before"], "abs=before needs"),
    (["--estimator", "ssa", "--regions", "grid"], "cannot take --regions"),
])
def test_bad_ssa_input_is_one_line_and_exit_2(tmp_path, args, message):
    code, _, err = cli("run", *args, "--n", "8", "--quiet", "--out", tmp_path / "x.h5")
    assert code == 2, err
    assert message in err and "Traceback" not in err
