"""Dependency graphs against planted circuits, and the graph analyses on the demo: the class
graph of a hand-built network is exactly its circuit; keep 1.0 reproduces the unpruned
network exactly; the cluster overlap matrix equals the graphs' node sets."""

from __future__ import annotations

from collections import OrderedDict

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import sa_frame
from sa_frame import RelevanceContext, dependency_graph
from tests.cli_runner import cli


def planted_circuit() -> nn.Module:
    """4 inputs -> 4 hidden (hidden j reads input j) -> 2 logits: class 0 reads hidden {0, 1},
    class 1 reads hidden {2, 3}."""
    net = nn.Sequential(OrderedDict(inp=nn.Identity(), hidden=nn.Linear(4, 4), act=nn.ReLU(), out=nn.Linear(4, 2)))
    with torch.no_grad():
        net.hidden.weight.copy_(torch.diag(torch.tensor([1.0, 2.0, 1.5, 0.5])))
        net.hidden.bias.fill_(0.1)
        net.out.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))
        net.out.bias.zero_()
    return net.double().eval()


def planted_maps(net, x, relevance="gradients"):
    names = ["inp", "act", "out"]
    modules = dict(net.named_modules())
    ctx = RelevanceContext(net, x, torch.zeros(len(x), dtype=torch.long), {n: modules[n] for n in names},
                           [("out", "act"), ("act", "inp")])
    rel = sa_frame.lookup("relevance", relevance)
    out = rel.compute(ctx, rel.options())
    return {pair: v.mean(0).numpy() for pair, v in out.items()}


@pytest.mark.parametrize("mode", ["global", "local"])
def test_the_class_graph_of_a_planted_circuit_is_the_circuit(mode):
    net = planted_circuit()
    x = torch.rand(64, 4, dtype=torch.float64) + 0.1  # positive: every hidden unit active
    maps = planted_maps(net, x)
    for c, circuit in ((0, [0, 1]), (1, [2, 3])):
        graph = dependency_graph(maps, ["out|act", "act|inp"], top=[c], mode=mode, keep=0.5, branching=2, b_prime=2)
        assert graph.nodes["act"].tolist() == circuit and graph.nodes["inp"].tolist() == circuit
        assert graph.nodes["out"].tolist() == [c]
        assert {tuple(e) for e in graph.edges["out|act"]} == {(c, k) for k in circuit}
    # masking everything outside class 0's graph leaves its logit, hence class-0 decisions, unchanged
    keep = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    with torch.no_grad(), sa_frame.Masking(net, {"act": keep}):
        masked = net(x)
    torch.testing.assert_close(masked[:, 0], net(x)[:, 0].detach())


def test_keep_one_keeps_everything_and_keep_fraction_sizes():
    maps = planted_maps(planted_circuit(), torch.rand(16, 4, dtype=torch.float64) + 0.1)
    full = dependency_graph(maps, ["out|act", "act|inp"], top=None, keep=1.0)
    assert full.nodes["act"].tolist() == [0, 1, 2, 3] and len(full.edges["out|act"]) == 8
    half = dependency_graph(maps, ["out|act", "act|inp"], top=None, keep=0.25)
    assert len(half.nodes["act"]) == 1 and len(half.nodes["inp"]) == 1


SSA = ["run", "--estimator", "ssa", "--checkpoints", "features.2,features.5,features.8,features.10,fc",
       "--n", "64", "--quiet"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ssa") / "ssa.h5"
    code, _, err = cli(*SSA, "--out", out)
    assert code == 0, err
    return out


def test_ssa_eval_keep_one_is_the_unpruned_network(demo_run):
    code, _, err = cli("analyze", demo_run, "ssa-eval", "-o", "keep=[0.1,0.5,1.0]", "-o", "per_class=4",
                       "-o", "partitions=[valid]", "--quiet")
    assert code == 0, err
    with h5py.File(demo_run) as f:
        g = f["analyses/ssa-eval"]
        accuracy, unpruned = g["accuracy"][()], g["unpruned_accuracy"][()]
        tpr, fpr, balanced, size = g["tpr"][()], g["fpr"][()], g["balanced_accuracy"][()], g["size"][()]
    assert accuracy.shape == (1, 3) and tpr.shape == (1, 10, 3)
    assert accuracy[0, -1] == unpruned[0]  # keep 1.0: nothing masked, exactly the network
    np.testing.assert_allclose(balanced, (tpr + 1 - fpr) / 2)
    np.testing.assert_allclose(size[:, -1], 1.0)
    assert accuracy[0, 0] <= accuracy[0, -1]


def test_ssa_graph_and_cluster_outputs_agree(demo_run, tmp_path):
    code, _, err = cli("analyze", demo_run, "ssa-graph", "-o", "mode=local", "-o", "branching=4", "-o", "b_prime=4",
                       "--quiet")
    assert code == 0, err
    code, _, err = cli("analyze", demo_run, "ssa-cluster", "-o", "keep=0.5", "--quiet")
    assert code == 0, err
    with h5py.File(demo_run) as f:
        nodes = {k: f["analyses/ssa-graph/nodes"][k][()] for k in f["analyses/ssa-graph/nodes"]}
        size = f["analyses/ssa-graph/size"][()]
        bags, jaccard = f["analyses/ssa-cluster/bags"][()], f["analyses/ssa-cluster/jaccard"][()]
    assert np.all(nodes["features.2"].sum(1) <= 4) and nodes["fc"][0].tolist() == [1] + [0] * 9
    assert size[0].tolist() == [1, 4, 4, 4, 4]
    inter = bags.astype(int) @ bags.T.astype(int)
    union = bags.sum(1)[:, None] + bags.sum(1)[None] - inter
    np.testing.assert_allclose(jaccard, inter / union)
    assert bags.shape == (10, 64 + 64 + 32 + 16)


def test_ssa_analyses_refuse_other_runs(tmp_path):
    out = tmp_path / "aug.h5"
    assert cli("run", "--quick", "--n", "16", "--quiet", "--out", out)[0] == 0
    code, _, err = cli("analyze", out, "ssa-graph")
    assert code == 2 and "reads step-wise runs" in err


def test_ssa_ablation_drops_equal_single_masked_forwards(demo_run):
    from scipy.stats import spearmanr

    code, _, err = cli("analyze", demo_run, "ssa-ablation", "-o", "per_class=2", "--quiet")
    assert code == 0, err
    with h5py.File(demo_run) as f:
        g = f["analyses/ssa-ablation/checkpoints/features.10"]
        drop, importance, rho = g["drop"][()], g["importance"][()], float(g["rho"][()])
        base = float(g["base_accuracy"][()])
    assert drop.shape == (64,) and importance.shape == (64,)
    if np.ptp(drop) > 0:
        assert rho == pytest.approx(spearmanr(importance, drop).statistic)
    # neuron j zeroed alone, one plain forward: the same accuracy drop
    rebuilt = sa_frame.rebuild(sa_frame.ResultsFile(demo_run))
    classes, index, part = rebuilt.evaluation_images(2, "valid")
    x = rebuilt.inputs(rebuilt.source.load(classes, index, part))
    j = int(np.argmax(drop))
    mask = torch.ones(64, 8, 8)
    mask[j] = 0
    with torch.no_grad(), sa_frame.Masking(rebuilt.net, {"features.10": mask}):
        accuracy = float((rebuilt.net(x).argmax(1) == classes).float().mean())
    with torch.no_grad():
        unmasked = float((rebuilt.net(x).argmax(1) == classes).float().mean())
    assert unmasked == pytest.approx(base) and base - accuracy == pytest.approx(drop[j])
