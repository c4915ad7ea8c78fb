"""No data loss and no silent wrong results: outputs that would overwrite results, resumes
whose inputs or saved state changed, images whose bits would be clipped, stale temporaries."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import torch

from sa_frame import ResultsFile, UsageError
from sa_frame.engine.config import build_config
from sa_frame.engine.run import execute
from tests.cli_runner import cli
from tests.interrupt import stop_after
from tests.plugins.known_answer import install

KA = {"model": "ka-ishigami", "aug": "ishigami", "n": 1024, "save_every": 1, "quiet": True}


def unfinished(path, blocks: int = 2, **extra) -> None:
    """A run stopped after `blocks` saved blocks (its progress raises, as Ctrl-C would)."""
    from sa_frame.engine.plan import plan

    install()
    config = build_config({}, {**KA, **extra, "out": str(path)})
    n_blocks = plan(config, with_network=False).design.n_blocks

    def progress_factory(total, done):
        seen = {"rows": 0}

        def advance(n):
            seen["rows"] += n
            if seen["rows"] >= blocks * total // n_blocks:
                raise KeyboardInterrupt
        return advance

    with pytest.raises(KeyboardInterrupt):
        execute(config, progress_factory)
    attrs = ResultsFile(path).attrs()
    assert attrs["status"] == "running" and attrs["blocks_done"] >= 1


def resume(path, **extra) -> tuple[int, str]:
    args = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in extra.items()]
    code, _, err = cli("run", "--model", "ka-ishigami", "--aug", "ishigami", "--n", "1024", "--out", path,
                       "--quiet", "--resume", *args)
    return code, err


def test_out_that_is_not_a_results_file_is_refused_and_nothing_touched(tmp_path):
    figure = tmp_path / "r.png"
    figure.write_bytes(b"an existing picture")
    code, _, err = cli("run", "--n", "8", "--out", figure, "--quiet")
    assert code == 2 and "a results file is HDF5, its name ends in .h5" in err
    assert figure.read_bytes() == b"an existing picture" and sorted(p.name for p in tmp_path.iterdir()) == ["r.png"]
    code, _, err = cli("run", "--n", "8", "--out", tmp_path / "ok.h5", "--quiet")
    assert code == 0, err
    code, _, err = cli("plot", tmp_path / "ok.h5", "--out", tmp_path / "x.foo")
    assert code == 2 and "its name must end in .png" in err and not (tmp_path / "x.foo").exists()
    code, _, err = cli("augment", "--out", tmp_path / "grid.h5")
    assert code == 2 and "its name must end in .png" in err


def test_resume_and_force_together_are_refused(tmp_path):
    out = tmp_path / "r.h5"
    unfinished(out)
    before = out.read_bytes()
    code, err = resume(out, force=True)
    assert code == 2 and "--resume continues the saved run and --force discards it" in err
    assert out.read_bytes() == before


def test_resume_refuses_changed_weights_and_data(tmp_path):
    from PIL import Image

    from sa_frame import lookup

    weights = tmp_path / "w.pt"
    torch.save(lookup("model", "demo-cnn").build("random").state_dict(), weights)
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (70, 64), (100 * i, 50, 9)).save(tmp_path / "data" / cls / f"{i}.png")
    run = {"model": "demo-cnn", "aug": "hue,grayscale", "n": 64, "weights": str(weights),
           "data": str(tmp_path / "data"), "points_per_block": 16}
    out = tmp_path / "r.h5"
    unfinished(out, **{k: v for k, v in run.items() if k != "points_per_block"},
               options={"points_per_block": 16})
    assert set(ResultsFile(out).attrs()["inputs"]) == {"data", "weights"}
    args = ["run", "--model", "demo-cnn", "--aug", "hue,grayscale", "--n", "64", "--weights", weights, "--data",
            tmp_path / "data", "-o", "points_per_block=16", "--out", out, "--quiet", "--resume"]
    state = torch.load(weights, weights_only=True)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, weights)  # same path
    code, _, err = cli(*args)
    assert code == 2 and "the weights changed since it was started" in err
    torch.save(state, weights)  # back to the bytes the run started with
    Image.new("RGB", (70, 64), (1, 2, 3)).save(tmp_path / "data" / "a" / "2.png")  # one more image
    code, _, err = cli(*args)
    assert code == 2 and "the data changed since it was started" in err
    (tmp_path / "data" / "a" / "2.png").unlink()
    code, _, err = cli(*args)
    assert code == 0, err


def test_tampered_saved_states_are_refused_without_a_crash(tmp_path):
    out = tmp_path / "r.h5"
    unfinished(out)
    pristine = out.read_bytes()

    def tamper(edit):
        out.write_bytes(pristine)
        with h5py.File(out, "r+") as f:
            edit(f)
        tampered = out.read_bytes()
        result = resume(out)
        assert out.read_bytes() == tampered  # a refused resume writes nothing
        return result

    def rows(f):  # the wrong number of activations: would reach the numba kernel unchecked
        data = f["state/out/s_ab"][()]
        del f["state/out/s_ab"]
        f["state/out/s_ab"] = np.concatenate([data, data], axis=-1)

    def dtype(f):
        data = f["state/out/p"][()]
        del f["state/out/p"]
        f["state/out/p"] = data.astype(np.float32)

    def nan(f):
        f["state/out/t"][...] = np.nan

    def blocks(f):
        f.attrs["blocks_done"] = 999

    def missing(f):
        del f["state/out/qq"]

    for edit, message in ((rows, "the saved state cannot be resumed (state 'out/s_ab' has shape"),
                          (dtype, "the saved state cannot be resumed (state 'out/p' is torch.float32"),
                          (nan, "the saved state cannot be resumed (state 'out/t' holds non-finite sums"),
                          (blocks, "not a valid sa-frame results file: status 'running' with 999 of 32 blocks"),
                          (missing, "the saved state cannot be resumed (state keys differ")):
        code, err = tamper(edit)
        assert code == 2 and message in err and err.count("\n") == 1, (edit.__name__, err)
    out.write_bytes(pristine)
    code, err = resume(out)
    assert code == 0, err
    assert ResultsFile(out).attrs()["status"] == "complete"


def test_stale_temporaries_are_removed_when_a_run_starts(tmp_path):
    out = tmp_path / "r.h5"
    unfinished(out)
    stale = tmp_path / ".r.h5.99999.tmp"
    stale.write_bytes(b"x" * 1000)  # left by a write that was killed
    other = tmp_path / ".other.h5.1.tmp"
    other.write_bytes(b"y")
    code, err = resume(out)
    assert code == 0, err
    assert not stale.exists() and other.exists()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_images_keep_their_values(tmp_path, suffix):
    from PIL import Image

    from sa_frame import read_image

    values = np.array([[0, 1000, 32768], [65535, 12345, 500]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)  # mode I;16: converting to RGB would clip every value to 255
    image = read_image(path)
    assert image.dtype == torch.float32 and image.shape == (3, 2, 3)
    np.testing.assert_allclose(image[0].numpy(), values / 65535.0, atol=1e-7)
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.array([[1, 2**20]], dtype=np.int32)).save(wide)
    with pytest.raises(UsageError, match="32-bit integer .* convert it to 8 or 16 bits"):
        read_image(wide)


def test_python_api_arguments_are_checked_like_the_cli():
    import math

    import sa_frame
    from sa_frame import Problem, Uniform

    problem = Problem({"a": Uniform(0, 1), "b": Uniform(0, 1)})
    for n in (1.5, True, 0):
        with pytest.raises(UsageError, match="n must be a positive integer"):
            sa_frame.estimate(problem, lambda x: x[:, 0], n=n)
    with pytest.raises(UsageError, match="fn must return real numbers, got torch.complex64"):
        sa_frame.estimate(problem, lambda x: x[:, 0].to(torch.complex64), n=8)
    with pytest.raises(UsageError, match="Uniform needs finite low < high"):
        Uniform(0, math.inf)


RACER = r"""
import os, sys, time
from sa_frame import UsageError
from sa_frame.results.lock import WriterLock
target, marker, trials, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):  # both racers start together
    time.sleep(0.001)
held = overlaps = 0
for i in range(trials):
    if i % 5 == 0:  # a stale lock left by a dead writer, as after a kill
        with open(target + ".lock", "w") as f:
            f.write(f"{os.uname().nodename} 999999")
    try:
        with WriterLock(target):
            held += 1
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                overlaps += 1
                continue
            time.sleep(0.0005)
            os.close(fd)
            os.unlink(marker)
    except UsageError:
        pass
print(held, overlaps)
"""


def test_two_processes_never_hold_the_lock_together(tmp_path):
    """300 trials of two processes racing for one results file's lock (stale locks planted):
    never both inside at once, and each gets it many times."""
    import os
    import subprocess
    import sys

    script = tmp_path / "racer.py"
    script.write_text(RACER)
    target, marker = str(tmp_path / "r.h5"), str(tmp_path / "inside")
    env = {**os.environ, "SA_FRAME_LOAD_PLUGINS": ""}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), target, marker, "150", str(go)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    import time

    time.sleep(1.0)  # both imported and waiting
    go.write_text("")
    results = [tuple(map(int, p.communicate(timeout=120)[0].split())) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(overlaps for _, overlaps in results) == 0, results
    assert sum(held for held, _ in results) >= 20, results
    assert not (tmp_path / "r.h5.lock").exists()


def test_an_empty_lock_left_by_a_full_disk_is_stale(tmp_path):
    (tmp_path / "r.h5.lock").write_text("")
    code, _, err = cli("run", "--n", "8", "--out", tmp_path / "r.h5", "--quiet")
    assert code == 0, err


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_state_and_the_run_resumes_exactly(tmp_path, signum):
    """Ctrl-C (or SIGTERM) stops at the next block boundary, saves, releases the lock, says how
    to resume; the resumed run equals an uninterrupted one bit for bit."""
    import signal
    import time

    from tests.engine.test_run import _blocks_done, _subprocess_run, maps

    full = tmp_path / "full.h5"
    assert _subprocess_run(full, "--save-every", "1000").wait(timeout=300) == 0
    out = tmp_path / "stopped.h5"
    proc = _subprocess_run(out, "--save-every", "1000")  # no periodic save: the signal's is the one
    deadline = time.time() + 120
    while not out.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(getattr(signal, signum))
    _, err = proc.communicate(timeout=120)
    done, status = _blocks_done(out)
    assert proc.returncode == 130, err
    assert status == "running" and 0 < done < 256, (done, status)
    assert f"interrupted ({signum}) after {done} of" in err.decode() and "--resume" in err.decode()
    assert not (tmp_path / "stopped.h5.lock").exists()
    install()
    code, _, err = cli("run", "--model", "ka-ishigami", "--aug", "ishigami", "--n", "4096", "--out", out, "--quiet",
                       "--resume", "--save-every", "1000")
    assert code == 0, err
    resumed, reference = maps(out), maps(full)
    for key in reference:
        np.testing.assert_array_equal(resumed[key], reference[key])


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (skipped where mounting is not allowed)."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_no_lock_or_temporary(small_disk):
    out = small_disk / "r.h5"
    code, _, err = cli("run", "--n", "64", "--out", out, "--quiet")
    assert code == 2 and err.count("\n") == 1, err
    assert f"no space left on {small_disk} while writing {out}" in err and "the last saved state is intact" in err
    assert sorted(p.name for p in small_disk.iterdir()) == ["r.h5"]  # the file as last saved: running, 0 blocks
    assert ResultsFile(out).attrs()["status"] == "running"


def _damage(kind):
    def edit(path):
        if kind == "bytes":
            data = bytearray(path.read_bytes())
            middle = len(data) // 2
            data[middle:middle + 4096] = bytes(4096)
            path.write_bytes(bytes(data))
            return
        with h5py.File(path, "r+") as f:
            if kind == "no-checkpoints":
                del f["checkpoints"]
            elif kind == "no-variables":
                del f["variables"]
            elif kind == "design":
                f.attrs["design"] = "json:{not json"
            elif kind == "deep":
                f.attrs["design"] = "json:" + "[" * 100_000 + "]" * 100_000
            elif kind == "no-n_blocks":
                del f.attrs["n_blocks"]
            elif kind == "schema":
                f.attrs["schema_version"] = 99
            elif kind == "blocks":
                f.attrs["blocks_done"] = "32"
            elif kind == "external":
                f["checkpoints/extra"] = h5py.ExternalLink("/etc/hostname", "/")
            elif kind == "cycle":
                f["checkpoints/out/loop"] = h5py.SoftLink("/checkpoints/out/loop")
    return edit


DAMAGE = ["bytes", "no-checkpoints", "no-variables", "design", "deep", "no-n_blocks", "schema", "blocks", "external",
          "cycle"]


@pytest.fixture(scope="module")
def complete_file(tmp_path_factory):
    install()
    out = tmp_path_factory.mktemp("complete") / "r.h5"
    code, _, err = cli("run", "--model", "ka-ishigami", "--aug", "ishigami", "--n", "64", "--out", out, "--quiet")
    assert code == 0, err
    return out


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_results_files_are_one_line_and_exit_2(complete_file, tmp_path, kind):
    install()
    path = tmp_path / "r.h5"
    path.write_bytes(complete_file.read_bytes())
    _damage(kind)(path)
    before = path.read_bytes()
    commands = [["show", path], ["analyze", path, "correlation", "--quiet"]]
    if kind != "no-variables":  # the summary figure needs no /variables
        commands.append(["plot", path])
    for args in commands:
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (kind, args, err)
        assert "results file" in err, (kind, err)
    assert path.read_bytes() == before


@pytest.mark.parametrize("text, message", [
    ("extra: 5\n", "'extra' must be a mapping of estimator options, got 5"),
    ("n: .inf\n", "n must be of type int | None, got inf"),
    ("options: {points_per_block: 7}\n", "points_per_block must be a multiple of 16"),
    ("n: 1099511627776\n", "n must lie in 1..1,073,741,824"),
])
def test_bad_config_values_are_one_line(tmp_path, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    code, _, err = cli("run", "--config", config, "--out", tmp_path / "r.h5", "--quiet")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.h5").exists()


def test_a_config_that_is_not_text_is_one_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"model: \xff\xfe demo\n")
    code, _, err = cli("run", "--config", config, "--quiet")
    assert code == 2 and "not a UTF-8 text file" in err


@pytest.mark.parametrize("args, message", [
    (["run", "--device", "mps"], "device 'mps' is not supported"),
    (["run", "--device", "meta"], "device 'meta' is not supported"),
    (["run", "--aug", "a1,a1"], "augmentation 'erasing' is given twice"),
    (["run", "--estimator", "contrast", "--scheme", "1"], "takes augmentation scheme 2, got --scheme 1"),
    (["run", "--n", str(2**40)], "n must lie in 1.."),
])
def test_more_bad_run_input_is_one_line(tmp_path, args, message):
    code, _, err = cli(*args, "--out", tmp_path / "r.h5", "--quiet")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.h5").exists()


def test_show_top_must_be_positive(complete_file):
    code, _, err = cli("show", complete_file, "--top", "-1")
    assert code == 2 and "--top" in err


def test_a_decompression_bomb_is_refused_naming_the_limit(tmp_path, monkeypatch):
    from PIL import Image

    from sa_frame import read_image

    big = tmp_path / "big.png"
    Image.new("L", (4000, 3000)).save(big)  # 12 million pixels
    monkeypatch.setenv("SA_FRAME_MAX_IMAGE_PIXELS", "1000000")
    with pytest.raises(UsageError, match="larger than the limit of 1,000,000 pixels.*SA_FRAME_MAX_IMAGE_PIXELS"):
        read_image(big)
    code, _, err = cli("augment", "--image", big, "--out", tmp_path / "g.png")
    assert code == 2 and "larger than the limit" in err
    monkeypatch.setenv("SA_FRAME_MAX_IMAGE_PIXELS", "20000000")  # raised knowingly
    assert read_image(big).shape == (3, 3000, 4000)


def test_bad_segments_are_one_line(tmp_path):
    from sa_frame import lookup
    from sa_frame.plugins.analyses._network_segments import build_segment
    from sa_frame.plugins.analyses.segments import load_segments

    spec = tmp_path / "s.yaml"
    spec.write_text("- {name: a, modules: [features.3], units: ['a']}\n")
    with pytest.raises(UsageError, match="'units' must be a list of unit"):
        load_segments(str(spec))
    net = lookup("model", "demo-cnn").build("random")
    with pytest.raises(UsageError, match="must be given in the network's forward order"):
        build_segment(net, ["features.5", "features.4", "features.3"])


def test_an_analysis_of_a_read_only_results_file_is_one_line(complete_file, tmp_path, monkeypatch):
    import os

    path = tmp_path / "r.h5"
    path.write_bytes(complete_file.read_bytes())
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(path) and mode == os.W_OK
                        else real_access(p, mode, **kw))
    code, _, err = cli("analyze", path, "correlation", "--quiet")
    assert code == 2 and "is read-only" in err


def test_huge_outputs_are_counted_as_non_finite_not_turned_into_nan_indices():
    import sa_frame
    from sa_frame import Problem, Uniform

    problem = Problem({"a": Uniform(0, 1), "b": Uniform(0, 1)})
    huge = {"rows": 0}

    def fn(x):
        y = torch.stack([x[:, 0] + 2 * x[:, 1], x[:, 0]], 1)
        y[:5, 1] = 1e200  # five rows per block whose squares overflow float64
        huge["rows"] += 5
        return y

    res = sa_frame.estimate(problem, fn, n=256, seed=0)
    assert res["nonfinite"].tolist() == [0, huge["rows"]]
    assert np.isfinite(res["S1"]).all() and res["S1"][0, 1] > 0.9  # the rest still says: only a matters


def test_resume_with_out_alone_takes_the_stored_configuration(tmp_path):
    """`sa-frame run --resume --out r.h5` continues an interrupted run with the configuration stored
    in the file (no other flag) and ends with the uninterrupted numbers exactly."""

    import h5py

    from sa_frame.engine.config import build_config
    from sa_frame.engine.run import execute
    from tests.cli_runner import cli

    args = dict(estimator="sobol", n=64, seed=3, batch_size=96, save_every=1, quiet=True, quick=True,
                options={"second_order": False})
    whole = tmp_path / "whole.h5"
    execute(build_config({}, {**args, "out": str(whole)}))
    part = tmp_path / "part.h5"
    with pytest.raises(Exception):
        execute(build_config({}, {**args, "out": str(part)}), stop_after(2))
    code, _, err = cli("run", "--resume", "--out", part, "--quiet")
    assert code == 0, err
    with h5py.File(whole) as a, h5py.File(part) as b:
        assert b.attrs["status"] == "complete"
        for key in a["checkpoints/fc"]:
            np.testing.assert_array_equal(a["checkpoints/fc"][key][()], b["checkpoints/fc"][key][()])
    code, _, err = cli("run", "--resume", "--out", tmp_path / "absent.h5", "--quiet")
    assert code == 2 and "nothing to resume" in err


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_maps_are_gzip_compressed_by_default_and_lzf_on_request(tmp_path, compression):
    """gzip (with shuffle) opens in any HDF5 reader; --compression lzf gives the same numbers."""
    import h5py

    from tests.cli_runner import cli

    out = tmp_path / f"{compression}.h5"
    extra = [] if compression == "gzip" else ["--compression", "lzf"]
    assert cli("run", "--quick", "--n", "16", "--quiet", "--out", out, *extra)[0] == 0
    with h5py.File(out) as f:
        big = [d for d in f["checkpoints"]["features.2"].values() if d.size > 1024]
        assert big and all(d.compression == compression and d.shuffle for d in big)
        values = f["checkpoints/features.2/S1"][()]
    assert np.isfinite(values).any()
    code, _, err = cli("run", "--quick", "--n", "16", "--quiet", "--out", tmp_path / "x.h5", "--compression", "zip")
    assert code == 2 and "compression must be gzip" in err


def test_a_default_paper_size_run_that_takes_hours_gets_a_note_and_goes_on(tmp_path, monkeypatch):
    """No --n on non-demo data: after the first block the run says how long the paper's size will
    take and how to pick another; with --n it says nothing."""
    import os
    import signal

    import sa_frame.engine.run as run_module

    install()
    monkeypatch.setattr(run_module, "LONG_RUN_S", 0.0)  # every default-size run counts as long here
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        os.kill(os.getpid(), signal.SIGINT)  # stop at the next block boundary: the note is what we test

    config = build_config({}, dict(model="ka-ishigami", aug="ishigami", quiet=True, out=str(tmp_path / "p.h5"),
                                   save_every=1))
    with pytest.raises(Exception, match="interrupted"):
        execute(config, notify=note)
    assert len(notes) == 1 and "the paper's size, n = 131,072" in notes[0] and "--n" in notes[0]
    assert re.search(r"it keeps [\d,]+ MiB of state in memory \(per process\) and in .*p\.h5", notes[0])
    with h5py.File(tmp_path / "p.h5") as f:
        assert f.attrs["status"] == "running"  # it went on until stopped, and saved
    notes.clear()
    execute(build_config({}, dict(model="ka-ishigami", aug="ishigami", n=64, quiet=True, out=str(tmp_path / "q.h5"))),
            notify=note)
    assert notes == []
    monkeypatch.setattr(run_module, "PROBE_NOTE_S", 0.0)  # any run expected to be long: time, memory, disk
    with pytest.raises(Exception, match="interrupted"):
        execute(build_config({}, dict(model="ka-ishigami", aug="ishigami", n=4096, quiet=True, save_every=1,
                                      out=str(tmp_path / "r.h5"))), notify=note)
    assert len(notes) == 1 and re.search(r"^[\d,]+ rows in [\d,]+ blocks: about [\d,]+ min", notes[0])
    assert "paper's size" not in notes[0] and "MiB of state" in notes[0]
