"""Influence against known answers: Captum's NaiveInfluenceFunction, the exact solve for CG and LiSSA,
decompositions, symmetry, HVP modes against each other and finite differences, leave-one-out retraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sa_frame
from sa_frame import NotConverged, UsageError
from sa_frame.engine.parameter_blocks import BlockCurvature, NetworkFunctions, hessian_batches, parameter_blocks


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()


def data(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


TRAIN, TEST = data(60), data(5, seed=2)


def test_exact_equals_captum_naive_influence_per_layer(tmp_path):
    captum = pytest.importorskip("captum.influence")
    net = mlp()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    damping = 0.3
    ours = sa_frame.influence(net, TRAIN, TEST, solver="exact", damping=damping, layers=["2"])
    dataset = torch.utils.data.TensorDataset(*TRAIN)
    naive = captum.NaiveInfluenceFunction(
        net, dataset, str(tmp_path / "w.pt"), layers=["2"], loss_fn=torch.nn.CrossEntropyLoss(reduction="none"),
        batch_size=60, projection_dim=18, hessian_reg=damping * len(TRAIN[1]), hessian_inverse_tol=-1e30,
        checkpoints_load_func=lambda m, p: (m.load_state_dict(torch.load(p)), 1.0)[1])
    theirs = naive.influence(TEST, show_progress=False).detach().numpy()  # (T, n) = -I / n
    np.testing.assert_allclose(-ours.scores[0] / len(TRAIN[1]), theirs, rtol=1e-8, atol=1e-12)


def test_cg_and_lissa_converge_to_exact_and_a_small_scale_diverges():
    net = mlp()
    exact = sa_frame.influence(net, TRAIN, TEST, solver="exact", damping=0.3)
    cg = sa_frame.influence(net, TRAIN, TEST, solver="cg", solver_options={"tol": 1e-10}, damping=0.3)
    lam_max = max(r.lambda_max for r in exact.reports) + 0.3
    lissa = sa_frame.influence(net, TRAIN, TEST, solver="lissa", damping=0.3, batch_size=60,
                               solver_options={"scale": 1.2 * lam_max, "depth": 3000, "tol": 1e-9})
    scale = np.abs(exact.scores).max()
    assert np.abs(cg.scores - exact.scores).max() / scale < 1e-8
    assert np.abs(lissa.scores - exact.scores).max() / scale < 1e-8
    with pytest.raises(NotConverged, match="diverged"):
        sa_frame.influence(net, TRAIN, TEST, solver="lissa", damping=0.3, batch_size=60,
                           solver_options={"scale": lam_max / 3, "depth": 200})
    with pytest.raises(NotConverged, match="depth"):  # too shallow: reported, not returned
        sa_frame.influence(net, TRAIN, TEST, solver="lissa", damping=0.01, batch_size=60,
                           solver_options={"depth": 3, "tol": 1e-6})


def test_multi_rhs_cg_equals_single_rhs():
    net = mlp()
    both = sa_frame.influence(net, TRAIN, TEST, solver="cg", solver_options={"tol": 1e-12}, damping=0.3)
    one = sa_frame.influence(net, TRAIN, (TEST[0][:1], TEST[1][:1]), solver="cg", solver_options={"tol": 1e-12},
                             damping=0.3)
    np.testing.assert_allclose(one.scores[:, 0], both.scores[:, 0], rtol=1e-9, atol=1e-14)


def test_masked_layers_sum_to_the_total_and_block_differs():
    net = mlp()
    masked = sa_frame.influence(net, TRAIN, TEST, solver="exact", damping=1.0, layer_mode="masked")
    block = sa_frame.influence(net, TRAIN, TEST, solver="exact", damping=1.0, layer_mode="block")
    np.testing.assert_allclose(masked.scores[:2].sum(0), masked.scores[2], rtol=1e-10, atol=1e-14)
    corr = np.corrcoef(block.scores[2].ravel(), masked.scores[2].ravel())[0, 1]
    assert corr < 0.9999 and np.abs(block.scores[2] - masked.scores[2]).max() > 1e-3  # not eq. 5


class TwoHeads(torch.nn.Module):
    """Two independent linear heads on disjoint inputs: H is block-diagonal across them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b = torch.nn.Linear(2, 3).double(), torch.nn.Linear(2, 3).double()

    def forward(self, x):
        return self.a(x[:, :2]) + self.b(x[:, 2:])


def test_block_equals_masked_when_the_hessian_is_block_diagonal():
    """With logits a(x1) + b(x2), cross terms do not vanish in general; with one input zero per example they do."""
    x, y = data(40)
    x[:20, 2:] = 0
    x[20:, :2] = 0  # each example feeds one head only (bias terms excepted, so drop biases from the blocks)
    net = TwoHeads()
    for head in (net.a, net.b):
        head.bias.requires_grad_(False)
    block = sa_frame.influence(net, (x, y), (x[:4], y[:4]), solver="exact", damping=0.1)
    masked = sa_frame.influence(net, (x, y), (x[:4], y[:4]), solver="exact", damping=0.1, layer_mode="masked")
    np.testing.assert_allclose(block.scores, masked.scores, rtol=1e-9, atol=1e-13)


def test_symmetry_and_gauss_newton_self_influence():
    net = mlp()
    points = (TRAIN[0][:8], TRAIN[1][:8])
    r = sa_frame.influence(net, TRAIN, points, solver="exact", damping=0.3, layer_mode="masked")
    square = r.scores[2][:, :8]
    np.testing.assert_allclose(square, square.T, rtol=1e-10, atol=1e-14)
    ggn = sa_frame.influence(net, TRAIN, points, solver="exact", damping=0.01, curvature="ggn",
                             self_influence=True)
    assert (ggn.self_influence <= 1e-12).all()  # I(j, j) = -gᵀ(G + λI)^-1 g <= 0 for PSD G
    np.testing.assert_allclose(ggn.self_influence[2, :8], np.diag(ggn.scores[2][:, :8]), rtol=1e-9)


def trained(x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> torch.nn.Module:
    net = mlp()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def test_duplicate_of_a_test_point_is_its_top_proponent_in_every_layer():
    """Test points the model gets wrong, each duplicated into the training set: the duplicate's gradient equals the
    test gradient and is the largest around (a point the model has not absorbed), so it is the top proponent."""
    net = trained(*TRAIN)
    with torch.no_grad():
        wrong = (net(TEST[0]).argmax(1) + 1) % 3
    for t in range(len(wrong)):
        x, y = TRAIN[0].clone(), TRAIN[1].clone()
        x[17], y[17] = TEST[0][t], wrong[t]
        for curvature in ("hessian", "ggn"):
            r = sa_frame.influence(net, (x, y), (x[17:18], y[17:18]), solver="exact", damping="auto",
                                   curvature=curvature)
            assert [int(r.top(1, row)[0, 0]) for row in r.rows] == [17] * len(r.rows), (t, curvature)


def test_hvp_modes_agree_and_match_finite_differences():
    net = mlp()
    functions = NetworkFunctions(net)
    block = parameter_blocks(net)[0]
    batches = hessian_batches(*TRAIN, 60)
    v = torch.randn(3, block.dim, dtype=torch.float64)
    double = BlockCurvature(functions, block, batches).matvec(v)
    forward = BlockCurvature(functions, block, batches, hvp="jvp").matvec(v)
    np.testing.assert_allclose(double.numpy(), forward.numpy(), rtol=1e-10, atol=1e-13)
    w0, eps = functions.flat(block), 1e-5
    from torch.func import grad

    g = grad(lambda w: functions.loss(block, w, *TRAIN))
    column = (g(w0 + eps * v[0]) - g(w0 - eps * v[0])) / (2 * eps)
    np.testing.assert_allclose(double[0].numpy(), column.numpy(), rtol=1e-6, atol=1e-9)


def test_predicted_influence_matches_leave_one_out_retraining():
    """L2 logistic regression (convex): -I/n against the test-loss change after removing each of 12 points."""
    g = torch.Generator().manual_seed(5)
    n, l2 = 80, 1e-2
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = (x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.5 * torch.randn(n, generator=g,
                                                                                     dtype=torch.float64) > 0).long()
    xt, yt = torch.randn(1, 3, generator=g, dtype=torch.float64), torch.tensor([1])

    def fit(keep: torch.Tensor) -> torch.nn.Linear:
        model = torch.nn.Linear(3, 2).double()
        torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
        opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                                tolerance_change=1e-15, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            params = torch.cat([p.flatten() for p in model.parameters()])
            # the removal of one point leaves the mean over n - 1 points: weights n / (n - 1) keep eq. 2's scale
            loss = torch.nn.functional.cross_entropy(model(x[keep]), y[keep], reduction="sum") / n \
                + 0.5 * l2 * params.pow(2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        return model

    full = fit(torch.ones(n, dtype=torch.bool))
    r = sa_frame.influence(full, (x, y), (xt, yt), solver="exact", damping=0.0, l2=l2, layer_mode="masked")
    predicted = -r.scores[-1][0] / n  # test-loss change when a point is removed
    chosen = np.argsort(-np.abs(predicted))[:12]

    def test_loss(model):
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(xt), yt))

    base = test_loss(full)
    actual = []
    for j in chosen:
        keep = torch.ones(n, dtype=torch.bool)
        keep[j] = False
        actual.append(test_loss(fit(keep)) - base)
    assert np.corrcoef(predicted[chosen], actual)[0, 1] >= 0.95


def test_bad_inputs_are_one_line_errors():
    net = mlp()
    with pytest.raises(UsageError, match="no trainable parameters"):
        sa_frame.influence(net, TRAIN, TEST, layers=["1"])
    with pytest.raises(UsageError, match="not a module.*did you mean"):
        sa_frame.influence(net, TRAIN, TEST, layers=["22"])
    with pytest.raises(UsageError, match="damping must be"):
        sa_frame.influence(net, TRAIN, TEST, damping=-1.0)
    with pytest.raises(UsageError, match="did you mean"):
        sa_frame.influence(net, TRAIN, TEST, solver="lisa")
    with pytest.raises(NotConverged, match="not positive definite"):
        sa_frame.influence(net, TRAIN, TEST, solver="exact", damping=0.0, layer_mode="masked")
