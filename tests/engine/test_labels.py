"""Labels in the network's class space: a data folder of a subset of ImageNet classes, named
by output index or WordNet id or mapped by a class-map file, is compared with the right
outputs; plain names get a warning. Weights files as users have them."""

from __future__ import annotations

import json

import pytest
import torch

import sa_frame
from sa_frame import UsageError
from sa_frame.engine.labels import label_warning, network_labels
from tests.cli_runner import cli


class Folder(sa_frame.ImageSet):
    def __init__(self, classes, class_ids=None):
        self.classes, self.partitions, self.class_ids = list(classes), ["all"], class_ids

    def counts(self, partition):
        return torch.ones(len(self.classes), dtype=torch.long)

    def load(self, classes, index, partition):
        return torch.zeros(len(classes), 3, 8, 8)


@pytest.fixture(scope="module")
def resnet():
    return sa_frame.lookup("model", "resnet18")


def test_folder_names_map_to_output_indices(resnet, tmp_path):
    assert network_labels(Folder(["967_espresso", "281"]), resnet, 1000).network_classes == [967, 281]
    wnids = network_labels(Folder(["n07920052", "n02123045"]), resnet, 1000)
    assert wnids.network_classes == [967, 281] and "class ids" in wnids.how
    own = network_labels(Folder(["coffee", "cat"], ["n07920052", "n02123045"]), resnet, 1000)
    assert own.network_classes == [967, 281] and own.how == "the data source's class ids"
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"coffee": 967, "cat": "n02123045"}))
    assert network_labels(Folder(["coffee", "cat"]), resnet, 1000, str(mapping)).network_classes == [967, 281]


def test_unmapped_subset_gets_a_warning_and_bad_maps_one_line(resnet, tmp_path):
    plain = network_labels(Folder(["coffee", "cat"]), resnet, 1000)
    assert plain.network_classes is None
    assert "2 classes but the network 1000 outputs" in label_warning(plain, 2, 1000)
    assert label_warning(plain, 1000, 1000) == ""  # a full label set: indices are the outputs
    assert network_labels(Folder(["1200_x"]), resnet, 1000).network_classes is None  # beyond the head
    mapping = tmp_path / "map.yaml"
    mapping.write_text("coffee: 967\n")
    with pytest.raises(UsageError, match="class map .* has no entry for class 'cat'"):
        network_labels(Folder(["coffee", "cat"]), resnet, 1000, str(mapping))
    mapping.write_text("coffee: 967\ncat: n99999999\n")
    with pytest.raises(UsageError, match="'cat' -> 'n99999999' is not an output index or a class id of resnet18"):
        network_labels(Folder(["coffee", "cat"]), resnet, 1000, str(mapping))


def test_weights_files_in_the_forms_users_have(resnet, tmp_path):
    from safetensors.torch import save_file

    net = resnet.build("random")
    state = net.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    for name in ("w.safetensors", "wrapped.pt"):
        loaded = resnet.build(str(tmp_path / name))
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    partial = {k: v for k, v in state.items() if not k.startswith("layer4")} | {"extra.weight": torch.zeros(1)}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(UsageError, match=r"missing key 'layer4.0.conv1.weight' \(and \d+ more: 'layer4.0.bn1.weight', "
                                         r".*, \.\.\.\); unexpected key 'extra.weight'"):
        resnet.build(str(tmp_path / "partial.pt"))
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(UsageError, match="is not a readable safetensors"):
        resnet.build(str(tmp_path / "bad.safetensors"))


def test_timm_model_on_a_subset_folder_names_its_classes(tmp_path):
    """single-class on a timm model with fewer data classes than head outputs (IndexError once),
    and accuracy on folders named by output index without a warning."""
    from PIL import Image

    for part in ("train", "val"):
        for cls in ("967_espresso", "281_tabby"):
            (tmp_path / "data" / part / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (48, 40), (40 * i, 90, 200)).save(tmp_path / "data" / part / cls / f"{i}.png")
    out = tmp_path / "r.h5"
    code, _, err = cli("run", "--model", "timm/test_resnet", "--weights", "random", "--data", tmp_path / "data",
                       "--aug", "hue,grayscale", "--n", "16", "--no-second-order", "--checkpoints", "fc", "--out", out,
                       "--quiet")
    assert code == 0, err
    code, text, err = cli("analyze", out, "single-class", "-o", "k=2", "-o", "top=3")
    assert code == 0, err
    names = sa_frame.ResultsFile(out).read("analyses")["single-class"]["class_names"]
    assert names.shape == (2, 3) and all(n in sa_frame.lookup("model", "timm/test_resnet").class_names
                                         for n in names.ravel())
    code, _, err = cli("analyze", out, "accuracy", "-o", "per_class=2", "-o", "n_inner=1", "--quiet")
    assert code == 0, err
    assert str(sa_frame.ResultsFile(out).read("analyses")["accuracy"]["warning"]) == ""
