"""One test per hook (`test_hook_<name>`, checked by test_meta): a third-party plugin that
keeps the full contract (tests/plugins/full_contract.py) is registered like an installed
one and exercised through the command line, with no change to the kernel or engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import sa_frame
from sa_frame import ResultsFile
from tests.cli_runner import cli
from tests.plugins.full_contract import COLOURS, LEVELS, FullContractPlugin

RUN = ["run", "--model", "tp-pool", "--data", "tp-colours:red,green", "--aug", "tp-set", "--estimator", "tp-moment",
       "--quiet"]


@pytest.fixture
def plugin():
    sa_frame.registry().add_plugin(FullContractPlugin(), provider="tp-dist", version="9.9")


def expected_pool_moment(path, power: int) -> np.ndarray:
    """The mean over the run's rows of (mean colour of the augmented image) ** power, from the design."""
    from sa_frame.engine.rebuild import rebuild

    run = rebuild(ResultsFile(path), with_network=False).plan
    names = run.problem.names
    total, rows = np.zeros(3), 0
    for block in run.design:
        values = run.problem.values(block.unit, block.known).numpy()
        classes, within = run.problem.variable("class").split(block.unit[:, names.index("class")])
        level = np.asarray(LEVELS)[np.minimum((within.numpy() * len(LEVELS)).astype(int), len(LEVELS) - 1)]
        colour = np.zeros((len(values), 3))
        channel = np.array([COLOURS[run.source.classes[c]] for c in classes.long().tolist()])
        colour[np.arange(len(values)), channel] = level * values[:, names.index("tp-scale.factor")]
        total += (colour ** power).sum(0)
        rows += len(values)
    return total / rows


def test_hook_register_estimators(plugin, tmp_path):
    """A third-party estimator: options listed, set from the CLI and from YAML, stored in the
    results and shown by `sa-frame show`; its maps equal a direct computation."""
    code, listing, err = cli("run", "--estimator", "tp-moment", "--options")
    assert code == 0, err
    assert "power" in listing and "raise each output to this power" in listing and "rows_per_block" in listing
    assert "quick" in listing and "n=64" in listing

    out = tmp_path / "cli.h5"
    code, _, err = cli(*RUN, "--n", "40", "-o", "power=2", "-o", "rows_per_block=8", "--out", out)
    assert code == 0, err
    attrs = ResultsFile(out).attrs()
    assert attrs["estimator_options"] == {"power": 2, "rows_per_block": 8, "sampler": "tp-rows"}
    assert attrs["design"] == {"design": "tp-rows", "n": 40, "seed": 0, "rows_per_block": 8}
    moment = ResultsFile(out).dataset("checkpoints/pool/moment")
    np.testing.assert_allclose(moment, expected_pool_moment(out, 2), rtol=1e-6)

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": "tp-pool", "data": "tp-colours:red,green", "aug": "tp-set",
                                      "estimator": "tp-moment", "n": 40, "out": str(tmp_path / "yaml.h5"),
                                      "options": {"power": 2, "rows_per_block": 8}}))
    code, _, err = cli("run", "--config", config, "--quiet")
    assert code == 0, err
    np.testing.assert_array_equal(ResultsFile(tmp_path / "yaml.h5").dataset("checkpoints/pool/moment"), moment)

    code, shown, err = cli("show", out)
    assert code == 0, err
    assert "power=2, rows_per_block=8, sampler=tp-rows" in shown
    assert "mean moment per activation" in shown and f"{moment.mean():.3f}" in shown

    code, _, err = cli(*RUN, "-o", "powr=2", "--out", tmp_path / "bad.h5")
    assert code == 2 and "unknown options ['powr'] (did you mean 'power'?)" in err


def test_hook_register_samplers(plugin):
    sampler = sa_frame.lookup("sampler", "tp-rows")
    problem = sa_frame.Problem({"x": sa_frame.Uniform(0, 1)})
    design = sa_frame.lookup("estimator", "tp-moment").design(problem, 20, 3, rows_per_block=8)
    assert design.n_blocks == 3 and design.block(2).n_rows == 4
    assert np.array_equal(design.block(1).unit, sampler.design(problem, 20, 3, 8).block(1).unit)
    # a built-in estimator resolves its design through the registry too: the third-party sampler
    # is picked by name, and the estimator's own is replaced
    rows = sa_frame.lookup("estimator", "variance").design(problem, 20, 3, sampler="tp-rows", rows_per_block=8)
    assert isinstance(rows, type(design))


def test_hook_register_data_sources(plugin, tmp_path):
    images = sa_frame.lookup("data_source", "tp-colours").open("blue,red", sa_frame.InputFormat((4, 4)))
    assert images.classes == ["blue", "red"]
    x = images.load(torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([0, 0]))
    assert float(x[0, 2].mean()) == 0.75 and float(x[1, 0].mean()) == 0.25 and float(x[0, :2].abs().sum()) == 0
    code, _, err = cli(*RUN, "--n", "16", "--out", tmp_path / "r.h5")
    assert code == 0, err
    assert ResultsFile(tmp_path / "r.h5").variables()["classes"].tolist() == ["red", "green"]
    code, _, err = cli(*RUN[:4], "tp-colours:purple", *RUN[5:], "--out", tmp_path / "bad.h5")
    assert code == 2 and "tp-colours takes colours out of red, green, blue, got 'purple'" in err
    code, _, err = cli(*RUN[:4], "tp-colour:red", *RUN[5:], "--out", tmp_path / "bad.h5")
    assert code == 2 and "data folder not found: tp-colour:red" in err


def test_hook_register_models(plugin, tmp_path):
    from sa_frame.testing import check_model

    check_model(sa_frame.lookup("model", "tp-pool"))
    code, _, err = cli(*RUN, "--n", "16", "--out", tmp_path / "r.h5")
    assert code == 0, err
    # the classifier's output is recorded as probabilities: two classes sum to 1
    fc = ResultsFile(tmp_path / "r.h5").dataset("checkpoints/fc/moment")
    assert fc.shape == (2,) and fc.sum() == pytest.approx(1.0)


def test_hook_register_checkpoints(plugin, tmp_path):
    assert sa_frame.registered("checkpoint")["tp-pool"] == ["pool", "fc"]
    code, _, err = cli(*RUN, "--n", "16", "--out", tmp_path / "r.h5")
    assert code == 0, err
    assert ResultsFile(tmp_path / "r.h5").attrs()["checkpoints"] == ["pool", "fc"]


def test_hook_register_augmentations(plugin):
    from sa_frame.testing import check_augmentation

    check_augmentation(sa_frame.lookup("augmentation", "tp-scale"))


def test_hook_register_augmentation_sets(plugin, tmp_path):
    assert sa_frame.registered("augmentation_set")["tp-set"] == ["tp-scale"]
    code, _, err = cli(*RUN, "--n", "16", "--out", tmp_path / "r.h5")
    assert code == 0, err
    assert ResultsFile(tmp_path / "r.h5").variables()["names"].tolist() == ["tp-scale.factor", "class"]


def test_hook_register_analyses(plugin, tmp_path):
    out = tmp_path / "r.h5"
    code, _, err = cli(*RUN, "--n", "16", "-o", "power=3", "--out", out)
    assert code == 0, err
    code, _, err = cli("analyze", out, "tp-peak", "--quiet")
    assert code == 0, err
    moment = ResultsFile(out).dataset("checkpoints/pool/moment")
    assert float(ResultsFile(out).dataset("analyses/tp-peak/peak")) == pytest.approx(float(moment.max()))
    assert int(ResultsFile(out).dataset("analyses/tp-peak/argmax")) == int(np.argmax(moment))
    assert ResultsFile(out).analysis_attrs("tp-peak")["options"] == {"checkpoint": "pool"}


def region_run(tmp_path, *extra):
    out = tmp_path / "r.h5"
    code, _, err = cli("run", "--model", "tp-pool", "--data", "tp-colours:red,green", "--estimator", "sobol",
                       "--no-second-order", "--regions", "tp-halves", "--perturbation", "tp-dim", "--per-class", "3",
                       "--n", "256", "--quiet", "--out", out, *extra)
    assert code == 0, err
    return out


def test_hook_register_segmenters(plugin, tmp_path):
    out = region_run(tmp_path)
    labels = ResultsFile(out).dataset("regions/labels")
    assert labels.shape[0] == 6 and set(np.unique(labels[:, :, :labels.shape[2] // 2])) == {0}
    assert set(np.unique(labels[:, :, labels.shape[2] // 2:])) == {1}
    assert list(ResultsFile(out).dataset("regions/size")[0]) == [labels[0].size // 2] * 2


def test_hook_register_perturbations(plugin, tmp_path):
    """The pooled logit is linear in v1 + v2 with equal weights: S1 = ST = 1/2 for both halves."""
    out = region_run(tmp_path)
    st = ResultsFile(out).dataset("checkpoints/score/ST")
    s1 = ResultsFile(out).dataset("checkpoints/score/S1")
    assert st.shape == (2, 6)
    np.testing.assert_allclose(st, 0.5, atol=0.03)
    np.testing.assert_allclose(s1, 0.5, atol=0.05)
    assert ResultsFile(out).attrs()["perturbation"] == "tp-dim"
    assert [r.provider for r in sa_frame.registry().entries("perturbation").values() if r.name == "tp-dim"] == \
        ["tp-dist"]


def test_hook_register_relevances(plugin, tmp_path):
    """tp-pool: pool (the mean colour) -> fc; tp-means relates them by the pool's channel means,
    so the per-class mean relevance is each class's mean colour (one channel, levels 0.25..0.75)."""
    out = tmp_path / "s.h5"
    code, _, err = cli("run", "--model", "tp-pool", "--data", "tp-colours:red,green", "--estimator", "ssa",
                       "--relevance", "tp-means", "--checkpoints", "pool,fc", "--n", "64", "--quiet", "--out", out)
    assert code == 0, err
    rel = ResultsFile(out).dataset("checkpoints/fc|pool/relevance")  # (2 classes + all, 2 logits, 3 channels)
    assert rel.shape == (3, 2, 3)
    assert np.all(rel[0, :, 1:] == 0) and np.all(rel[1, :, [0, 2]] == 0)  # red images: channel 0 only
    assert 0.25 <= rel[0, 0, 0] <= 0.75 and 0.25 <= rel[1, 0, 1] <= 0.75
    assert ResultsFile(out).attrs()["relevance"] == "tp-means"


def test_hook_register_commands(plugin):
    code, out, err = cli("tp-hello", "--name", "sa")
    assert code == 0 and out.strip() == "hello sa", err
    code, out, _ = cli("--help")
    assert "tp-hello" in out


def test_hook_register_ihvp_solvers(plugin):
    """tp-identity treats H as I: every score is -g_testᵀ g_train / (1 + damping), checked against torch.func."""
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(7, 3, dtype=torch.float64), torch.randint(0, 2, (7,))
    xt, yt = torch.randn(2, 3, dtype=torch.float64), torch.randint(0, 2, (2,))
    result = sa_frame.influence(net, (x, y), (xt, yt), solver="tp-identity", damping=0.5, layers=["2"])
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p, a, b):
        return torch.nn.functional.cross_entropy(functional_call(net, p, (a[None],)), b[None])

    def flat(inputs, labels):
        g = vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs, labels)
        return torch.cat([g["2.weight"].flatten(1), g["2.bias"]], 1)

    expected = -(flat(xt, yt) @ flat(x, y).T) / 1.5
    np.testing.assert_allclose(result.scores[0], expected.numpy(), rtol=1e-12)
    np.testing.assert_allclose(result.scores[1], expected.numpy(), rtol=1e-12)  # total = the one layer
    assert [r.provider for r in sa_frame.registry().entries("ihvp").values() if r.name == "tp-identity"] == ["tp-dist"]
