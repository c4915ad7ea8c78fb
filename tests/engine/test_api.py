"""The Python API: `sa_frame.run` on any nn.Module equals `sa-frame run` of the same network as a
plugin; `Results` gives the numbers of the summary table, which are the analyses' means."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import sa_frame
from sa_frame import Model, UsageError, hookimpl
from sa_frame.core.registry import registry
from sa_frame.results.store import ResultsFile
from tests.cli_runner import cli
from tests.interrupt import stop_after

SIZE = (16, 16)
SETTINGS = dict(aug="a1", estimator="sobol", n=32, seed=3, batch_size=48)


def network(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))


class TinySequential(Model):
    """The same network as a registered model plugin (the CLI's way)."""

    name = "api-tiny"
    checkpoints = ["0", "1", "2", "3", "4"]
    classifier = "4"
    input_size = SIZE
    default_weights = "random"

    def build_module(self, pretrained: bool) -> nn.Module:
        return network()


class TinyPlugin:
    @hookimpl
    def register_models(self, register):
        register(TinySequential())


@pytest.fixture(scope="module")
def python_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "python.h5"
    return sa_frame.run(network(), out=out, input_size=SIZE, **SETTINGS)


def test_a_plain_sequential_equals_the_cli_run_of_it_as_a_plugin(python_run, tmp_path):
    plugin = TinyPlugin()
    registry().add_plugin(plugin, provider="tests")
    try:
        out = tmp_path / "cli.h5"
        code, _, err = cli("run", "--model", "api-tiny", "--aug", "a1", "--estimator", "sobol", "--n", "32",
                           "--seed", "3", "--batch-size", "48", "--out", out, "--quiet")
        assert code == 0, err
    finally:
        registry().remove_plugin(plugin)
    theirs, ours = ResultsFile(out).read("checkpoints"), python_run.file.read("checkpoints")
    assert sorted(theirs) == sorted(ours) == ["0", "1", "2", "3", "4"]
    for checkpoint, stored in theirs.items():
        assert sorted(stored) == sorted(ours[checkpoint])
        for key, value in stored.items():
            np.testing.assert_array_equal(ours[checkpoint][key], value, err_msg=f"{checkpoint}/{key}")
    assert python_run.attrs["model"] == "module:Sequential" and python_run.attrs["estimator"] == "sobol"


def test_the_caller_s_module_is_left_as_it_was(tmp_path):
    net = network().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sa_frame.run(net, out=tmp_path / "r.h5", input_size=SIZE, **SETTINGS)
    assert net.training and not net._forward_hooks and not net[4]._forward_hooks
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_the_dataframe_is_the_summary_table_and_the_analyses_means(python_run):
    frame = python_run.to_dataframe("ST")
    assert list(frame.index) == python_run.variables and list(frame.columns) == python_run.checkpoints
    for checkpoint in python_run.checkpoints:  # the analyses' processed maps, averaged per variable
        processed = python_run.sensitivity("ST", checkpoint)
        means = processed.reshape(len(python_run.variables), -1).mean(axis=1)
        np.testing.assert_allclose(frame[checkpoint].to_numpy(), means, rtol=0, atol=1e-12)
        assert processed.min() >= 0 and processed.max() <= 1
    code, shown, _ = cli("show", python_run.path)  # the table a person reads: the same numbers, 3 decimals
    assert code == 0
    st_table = shown[shown.index("mean ST"):]
    for variable in python_run.variables:
        printed = re.search(rf"│ {re.escape(variable)}\s+│(.*?)\n", st_table).group(1)
        values = [float(v) for v in printed.replace("│", " ").split()]
        np.testing.assert_allclose(values, frame.loc[variable].to_numpy(), atol=5e-4 + 1e-9)
    both = python_run.to_dataframe()
    assert list(both.index.get_level_values("value").unique()) == ["S1", "ST"]
    np.testing.assert_array_equal(both.loc["ST"].to_numpy(), frame.to_numpy())


def test_open_results_reads_the_file_again_and_plots_it(python_run, tmp_path):
    again = sa_frame.open_results(python_run.path)
    np.testing.assert_array_equal(again.raw("S1", "4"), python_run.raw("S1", "4"))
    assert again.config["n"] == 32 and again.values == ["S1", "ST"]
    figure = again.plot(tmp_path / "summary.png")
    import matplotlib.image

    pixels = matplotlib.image.imread(figure)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600 and pixels[..., :3].std() > 0.1  # two drawn heatmaps


def test_a_resumed_python_run_equals_the_uninterrupted_one_and_refuses_another_network(python_run, tmp_path):
    out = tmp_path / "resumed.h5"
    with pytest.raises(UsageError, match="interrupted"):  # SIGINT stops it, saved, at a block boundary
        sa_frame.run(network(), out=out, input_size=SIZE, progress=stop_after(1), save_every=1, **SETTINGS)
    assert ResultsFile(out).status() == "running"
    with pytest.raises(UsageError, match="weights changed"):
        sa_frame.run(network(seed=1), out=out, input_size=SIZE, resume=True, **SETTINGS)
    resumed = sa_frame.run(network(), out=out, input_size=SIZE, resume=True, **SETTINGS)
    np.testing.assert_array_equal(resumed.raw("ST", "2"), python_run.raw("ST", "2"))


@pytest.mark.parametrize(("call", "message"), [
    (dict(model=42), "model must be a registered model name or a torch.nn.Module"),
    (dict(model="resnet-18"), "did you mean"),
    (dict(checkpoints=["5"]), "checkpoint"),
    (dict(second_orderr=True), "did you mean 'second_order'"),
    (dict(bacth_size=8), r"unknown setting 'bacth_size' \(did you mean 'batch_size'\?\); run settings: .*seed"),
    (dict(estimator="sobl"), "did you mean 'sobol'"),
    (dict(estimator="sobol", out="r.txt"), "HDF5"),
    (dict(input_size=(0, 16)), "input_size"),
])
def test_bad_calls_are_one_usage_error(call, message, tmp_path):
    arguments = {"model": network(), "out": tmp_path / "r.h5", "input_size": SIZE, "n": 8, **call}
    with pytest.raises(UsageError, match=message):
        sa_frame.run(**arguments)


def test_a_run_without_maps_or_unfinished_file_is_refused(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        sa_frame.open_results(tmp_path / "missing.h5")



def test_analyze_rebuilds_the_given_module_and_stores_what_it_returns(tmp_path):
    res = sa_frame.run(network(), out=tmp_path / "a.h5", input_size=SIZE, **SETTINGS)
    outputs = res.analyze("accuracy", per_class=2, n_inner=1)
    stored = res.file.read("analyses")["accuracy"]
    np.testing.assert_array_equal(stored["top1"], outputs["top1"])
    assert int(outputs["images"]) == 20 and str(outputs["inputs"][0]) == "original"  # 10 classes x 2
    assert np.all(outputs["top1"] <= outputs["top5"])
    with pytest.raises(UsageError, match="unknown analysis"):
        res.analyze("accuracyy")
