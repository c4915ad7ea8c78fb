"""`sa-frame run` end to end: known answers through the image pipeline, kill and resume,
the demo default, show/plot, configuration files and bad input."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sa_frame.results.store import ResultsFile
from tests.cli_runner import cli
from tests.plugins.known_answer import install

ROOT = Path(__file__).resolve().parents[2]
KA = ["--model", "ka-ishigami", "--aug", "ishigami"]


def maps_of(path):
    return ResultsFile(path).read("checkpoints")


def maps(path, checkpoint="out"):
    return ResultsFile(path).read("checkpoints")[checkpoint]


def test_known_answer_sobol_through_the_image_pipeline(analytic, tmp_path):
    install()
    out = tmp_path / "sobol.h5"
    code, out_text, err = cli("run", *KA, "--n", "2048", "--out", out, "--quiet")
    assert code == 0, err
    assert out_text == "" and out.with_suffix(".png").stat().st_size > 1000  # quiet: silent, figure still drawn
    ref = analytic["ishigami"]
    res = maps(out)
    groups = ResultsFile(out).read("variables")["groups"].tolist()
    assert groups == ["ka1", "ka2", "ka3", "permutation", "class", "partition"]
    se = res["S1_conf"][:, 0] / 1.96
    exact_s1 = np.r_[ref["S1"], 0, 0, 0]
    exact_st = np.r_[ref["ST"], 0, 0, 0]
    assert np.all(np.abs(res["S1"][:, 0] - exact_s1) <= 3 * se + 0.005)
    assert np.all(np.abs(res["ST"][:, 0] - exact_st) <= 3 * res["ST_conf"][:, 0] / 1.96 + 0.005)
    assert abs(res["S2"][0, 2, 0] - ref["S2"]["x1,x3"]) < 0.05
    assert ResultsFile(out).status() == "complete"


def test_known_answer_shapley_through_the_image_pipeline(analytic, tmp_path):
    install()
    out = tmp_path / "shapley.h5"
    code, _, err = cli("run", *KA, "--estimator", "shapley", "--scheme", "1", "--n", "600", "--n-outer", "2",
                       "--n-inner", "3", "--out", out, "--quiet")
    assert code == 0, err
    res = maps(out)
    exact = np.r_[analytic["ishigami"]["shapley"], 0, 0, 0]
    assert np.all(np.abs(res["shapley"][:, 0] - exact) <= 3 * res["shapley_se"][:, 0] + 0.005)
    assert res["shapley"][:, 0].sum() == pytest.approx(1.0)


def _subprocess_run(out, *extra):
    env = {**os.environ, "SA_FRAME_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "tests.plugins.known_answer", "run", *KA, "--n", "4096", "--out", str(out), "--quiet",
            "--save-every", "1", *extra]
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _blocks_done(path):
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs["blocks_done"]), str(f.attrs["status"])
    except (OSError, KeyError):
        return -1, ""


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    full = tmp_path / "full.h5"
    assert _subprocess_run(full).wait(timeout=300) == 0
    reference = maps(full)
    rng = random.Random(7)
    for attempt in range(3):  # three random kill points
        out = tmp_path / f"killed{attempt}.h5"
        proc = _subprocess_run(out)
        target = rng.randint(3, 90)
        deadline = time.time() + 240
        while _blocks_done(out)[0] < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done, status = _blocks_done(out)
        assert status == "running" and 0 < done < 128, (done, status)
        code, _, err = cli("run", *KA, "--n", "4096", "--out", out, "--quiet", "--save-every", "1")
        assert code == 2 and "--resume" in err  # an unfinished file is never silently overwritten
        install()
        code, _, err = cli("run", *KA, "--n", "4096", "--out", out, "--quiet", "--resume", "--save-every", "1")
        assert code == 0, err
        resumed = maps(out)
        for key in reference:
            np.testing.assert_array_equal(resumed[key], reference[key])


def test_demo_default_show_and_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", "--n", "32")  # the demo default, smaller
    assert code == 0, err
    assert "mean S1 clipped to [0, 1] per activation" in out and "rows/s" in out
    results = ResultsFile(tmp_path / "results.h5")
    attrs = results.attrs()
    assert attrs["status"] == "complete" and attrs["model"] == "demo-cnn"
    assert (tmp_path / "results.png").stat().st_size > 1000
    s1 = results.read("checkpoints")["features.5"]["S1"]
    assert s1.shape == (8, 32, 16, 16)  # (groups, *activation shape)
    assert "a1" in attrs["config"] and attrs["versions"]["sa-frame"]
    import h5py as h5py_module

    opened = []
    real_file = h5py_module.File

    def counting_file(*args, **kwargs):
        opened.append(args[0])
        return real_file(*args, **kwargs)

    monkeypatch.setattr(h5py_module, "File", counting_file)
    code, out, _ = cli("show", tmp_path / "results.h5")
    monkeypatch.setattr(h5py_module, "File", real_file)
    assert code == 0 and "most sensitive units" in out and "erasing" in out
    assert len(opened) == 3  # attributes, variables and maps: each read once
    table = out[out.index("mean S1 clipped"):]
    erasing = next(line for line in table.splitlines() if "erasing" in line)
    expected = np.clip(np.nan_to_num(s1[0]), 0, 1).mean()  # S1 as analyses read it: erasing at features.5
    assert f"{expected:.3f}" in erasing
    import sa_frame.results.report as report

    drawn = []
    monkeypatch.setattr(report, "save_figure", lambda fig, out: drawn.append(fig) or out)
    code, out, _ = cli("plot", tmp_path / "results.h5", "--checkpoint", "features.5", "--unit", "3")
    monkeypatch.undo()
    assert code == 0
    images = [ax for ax in drawn[0].axes if ax.images]  # one map per variable (paper Figure 3), not bars
    assert len(images) == 8 and images[0].images[0].get_array().shape == (16, 16)
    assert [ax.get_title() for ax in images][:2] == ["erasing", "sharpness"]
    np.testing.assert_allclose(images[0].images[0].get_array(), np.clip(np.nan_to_num(s1[0, 3]), 0, 1))
    code, out, _ = cli("plot", tmp_path / "results.h5", "--checkpoint", "features.5", "--unit", "3")
    assert code == 0 and (tmp_path / "results.features.5.3.png").stat().st_size > 1000
    code, out, _ = cli("plot", tmp_path / "results.h5")
    assert code == 0 and (tmp_path / "results.summary.png").exists()


def test_resume_identity_covers_what_changes_the_numbers():
    from sa_frame.engine.config import build_config

    base = build_config({}, {})
    assert build_config({}, {"quick": True}).identity() != base.identity()  # --quick changes the sizes
    assert build_config({}, {"quiet": True, "save_every": 3, "out": "x.h5"}).identity() == base.identity()


def test_config_file_and_flags(tmp_path):
    install()
    config = tmp_path / "run.yaml"
    config.write_text("model: ka-ishigami\naug: ishigami\nn: 64\nestimator: variance\nseed: 3\n")
    out = tmp_path / "cfg.h5"
    code, _, err = cli("run", "--config", config, "--n", "128", "--out", out, "--quiet")
    assert code == 0, err
    stored = ResultsFile(out).config()
    assert stored["estimator"] == "variance" and stored["n"] == 128 and stored["seed"] == 3  # flags win
    res = maps(out)
    assert res["mean"].shape == (1,) and res["n"][0] == 128
    assert abs(res["mean"][0] - 3.5) < 1.0  # Ishigami mean a/2


def _bad_inputs(tmp_path):
    install()
    complete = tmp_path / "complete.h5"
    assert cli("run", *KA, "--n", "32", "--out", complete, "--quiet")[0] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "noimg"
    (no_images / "cat").mkdir(parents=True)
    corrupt = tmp_path / "corrupt"
    (corrupt / "a").mkdir(parents=True)
    (corrupt / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: demo-cnn\naug: [a1\n")
    unknown_key = tmp_path / "key.yaml"
    unknown_key.write_text("modle: demo-cnn\n")
    out = tmp_path / "x.h5"
    cases = [
        (["--model", "resnet1"], r"unknown model 'resnet1' \(did you mean 'resnet18'"),
        (["--aug", "a1,erasin"], r"unknown augmentation or set 'erasin' \(did you mean 'erasing'"),
        (["--estimator", "sobl"], r"unknown estimator 'sobl' \(did you mean 'sobol'"),
        (["--checkpoints", "features.99"], r"unknown checkpoint 'features.99'.*module names:"),
        (["--data", str(tmp_path / "missing")], "data folder not found"),
        (["--data", str(empty)], "has no class sub-folders"),
        (["--data", str(no_images)], "class folder 'cat' of partition 'all' has no images"),
        (["--data", str(corrupt), "--n", "16"], "cannot read image .*broken.jpg"),
        (["--n", "1000"], "power of two, got 1000; use 512 or 1024"),
        (["--out", str(tmp_path / "no" / "dir" / "out.h5")], "cannot write results file .*out.h5: no such directory"),
        ([*KA, "--n", "32", "--out", str(complete)], "already holds a complete run; use --force"),
        ([*KA, "--n", "64", "--out", str(complete), "--resume"], "already holds a complete run"),
        (["--out", str(tmp_path / "none.h5"), "--resume"], "nothing to resume"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "cuda:99"],
         "CUDA is not available|CUDA device"),
        (["--device", "tpu9"], "unknown device 'tpu9'"),
        (["--config", str(bad_yaml)], r"bad.yaml: line 3, column 1: YAML syntax error"),
        (["--config", str(unknown_key)], r"key.yaml: unknown key 'modle' \(did you mean 'model'\?\)"),
        (["--weights", str(tmp_path / "nope.pt")], "weights file not found"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--estimator", "shapley", "--players", "units"], "players must be one of groups, variables"),
    ]
    return cases, out


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    import re

    cases, out = _bad_inputs(tmp_path)
    for args, pattern in cases:
        if "--out" not in args:
            args = [*args, "--out", str(out)]
        code, _, err = cli("run", "--quiet", *args)
        assert code == 2, (args, code, err)
        assert err.count("\n") == 1 and err.startswith("sa-frame: error: "), (args, err)
        assert re.search(pattern, err), (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "no").exists()  # nothing created where the user named a missing folder


def test_resume_with_another_config_names_the_keys(tmp_path):
    install()
    out = tmp_path / "r.h5"
    proc = _subprocess_run(out)
    while _blocks_done(out)[0] < 2 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, _, err = cli("run", *KA, "--n", "4096", "--seed", "5", "--out", out, "--quiet", "--resume")
    assert code == 2 and "cannot resume" in err and "seed: 0 -> 5" in err and "--resume --out" in err
    assert "round differently" not in err  # the seed changes the numbers themselves: no batching note
    code, _, err = cli("run", *KA, "--n", "4096", "--batch-size", "16", "--out", out, "--quiet", "--resume")
    assert code == 2 and "batch_size: 64 -> 16" in err and "may then round differently" in err
    code, out_text, _ = cli("show", out)
    assert code == 0 and "not complete" in out_text


def _image_folder(root, partitions):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in partitions:
        for cls in ("apple", "boat"):
            folder = root / part / cls if part else root / cls
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.mark.parametrize("partitions, groups", [(("train", "val"), ["class", "partition"]), ((None,), ["class"])])
def test_image_folder_data(tmp_path, partitions, groups):
    _image_folder(tmp_path / "data", partitions)
    out = tmp_path / "folder.h5"
    code, _, err = cli("run", "--data", tmp_path / "data", "--n", "16", "--estimator", "variance", "--out", out,
                       "--quiet")
    assert code == 0, err
    variables = ResultsFile(out).read("variables")
    assert variables["groups"].tolist()[-len(groups):] == groups
    assert variables["classes"].tolist() == ["apple", "boat"]
    assert maps(out, "fc")["mean"].shape == (10,)


def test_contrast_run_reports_per_augmentation(tmp_path):
    out = tmp_path / "contrast.h5"
    code, text, err = cli("run", "--estimator", "contrast", "--aug", "hflip,brightness", "--n", "16",
                          "--n-inner", "2", "--out", out)
    assert code == 0, err
    assert ResultsFile(out).attrs()["map_rows"] == ["brightness", "hflip"] or \
        ResultsFile(out).attrs()["map_rows"] == ["hflip", "brightness"]
    res = maps(out, "fc")
    assert res["rank_biserial"].shape == (2, 10) and res["pvalue_by"].shape == (2, 10)
    assert "hflip" in text and "brightness" in text  # one summary row per treatment
    assert "exact mode" not in err  # binned by default: nothing grows with n
    exact = tmp_path / "exact.h5"
    code, _, err = cli("run", "--estimator", "contrast", "--aug", "hflip,brightness", "--n", "16", "--n-inner", "2",
                       "-o", "mode=exact", "--out", exact, "--quiet")
    assert code == 0, err
    activations = sum(v["mean"].size if "mean" in v else v["n_pairs"][0].size for v in maps_of(exact).values())
    pairs = 16 * (1 + 2)  # hflip has no parameter: one row per outer sample; brightness n_inner = 2
    assert f"{pairs:,} pairs x {activations:,} activations x 8 bytes" in " ".join(err.split())
    np.testing.assert_allclose(maps(exact, "fc")["rank_biserial"], res["rank_biserial"], atol=0.05)


def test_chunked_input_preparation_equals_whole_batch(tmp_path, monkeypatch):
    """CPU inputs are prepared in chunks into a reused buffer: the same tensors as one
    whole-batch preparation, and the same maps from a run whose chunks are 7 rows."""
    from sa_frame.engine import run as pipeline
    from sa_frame.engine import runner as runner_module
    from sa_frame.engine.config import build_config

    config = {"aug": "a1,hue,rotation", "n": 8, "estimator": "sobol", "out": str(tmp_path / "whole.h5"),
              "quiet": True}
    runner = pipeline.Runner(pipeline.plan(build_config({}, config)))
    block = runner.run.design.block(0)
    unit = block.unit[:40]
    values = runner.run.problem.values(unit, block.known[:40] if block.known is not None else None)
    whole = runner._prepare(unit, values, normalize=True)
    row_bytes = 3 * 4 * int(np.prod(runner.run.spec.input_size))
    monkeypatch.setattr(runner_module, "CHUNK_BYTES", 7 * row_bytes)
    assert runner.chunk_rows() == 7
    assert torch.equal(runner.inputs(unit, values), whole)
    buffer = torch.full_like(whole, float("nan"))
    assert runner.inputs(unit, values, out=buffer) is buffer and torch.equal(buffer, whole)

    chunked = {**config, "out": str(tmp_path / "chunked.h5")}
    pipeline.execute(build_config({}, chunked))
    monkeypatch.setattr(runner_module, "CHUNK_BYTES", 10**9)
    pipeline.execute(build_config({}, config))
    for name in ResultsFile(tmp_path / "whole.h5").keys("checkpoints"):
        a, b = maps(tmp_path / "whole.h5", name), maps(tmp_path / "chunked.h5", name)
        assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_binned_contrast_resumed_equals_uninterrupted(tmp_path):
    """The binned state (int32 counts, float32 edges) saves, reloads and ends with the same maps."""
    from sa_frame.engine.config import build_config
    from sa_frame.engine.run import execute
    from tests.interrupt import stop_after

    install()
    settings = dict(model="ka-ishigami", aug="ishigami", estimator="contrast", n=64, n_inner=3, save_every=1,
                    quiet=True, options={"outer_per_block": 8})
    _, whole, _ = execute(build_config({}, {**settings, "out": str(tmp_path / "whole.h5")}))
    out = str(tmp_path / "cut.h5")
    with pytest.raises(Exception, match="interrupted"):
        execute(build_config({}, {**settings, "out": out}), stop_after(3))
    assert ResultsFile(out).status() == "running"
    state = ResultsFile(out).state()
    assert state["out/pos"].dtype == torch.int32 and state["out/edges"].dtype == torch.float32
    _, resumed, _ = execute(build_config({}, {**settings, "out": out, "resume": True}))
    for key, value in whole["out"].items():
        np.testing.assert_array_equal(resumed["out"][key], value, err_msg=key)
    assert np.abs(whole["out"]["rank_biserial"]).max() > 0.3  # the treatments do something
