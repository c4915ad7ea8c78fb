"""Every built-in plugin passes the checks that `sa_frame.testing` offers plugin authors."""

from __future__ import annotations

import pytest

import sa_frame
from sa_frame.testing import (
    check_augmentation,
    check_data_source,
    check_estimator,
    check_model,
    check_perturbation,
    check_segmenter,
)

AUGMENTATIONS = sorted(sa_frame.registered("augmentation"))
ESTIMATORS = sorted(sa_frame.registered("estimator"))


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_builtin_augmentation_keeps_the_contract(name):
    check_augmentation(sa_frame.lookup("augmentation", name))


@pytest.mark.parametrize("name", sorted(sa_frame.registered("segmenter")))
def test_builtin_segmenter_keeps_the_contract(name):
    if name in ("slic", "felzenszwalb", "quickshift", "watershed"):
        pytest.importorskip("skimage")
    check_segmenter(sa_frame.lookup("segmenter", name))


@pytest.mark.parametrize("name, options", [("scale", None), ("scale", {"low": 0.5, "high": 1.5}),
                                           ("inpaint", {"baseline": "zeros"}), ("inpaint", {"baseline": "mean"}),
                                           ("inpaint", {"baseline": "blur", "sigma": 2.0})])
def test_builtin_perturbation_keeps_the_contract(name, options):
    check_perturbation(sa_frame.lookup("perturbation", name), options)


def test_checks_catch_a_perturbation_that_leaks_across_regions():
    import torch

    class Leaky(sa_frame.Perturbation):
        name = "leaky"

        def variable(self, options):
            return sa_frame.Uniform(0.0, 2.0)

        def identity(self, options):
            return 1.0

        def apply(self, images, labels, values, options):
            return (images * values.to(images.dtype).mean(1).view(-1, 1, 1, 1)).clamp(0, 1)

    with pytest.raises(AssertionError, match="changed pixels of other regions"):
        check_perturbation(Leaky())
    assert torch.is_tensor(Leaky().apply(torch.rand(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long),
                                         torch.ones(1, 1), None))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_builtin_estimator_keeps_the_contract(name):
    # four Saltelli blocks of 16 base points; the others' quick sizes make several blocks
    if name == "ssa":  # it groups by the class variable; 16 rows per block make four blocks
        problem = sa_frame.Problem({"c": sa_frame.Uniform(-1.0, 1.0), "a": sa_frame.Switch(), "b": sa_frame.Switch(),
                                    "d": sa_frame.Uniform(0.0, 1.0), "class": sa_frame.Categorical(3)})
        check_estimator(sa_frame.lookup("estimator", name), {"rows_per_block": 16}, problem=problem)
        return
    check_estimator(sa_frame.lookup("estimator", name), {"points_per_block": 16} if name == "sobol" else None)


def test_binned_contrast_keeps_the_contract():
    check_estimator(sa_frame.lookup("estimator", "contrast"), {"mode": "binned"})


@pytest.mark.parametrize("name", ["demo-cnn", "resnet18", "alexnet"])
def test_builtin_model_keeps_the_contract(name):
    check_model(sa_frame.lookup("model", name), weights="imagenet" if name == "demo-cnn" else "random")


def test_builtin_data_sources_keep_the_contract(tmp_path):
    from PIL import Image

    for part in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / part / cls).mkdir(parents=True)
            Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / part / cls / "a.png")
    check_data_source(sa_frame.lookup("data_source", "demo"), "demo")
    check_data_source(sa_frame.lookup("data_source", "folder"), str(tmp_path))


def test_checks_catch_a_broken_augmentation():
    """The augmentation check fails an augmentation that mixes images of a batch."""
    import torch

    from sa_frame import Augmentation, Uniform

    class Mixing(Augmentation):
        name = "mixing"
        params = {"w": Uniform(0.0, 1.0)}
        identity = {"w": 0.0}

        def apply(self, images, params):
            w = params["w"].to(images.dtype).view(-1, 1, 1, 1)
            return (1 - w) * images + w * images.mean(0, keepdim=True)

    with pytest.raises(AssertionError, match="differs from the same image augmented alone"):
        check_augmentation(Mixing())
    assert torch.is_tensor(Mixing()(torch.rand(2, 3, 8, 8), {"w": torch.zeros(2)}))
