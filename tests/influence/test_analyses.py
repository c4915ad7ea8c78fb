"""The influence analyses against NumPy computations over the kept score matrix, and the pictures' pixels against
the data source's images."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import sa_frame
from sa_frame.engine.plan import open_data
from tests.cli_runner import cli

RUN = ["--layers", "features.0,fc", "--solver", "exact", "--train-per-class", "3", "--test-per-class", "1",
       "--top-k", "5", "--batch-size", "16", "--hessian-samples", "4", "--disturbances", "original,white_background",
       "--keep-scores", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("influence") / "two.h5"
    code, _, err = cli("influence", *RUN, "--out", out)
    assert code == 0, err
    with h5py.File(out) as f:
        tree = {k: f[f"influence/{k}"][()] for k in ("scores", "train/classes", "test/classes", "test/condition",
                                                       "proponents/index", "train/index")}
    return out, tree


def analyze(path, name, *options):
    code, out, err = cli("analyze", path, name, *[x for o in options for x in ("-o", o)])
    assert code == 0, err
    with h5py.File(path) as f:
        group = f[f"analyses/{name}"]
        return {k: group[k][()] for k in group if isinstance(group[k], h5py.Dataset)}, out


def test_summary_names_the_class_with_the_most_negative_mean(run):
    path, t = run
    outputs, printed = analyze(path, "influence-summary")
    scores, train_classes = t["scores"], t["train/classes"]
    means = np.stack([scores[..., train_classes == c].mean(-1) for c in range(10)], -1)  # (3, 20, 10)
    for k in range(2):
        for j, y in enumerate(outputs["test_classes"]):
            pick = (t["test/condition"] == k) & (t["test/classes"] == y)
            np.testing.assert_allclose(outputs["mean_class_influence"][k, j], means[:, pick].mean(1), rtol=1e-10)
            np.testing.assert_array_equal(outputs["top_class"][k, j], means[:, pick].mean(1).argmin(-1))
    own = train_classes[scores.argmin(-1)] == t["test/classes"][None]  # (3, 20)
    np.testing.assert_allclose(outputs["own_class_share"], np.stack([own[:, t["test/condition"] == k].mean(1)
                                                                     for k in range(2)]))
    assert "white_background" in printed and "test class" in printed


def test_layers_means_over_training_images_and_top_k(run):
    path, t = run
    outputs, _ = analyze(path, "influence-layers")
    scores = t["scores"]
    for k in range(2):
        pick = t["test/condition"] == k
        np.testing.assert_allclose(outputs["mean"][k], scores[:, pick].mean((1, 2)), rtol=1e-10)
        np.testing.assert_allclose(outputs["mean_proponents"][k], np.sort(scores[:, pick], -1)[..., :5].mean((1, 2)),
                                   rtol=1e-10)
        np.testing.assert_allclose(outputs["mean_opponents"][k], np.sort(scores[:, pick], -1)[..., -5:].mean((1, 2)),
                                   rtol=1e-10)


def test_cluster_pearson_of_layer_profiles(run, tmp_path):
    path, t = run
    outputs, _ = analyze(path, "influence-cluster")
    r = np.corrcoef(t["scores"][0].ravel(), t["scores"][1].ravel())[0, 1]
    np.testing.assert_allclose(outputs["pearson"], [[1, r], [r, 1]], rtol=1e-10)
    np.testing.assert_allclose(outputs["linkage"][0, 2], 1 - r, rtol=1e-10)  # two leaves: one merge at 1 - r
    only, _ = analyze(path, "influence-cluster", "condition=white_background", "profile=class-means")
    classes = t["train/classes"]
    means = np.stack([t["scores"][:2, 10:][..., classes == c].mean(-1) for c in range(10)], -1)
    np.testing.assert_allclose(only["pearson"][0, 1], np.corrcoef(means[0].ravel(), means[1].ravel())[0, 1],
                               rtol=1e-10)
    code, _, err = cli("analyze", path, "influence-cluster", "-o", "condition=style")
    assert code == 2 and "not in this run" in err


def test_top_picture_shows_the_stored_proponents(run):
    path, t = run
    outputs, _ = analyze(path, "influence-top", "tests=4", "k=2")
    rows = outputs["test_rows"]
    np.testing.assert_array_equal(rows, [0, 10, 1, 11])  # image 0 under both conditions, then image 1
    np.testing.assert_array_equal(outputs["train_positions"], t["proponents/index"][:, rows, :2])
    source = open_data("demo", sa_frame.lookup("model", "demo-cnn").input_format())
    position = outputs["train_positions"][1, 2, 1]  # fc, test row 1, second proponent
    image = source.load(torch.tensor([int(t["train/classes"][position])]), torch.tensor([int(t["train/index"][position])]),
                        torch.tensor([list(source.partitions).index("train")]))[0]
    np.testing.assert_array_equal(outputs["train_images"][1, 2, 1], (image.numpy() * 255).round().astype(np.uint8))
    white = (outputs["test_images"] == 255).all(1).mean((1, 2))  # share of pure-white pixels per shown test image
    assert white[1] > 0.5 and white[3] > 0.5 and white[0] < 0.05 and white[2] < 0.05
    wide = Image.open(path.with_suffix(".influence-top.png")).size
    analyze(path, "influence-top", "tests=4", "k=1")
    narrow = Image.open(path.with_suffix(".influence-top.png")).size
    assert wide[0] / narrow[0] > 1.4 and abs(wide[1] - narrow[1]) < 0.1 * wide[1]  # 1 + 3 x 2 tiles vs 1 + 3 x 1


def test_analyses_refuse_the_other_kind_of_run(run, tmp_path):
    path, _ = run
    code, _, err = cli("analyze", path, "masking")
    assert code == 2 and "is an influence run" in err and "influence-summary" in err
    other = tmp_path / "aug.h5"
    assert cli("run", "--n", "8", "--estimator", "variance", "--quiet", "--out", other)[0] == 0
    code, _, err = cli("analyze", other, "influence-layers")
    assert code == 2 and "reads influence runs" in err
