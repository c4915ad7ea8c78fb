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
