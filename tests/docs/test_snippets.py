"""The Python snippets of the README and the docs run as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import sa_frame
from sa_frame.testing import check_segmenter

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def run_block(page: str, marker: str) -> dict:
    blocks = [b for b in python_blocks(page) if marker in b]
    assert len(blocks) == 1, f"{page}: {len(blocks)} python blocks contain {marker!r}"
    namespace: dict = {}
    exec(compile(blocks[0], f"{page}:{marker}", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def test_the_segmenter_example_keeps_the_contract():
    namespace = run_block("regions.md", "class Stripes")
    stripes = namespace["Stripes"]()
    check_segmenter(stripes, {"stripes": 8})
    labels = stripes.segment(torch.rand(2, 3, 16, 16), None, stripes.options({"stripes": 4}))
    assert labels[0, :, 0].tolist() == [k // 4 for k in range(16)]


def test_the_relevance_example_gives_lower_channel_means():
    from tests.ssa.test_relevance import context, linear_net

    namespace = run_block("ssa.md", "class LowerMeans")
    net = linear_net()
    x = torch.randn(3, 4, dtype=torch.float64)
    out = namespace["LowerMeans"]().compute(context(net, x, ["inp", "l1", "l2"]), None)
    torch.testing.assert_close(out["l2|l1"], net.l1(x).detach()[:, None, :].expand(-1, 2, -1))


def test_the_tensor_api_example_runs():
    namespace = run_block("ssa.md", "relevance_maps")
    said = namespace["said_one"]
    assert said.dtype == torch.bool and said.shape == (1000,)
    assert isinstance(namespace["graph"], sa_frame.Graph)


def test_the_readme_network_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_block("../README.md", "sa_frame.run(net")
    table, st = namespace["table"], namespace["st"]
    assert table.shape == (8, 5) and st.shape == (8, 8, 32, 32) and 0 <= st.min() <= st.max() <= 1
    assert namespace["again"].values == ["S1", "ST"] and (tmp_path / "my-net.png").stat().st_size > 10_000


def test_the_readme_function_example_gives_ishigami_s_indices():
    namespace = run_block("../README.md", "def ishigami")
    shares = namespace["res"]["shapley"][:, 0]  # groups g1 = {x1, x3}, g2 = {x2}: analytic 0.558, 0.442
    assert abs(shares.sum() - 1) < 1e-9 and abs(shares[0] - 0.558) < 0.05


def test_the_salib_example_of_the_estimators_page():
    namespace = run_block("estimators.md", "num_vars")
    st = dict(zip(namespace["res"]["names"], namespace["res"]["ST"][:, 0]))
    assert list(st) == ["x1", "x2", "x3"]
    assert abs(st["x1"] - 0.558) < 0.05 and abs(st["x2"] - 0.442) < 0.05 and abs(st["x3"] - 0.244) < 0.05


def test_the_influence_example_runs_its_own_asserts():
    namespace = run_block("influence.md", "sa_frame.influence(")
    assert namespace["result"].scores.shape[0] == 3


def test_the_analysis_example_gives_the_share_of_dominated_activations(tmp_path):
    from tests.cli_runner import cli

    namespace = run_block("analyses.md", "class SensitiveUnits")
    out = tmp_path / "shapley.h5"
    code, _, err = cli("run", "--estimator", "shapley", "--n", "8", "--n-outer", "2", "--n-inner", "2", "--out", out,
                       "--quiet")
    assert code == 0, err
    plugin = namespace["Plugin"]()
    sa_frame.registry().add_plugin(plugin, provider="docs")
    try:
        code, _, err = cli("analyze", out, "sensitive-units", "-o", "threshold=0.3", "--no-figures")
        assert code == 0, err
    finally:
        sa_frame.registry().remove_plugin(plugin)
    stored = float(sa_frame.ResultsFile(out).read("analyses")["sensitive-units"]["share"])
    shares = sa_frame.maps.sensitivity(sa_frame.ResultsFile(out), "shapley", "fc")
    assert stored == (shares.max(axis=0) > 0.3).mean()


def test_the_testing_page_example_passes(monkeypatch):
    import sys

    monkeypatch.syspath_prepend(str(DOCS.parent / "examples" / "sa-frame-vignette"))
    try:
        namespace = run_block("plugins/testing.md", "def test_the_augmentations_keep_the_contract")
        namespace["test_the_augmentations_keep_the_contract"]()
        namespace["test_every_registered_model_builds"]()
    finally:
        for name in [m for m in sys.modules if m.startswith("sa_frame_vignette")]:
            del sys.modules[name]
