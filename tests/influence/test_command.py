"""`sa-frame influence` on the demo: what /influence holds, resume and merge equal one run, one-line errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from sa_frame.engine.influence import InfluenceAccumulator
from tests.cli_runner import cli
from tests.interrupt import stop_after

#: the last layer only (650 parameters, a cheap exact solve): 4 training images per class, 1 test image per class
TINY = ["--layers", "fc", "--solver", "exact", "--train-per-class", "4", "--test-per-class", "1", "--top-k", "3",
        "--batch-size", "8", "--hessian-samples", "0", "--quiet"]


def read(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        out = {}
        f["influence"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset)
                                  else None)
        return out | {"attrs": dict(f.attrs)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("influence") / "tiny.h5"
    code, _, err = cli("influence", *TINY, "--disturbances", "original,white_background", "--keep-scores",
                       "--self-influence", "--out", out)
    assert code == 0, err
    return read(out)


def test_results_hold_consistent_tops_class_sums_and_diagnostics(tiny):
    attrs = tiny["attrs"]
    assert attrs["status"] == "complete" and attrs["mode"] == "influence" and attrs["n_train"] == 40
    assert list(attrs["conditions"]) == ["original", "white_background"] and attrs["n_test"] == 20
    assert list(attrs["checkpoints"]) == ["fc", "total"] and "proponent" in attrs["sign_convention"]
    scores = tiny["scores"]  # (2, 20, 40)
    assert scores.shape == (2, 20, 40)
    np.testing.assert_array_equal(scores[0], scores[1])  # one block: the total is that block
    order = np.argsort(scores, axis=-1, kind="stable")
    np.testing.assert_array_equal(tiny["proponents/index"], order[..., :3])
    np.testing.assert_array_equal(tiny["opponents/index"], np.argsort(-scores, axis=-1, kind="stable")[..., :3])
    np.testing.assert_allclose(tiny["proponents/value"], np.take_along_axis(scores, order[..., :3], -1))
    classes = tiny["train/classes"]
    sums = np.stack([scores[..., classes == c].sum(-1) for c in range(10)], -1)
    np.testing.assert_allclose(tiny["class_sum"], sums, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(tiny["class_count"], np.full(10, 4))
    assert tiny["diagnostics/converged"].all() and tiny["diagnostics/residual"].max() < 1e-6
    assert tiny["diagnostics/damping"][0] == pytest.approx(max(0.0, -tiny["diagnostics/lambda_min"][0]) + 1e-3)
    np.testing.assert_array_equal(tiny["test/condition"], np.repeat([0, 1], 10))
    np.testing.assert_array_equal(tiny["test/classes"][:10], tiny["test/classes"][10:])
    assert np.abs(scores[:, :10] - scores[:, 10:]).max() > 1e-6  # the white background moved the scores
    assert tiny["self"].shape == (2, 40) and np.isfinite(tiny["self"]).all()


def test_interrupted_and_resumed_run_equals_one_run(tmp_path, tiny):
    from sa_frame import InfluenceConfig, execute_influence

    config = dict(layers=["fc"], solver="exact", train_per_class=4, test_per_class=1, top_k=3, batch_size=8,
                  hessian_samples=None, disturbances=["original,white_background"], keep_scores=True,
                  self_influence=True, save_every=1)
    part = tmp_path / "part.h5"
    with pytest.raises(Exception, match="interrupted"):
        execute_influence(InfluenceConfig(**config, out=str(part)), stop_after(2))
    with h5py.File(part) as f:
        assert f.attrs["status"] == "running" and f.attrs["blocks_done"] == 2
    code, _, err = cli("influence", "--resume", "--out", part, "--quiet")
    assert code == 0, err
    resumed = read(part)
    for key, value in tiny.items():
        if key != "attrs":
            np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_accumulators_merged_in_any_split_equal_one_pass():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 5, 30, generator=g, dtype=torch.float64)
    scores[..., 7] = scores[..., 3]  # a tie: broken by the lower index however the shards fall
    classes = torch.randint(0, 4, (30,), generator=g)
    selves = torch.randn(3, 30, generator=g, dtype=torch.float64)

    def over(indices: list[torch.Tensor]) -> InfluenceAccumulator:
        acc = InfluenceAccumulator(3, 5, 4, 6, 30, keep_scores=True, self_influence=True)
        for i in indices:
            acc.update(scores[..., i], i, classes[i], selves[:, i])
        return acc

    whole = over([torch.arange(30)]).finalize()
    shards = [over([torch.arange(s, 30, 3)]) for s in range(3)]
    merged = shards[2]
    merged.merge(shards[0])
    merged.merge(shards[1])
    for key, value in merged.finalize().items():
        for part, array in (value.items() if isinstance(value, dict) else [("", value)]):
            expected = whole[key][part] if part else whole[key]
            if key == "class_sum":  # sums in another order: equal to rounding
                np.testing.assert_allclose(array, expected, rtol=1e-13, atol=1e-15)
            else:
                np.testing.assert_array_equal(array, expected, err_msg=f"{key} {part}")
    with pytest.raises(ValueError, match="same training points"):
        merged.merge(over([torch.arange(2)]))


def _folder_without_masks(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in ("train", "val"):
        for cls in ("apple", "boat"):
            (root / part / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / part / cls / f"{i}.png")


@pytest.mark.parametrize("args, message", [
    (["--layers", "features.1"], "no trainable parameters"),
    (["--layers", "fcc"], "did you mean"),
    (["--damping", "-1"], "--damping must be a number >= 0"),
    (["--damping", "lots"], "--damping must be a number >= 0"),
    (["--solver", "lisa"], "did you mean 'lissa'"),
    (["--solver", "lissa:scale=0"], "scale must be a positive number"),
    (["--disturbances", "hue"], "give every parameter a fixed value"),
    (["--disturbances", "original,white_backgrund"], "did you mean 'white_background'"),
    (["--precision", "float16"], "--precision must be one of"),
    (["--data", "FOLDER", "--disturbances", "white_background"], "needs object masks"),
])
def test_bad_influence_input_is_one_line_and_exit_2(tmp_path, args, message):
    if "FOLDER" in args:
        _folder_without_masks(tmp_path / "data")
        args = [str(tmp_path / "data") if a == "FOLDER" else a for a in args]
    base = [a for a in TINY if a not in ("--layers", "fc")] if "--layers" in args else TINY
    code, out, err = cli("influence", *base, *args, "--out", tmp_path / "x.h5")
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.h5").exists() or h5py.File(tmp_path / "x.h5").attrs["status"] != "complete"
