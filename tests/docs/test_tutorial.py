"""docs/plugins/tutorial.md as written: its file blocks are the example distribution's files,
and every Python block runs and keeps the plugin contracts."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import sa_frame
from sa_frame.testing import check_estimator, check_model

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "plugins" / "tutorial.md"
EXAMPLE = ROOT / "examples" / "sa-frame-vignette"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


def block(marker: str) -> str:
    found = [b for b in blocks("python") if marker in b]
    assert len(found) == 1, f"{len(found)} python blocks of the tutorial contain {marker!r}"
    return found[0]


def run(code: str) -> dict:
    """The block's names, executed as a module of its own (dataclasses look their module up)."""
    module = types.ModuleType("tutorial_block")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, str(PAGE), "exec"), module.__dict__)  # noqa: S102 - our own docs
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


@pytest.fixture
def example_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    for name in [m for m in sys.modules if m.startswith("sa_frame_vignette")]:
        del sys.modules[name]


def test_the_file_blocks_are_the_example_s_files():
    named = [b for b in blocks("python") if b.startswith("# sa_frame_vignette/")]
    assert len(named) == 2
    for text in named:
        first, rest = text.split("\n", 1)
        assert (EXAMPLE / first[2:]).read_text() == rest, f"{first[2:]} differs from the tutorial"
    toml = blocks("toml")[0].split("\n", 1)[1]
    example_toml = (EXAMPLE / "pyproject.toml").read_text()
    assert all(line in example_toml.splitlines() for line in toml.splitlines() if line)


def test_the_test_block_passes_and_registers_both_augmentations(example_importable):
    namespace = run(block("def test_the_augmentations_keep_the_contract"))
    namespace["test_the_augmentations_keep_the_contract"]()
    import sa_frame_vignette

    try:
        namespace["test_the_entry_point_registers_both"]()
        invert = sa_frame.lookup("augmentation", "invert")
        assert invert.params == {} and sa_frame.lookup("augmentation", "vignette").identity == {"strength": 0.0}
    finally:
        sa_frame.registry().remove_plugin(sa_frame_vignette)
    assert "vignette" not in sa_frame.registered("augmentation")


def test_the_model_block_keeps_the_model_contract():
    namespace = run(block("class TinyNet(Model)"))
    model = namespace["TinyNet"]()
    check_model(model)
    assert model.build().head.out_features == len(model.class_names) == 10


def test_the_estimator_block_keeps_the_contract_and_gives_the_moment():
    namespace = run(block("class MomentEstimator(Estimator)"))
    estimator = namespace["MomentEstimator"]()
    check_estimator(estimator, n=600)

    class Plugin:
        @sa_frame.hookimpl
        def register_estimators(self, register):
            register(estimator)

    plugin = Plugin()
    sa_frame.registry().add_plugin(plugin, provider="tutorial")
    try:
        spec = {"num_vars": 1, "names": ["x"], "bounds": [[0.0, 1.0]]}
        res = sa_frame.estimate(spec, lambda x: x[:, 0], "moment", n=8192, seed=0, power=2)
    finally:
        sa_frame.registry().remove_plugin(plugin)
    assert abs(float(np.asarray(res["moment"]).ravel()[0]) - 1 / 3) < 0.01  # E[U^2] = 1/3
