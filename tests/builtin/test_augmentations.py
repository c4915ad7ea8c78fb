"""Built-in augmentations: equal to torchvision image by image, identities, Table A.1
distributions, the permuted chain, bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from scipy import stats

import sa_frame
from sa_frame import Problem, UsageError
from sa_frame.engine.chain import AugmentationChain, resolve_augmentations
from tests.cli_runner import cli

B = 4
RNG = torch.Generator().manual_seed(0)
IMAGES = torch.rand(B, 3, 224, 224, generator=RNG)
TOL = 1e-5


@pytest.fixture
def augs():
    return sa_frame.registered("augmentation")


def _per_image(fn, params):
    return torch.stack([fn(IMAGES[i], {k: float(v[i]) for k, v in params.items()}) for i in range(B)])


CASES = {
    "brightness": ({"factor": [0.1, 1.0, 1.7, 2.5]}, lambda im, p: F.adjust_brightness(im, p["factor"])),
    "contrast": ({"factor": [0.01, 1.0, 1.7, 3.5]}, lambda im, p: F.adjust_contrast(im, p["factor"])),
    "saturation": ({"factor": [0.01, 1.0, 1.7, 3.5]}, lambda im, p: F.adjust_saturation(im, p["factor"])),
    "hue": ({"factor": [-0.5, -0.1, 0.2, 0.5]}, lambda im, p: F.adjust_hue(im, p["factor"])),
    "gaussian_blur": ({"sigma": [0.1, 0.5, 1.3, 2.0]}, lambda im, p: F.gaussian_blur(im, [7, 7], [p["sigma"]] * 2)),
    "grayscale": ({}, lambda im, p: F.rgb_to_grayscale(im, 3)),
    "sharpness": ({}, lambda im, p: F.adjust_sharpness(im, 1.5)),
    "hflip": ({}, lambda im, p: F.horizontal_flip(im)),
    "rolling": ({"dy": [-44 / 224, 0.0, 0.1, 44 / 224], "dx": [0.05, -44 / 224, 0.0, 0.13]},
                lambda im, p: torch.roll(im, (round(p["dy"] * 224), round(p["dx"] * 224)), (-2, -1))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_torchvision_image_by_image(augs, name):
    values, reference = CASES[name]
    params = {k: torch.tensor(v) for k, v in values.items()}
    out = augs[name](IMAGES, params)
    assert (out - _per_image(reference, params)).abs().max() <= TOL


def test_erasing_equals_torchvision_erase_with_clipped_rectangle(augs):
    erasing = augs["erasing"]
    params = {"center_y": torch.tensor([0.2, 0.5, 0.8, 0.3]), "center_x": torch.tensor([0.8, 0.5, 0.2, 0.7]),
              "scale": torch.tensor([0.33, 0.02, 0.2, 0.1]),
              "log_ratio": torch.tensor([math.log(3.3), 0.0, math.log(0.3), 0.5])}
    top, left, h, w = erasing.rectangles(IMAGES, params)
    assert h.tolist()[0] == 224  # clipped, not skipped as in the research code
    reference = torch.stack([F.erase(IMAGES[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), torch.tensor(0.0))
                             for i in range(B)])
    assert torch.equal(erasing(IMAGES, params), reference)


def test_every_erasing_draw_erases_something(augs):
    problem = Problem(*_group_problem(["erasing"]))
    values = problem.values(torch.rand(2000, problem.n_vars, dtype=torch.float64))
    params = {p: values[:, i].float() for i, p in enumerate(augs["erasing"].params)}
    _, _, h, w = augs["erasing"].rectangles(torch.zeros(2000, 3, 224, 224), params)
    assert bool(((h > 0) & (w > 0)).all())


def test_rotation_step_equals_torchvision(augs):
    """Rotation without the crop equals torchvision's bilinear rotate. Tolerance 5e-5, not 1e-5:
    torchvision builds its sampling grid with other float32 arithmetic, and on noise images
    bilinear interpolation turns grid differences of ~1e-6 px into value differences of ~3e-5."""
    rotation = type(augs["rotation"])(crop=False)
    angle = torch.tensor([-10.0, -3.0, 5.0, 10.0])
    reference = torch.stack([F.rotate(IMAGES[i], float(angle[i]), interpolation=F.InterpolationMode.BILINEAR)
                             for i in range(B)])
    assert (rotation(IMAGES, {"angle": angle}) - reference).abs().max() <= 5e-5


def test_rotation_crop_removes_black_corners(augs):
    white = torch.ones(3, 3, 224, 224)
    out = augs["rotation"](white, {"angle": torch.tensor([-10.0, 4.0, 10.0])})
    assert out.min() > 0.99  # no black corner survives the crop (bilinear edge pixels may blend a little)
    uncropped = type(augs["rotation"])(crop=False)(white, {"angle": torch.tensor([-10.0, 4.0, 10.0])})
    assert uncropped[:, :, 0, 0].max() == 0  # without the crop the corners are black


def test_elliptic_blur_only_inside_the_ellipse(augs):
    ellipse = augs["elliptic_blur"]
    params = {"a": torch.tensor([20 / 224]), "b": torch.tensor([10 / 224]), "shift_x": torch.tensor([0.1]),
              "shift_y": torch.tensor([-0.05]), "angle": torch.tensor([15.0])}
    mask = ellipse.masks(IMAGES[:1], params)[0]
    assert abs(int(mask.sum()) - math.pi * 20 * 10) < 0.03 * math.pi * 200  # area of the ellipse
    out = ellipse(IMAGES[:1], params)
    blurred = F.gaussian_blur(IMAGES[:1], [13, 13], [2.0, 2.0])
    assert torch.equal(out[0][:, ~mask], IMAGES[0][:, ~mask])
    assert (out[0][:, mask] - blurred[0][:, mask]).abs().max() <= TOL


@pytest.mark.parametrize("name", ["erasing", "rolling", "gaussian_blur", "brightness", "contrast", "saturation",
                                  "hue", "rotation", "elliptic_blur"])
def test_identity_parameters_are_a_no_op(augs, name):
    aug = augs[name]
    assert (aug(IMAGES, aug.identity_params(B)) - IMAGES).abs().max() <= 1e-6


def _group_problem(names):
    chain = AugmentationChain(resolve_augmentations(names), scheme=1, permute=False)
    return chain.variables()


def test_sampled_parameters_follow_table_a1():
    problem = Problem(*_group_problem(["a1", "a2"]))
    n = 20_000
    values = problem.values(torch.rand(n, problem.n_vars, dtype=torch.float64, generator=RNG)).numpy()
    col = {name: values[:, i] for i, name in enumerate(problem.names)}
    expected = {"erasing.center_y": (44 / 224, 180 / 224), "erasing.scale": (0.02, 0.33),
                "rolling.dx": (-44 / 224, 44 / 224),
                "gaussian_blur.sigma": (0.1, 2.0), "brightness.factor": (0.1, 2.5), "contrast.factor": (0.01, 3.5),
                "hue.factor": (-0.5, 0.5), "rotation.angle": (-10, 10), "elliptic_blur.angle": (-15, 15),
                "elliptic_blur.a": (10 / 224, 32 / 224), "elliptic_blur.shift_x": (-32 / 224, 32 / 224)}
    for name, (low, high) in expected.items():
        assert stats.kstest(col[name], stats.uniform(low, high - low).cdf).pvalue > 1e-3, name
    ratio = np.exp(col["erasing.log_ratio"])  # aspect ratio log-uniform on [0.3, 3.3]
    assert stats.kstest(np.log(ratio), stats.uniform(np.log(0.3), np.log(3.3 / 0.3)).cdf).pvalue > 1e-3
    assert ratio.min() >= 0.3 and ratio.max() <= 3.3
    for switch in ("sharpness.on", "grayscale.on", "hflip.on"):
        assert abs(col[switch].mean() - 0.5) < 0.015 and set(np.unique(col[switch])) == {0.0, 1.0}
    # pixel ranges at 224 px, integer bounds inclusive after rounding: rolls -44..44, centres 44..180
    rolls = np.round(col["rolling.dy"] * 224)
    assert rolls.min() == -44 and rolls.max() == 44
    centres = np.round(col["erasing.center_x"] * 224)
    assert centres.min() == 44 and centres.max() == 180


@pytest.mark.parametrize("scheme", [1, 2])
def test_chain_with_a_permutation_equals_one_by_one(scheme):
    augs = resolve_augmentations("a1,a2")
    chain = AugmentationChain(augs, scheme=scheme)
    blocks, groups = chain.variables()
    problem = Problem(blocks, groups)
    n = 6
    x = problem.values(torch.rand(n, problem.n_vars, dtype=torch.float64, generator=RNG))
    values = {name: x[:, i] for i, name in enumerate(problem.names)}
    images = torch.rand(n, 3, 64, 64, generator=RNG)
    out = chain.apply(images, values)
    orders = chain.permutation.decode(values["permutation"])
    for b in range(n):
        expected = images[b:b + 1].clone()
        for index in orders[b].tolist():
            aug = augs[index]
            on = values.get(f"{aug.name}.on")
            if chain.switched(aug) and on[b] != 1:
                continue
            expected = aug.apply(expected, {p: values[f"{aug.name}.{p}"][b:b + 1] for p in aug.params})
        assert torch.allclose(out[b], expected[0], atol=1e-6)
    # order matters: reversing the orders changes the result
    reverse = chain.permutation.encode(orders.flip(1)).double()
    assert not torch.allclose(chain.apply(images, {**values, "permutation": reverse}), out, atol=1e-3)


def test_scheme_two_skips_switched_off_augmentations():
    augs = resolve_augmentations(["brightness", "hflip"])
    chain = AugmentationChain(augs, scheme=2)
    blocks, groups = chain.variables()
    problem = Problem(blocks, groups)
    assert problem.names == ["brightness.on", "brightness.factor", "hflip.on", "permutation"]
    images = torch.rand(2, 3, 16, 16, generator=RNG)
    values = {"brightness.on": torch.tensor([0.0, 1.0]), "brightness.factor": torch.tensor([1.0, 0.5]),
              "hflip.on": torch.tensor([0.0, 0.0]), "permutation": torch.tensor([1.0, 0.0])}
    out = chain.apply(images, values)
    assert torch.equal(out[0], images[0]) and torch.allclose(out[1], images[1] * 0.5)


def test_sets_and_unknown_names():
    assert [a.name for a in resolve_augmentations("a1")] == ["erasing", "sharpness", "rolling", "grayscale",
                                                            "gaussian_blur"]
    assert len(resolve_augmentations("a2")) == 7
    with pytest.raises(UsageError, match=r"unknown augmentation or set 'erasin' \(did you mean 'erasing'"):
        resolve_augmentations("a1,erasin")


def test_bad_input_names_augmentation_and_parameter(augs):
    with pytest.raises(UsageError, match="'rotation', parameter 'angle': value 45 is outside its range"):
        augs["rotation"](IMAGES, {"angle": torch.tensor([45.0, 0, 0, 0])})
    with pytest.raises(UsageError, match="'hue', parameter 'factor': expected one value per image"):
        augs["hue"](IMAGES, {"factor": torch.tensor(0.1)})
    with pytest.raises(UsageError, match="'grayscale': images must be float"):
        augs["grayscale"]((IMAGES * 255).to(torch.uint8), {})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    chain = AugmentationChain(resolve_augmentations("a1,a2"), scheme=2)
    problem = Problem(*chain.variables())
    x = problem.values(torch.rand(8, problem.n_vars, dtype=torch.float64, generator=RNG))
    values = {name: x[:, i] for i, name in enumerate(problem.names)}
    images = torch.rand(8, 3, 64, 64, generator=RNG)
    cpu = chain.apply(images, values)
    gpu = chain.apply(images.cuda(), {k: v.cuda() for k, v in values.items()})
    assert (gpu.cpu() - cpu).abs().max() <= 1e-4


def test_augment_preview_command(tmp_path):
    out = tmp_path / "grid.png"
    code, text, err = cli("augment", "--aug", "a1", "--n", "3", "--out", out)
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in text and "(12 images)" in text  # 4 + 5 alone + 3 chains
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)).save(image)
    code, _, err = cli("augment", "--aug", "hue", "--image", image, "--n", "1", "--out", tmp_path / "g2.png")
    assert code == 0, err
    code, _, err = cli("augment", "--data", "demo", "--n", "2", "--out", tmp_path / "demo.png")
    assert code == 0 and (tmp_path / "demo.png").stat().st_size > 1000, err
    code, _, err = cli("augment", "--data", "demo", "--image", image)
    assert code == 2 and "either --image or --data" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, _, err = cli("augment", "--image", bad, "--out", tmp_path / "g3.png")
    assert code == 2 and re.search("cannot read image .*bad.png", err)
