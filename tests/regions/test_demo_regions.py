"""Planted structure on the trained demo-cnn: the shape matters more than the background, and
masking the regions ST ranks highest lowers the score more than the lowest or random ones."""

from __future__ import annotations

import h5py
import numpy as np

from tests.cli_runner import cli


def test_foreground_st_exceeds_background_on_nine_in_ten_demo_images(tmp_path):
    out = tmp_path / "fg.h5"
    code, _, err = cli("run", "--estimator", "sbsa", "--regions", "demo-foreground", "--per-class", "2", "--n", "64",
                       "--batch-size", "256", "--quiet", "--out", out)
    assert code == 0, err
    with h5py.File(out) as f:
        st, names = f["checkpoints/score/ST"][()], [n.decode() for n in f["regions/names"][()]]
    assert names == ["background", "foreground"] and st.shape == (2, 20)
    assert np.mean(st[1] > st[0]) >= 0.9


def test_masking_top_st_regions_lowers_the_score_more_than_bottom_and_random(tmp_path):
    out = tmp_path / "grid.h5"
    code, _, err = cli("run", "--estimator", "sbsa", "--regions", "grid:cells=4", "--per-class", "1", "--n", "32",
                       "--batch-size", "288", "--quiet", "--out", out)
    assert code == 0, err
    code, _, err = cli("analyze", out, "region-masking", "--quiet")
    assert code == 0, err
    with h5py.File(out) as f:
        group = f["analyses/region-masking"]
        methods = [m.decode() for m in group["methods"][()]]
        top, bottom = group["mean_top"][()], group["mean_bottom"][()]
    assert methods == ["ST", "S1", "random"]
    st, random = methods.index("ST"), methods.index("random")
    assert top[st] > bottom[st] and top[st] > top[random]
