"""Scale-out and fault tolerance: torchrun with 2 gloo processes equals 1 process, a
2-process run killed and resumed by 1 process equals an uninterrupted run, damaged
results files are refused, non-finite activations are counted and left out."""

from __future__ import annotations

import contextlib
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
from tests.engine.test_run import KA, ROOT, _blocks_done
from tests.plugins.known_answer import install

ENV = {**os.environ, "SA_FRAME_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def torchrun(out, *extra, processes=2):
    """`torchrun --standalone --nproc-per-node P -m tests.plugins.known_answer run ...` in its own session."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "tests.plugins.known_answer", "run", *KA, "--out", str(out), "--quiet", "--keep-state", *extra]
    return subprocess.Popen(args, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def kill_tree(proc):
    """SIGKILL a process and all its descendants (torchrun starts each worker in its own session,
    so killing torchrun's process group alone leaves the workers running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, queue = [], [proc.pid]
    while queue:
        pid = queue.pop()
        doomed.append(pid)
        queue.extend(children.get(pid, []))
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10  # SIGKILL is asynchronous: wait until every process is gone or a zombie
    while time.time() < deadline and any(_running(pid) for pid in doomed):
        time.sleep(0.01)


def _running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_same_run(path, reference, rtol=1e-10):
    """Float64 states equal to `rtol` of each statistic's scale; float32 maps equal to float32 round-off."""
    mine, theirs = ResultsFile(path).state(), ResultsFile(reference).state()
    assert mine.keys() == theirs.keys()
    for key in theirs:
        a, b = mine[key].double().numpy(), theirs[key].double().numpy()
        scale = np.abs(b).max(initial=0.0)
        assert np.abs(a - b).max(initial=0.0) <= rtol * max(scale, 1e-300), key
    maps_a = ResultsFile(path).read("checkpoints")["out"]
    maps_b = ResultsFile(reference).read("checkpoints")["out"]
    for key in maps_b:
        np.testing.assert_allclose(maps_a[key], maps_b[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The uninterrupted 1-process reference (n = 2048: 64 blocks)."""
    install()
    out = tmp_path_factory.mktemp("dist") / "single.h5"
    code, _, err = cli("run", *KA, "--n", "2048", "--out", out, "--quiet", "--keep-state")
    assert code == 0, err
    return out


def test_two_gloo_processes_equal_one(single, tmp_path):
    out = tmp_path / "two.h5"
    proc = torchrun(out, "--size", "2048")
    _, err = proc.communicate(timeout=300)
    if proc.returncode and b"(SIGABRT)" in err:  # an intermittent native abort of a gloo worker (about 1 run
        out.unlink(missing_ok=True)                # in 5 on 2 cores; under investigation): one retry
        proc = torchrun(out, "--size", "2048")
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    attrs = ResultsFile(out).attrs()
    assert attrs["processes"] == 2 and attrs["status"] == "complete"
    assert_same_run(out, single)


def test_two_processes_killed_then_resumed_by_one(single, tmp_path):
    out = tmp_path / "killed.h5"
    proc = torchrun(out, "--size", "2048", "--save-every", "1")
    target = random.Random(11).randint(4, 40)
    deadline = time.time() + 240
    while _blocks_done(out)[0] < target and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    kill_tree(proc)  # a crash of the whole machine: torchrun and both workers (in their own sessions)
    done, status = _blocks_done(out)
    assert status == "running" and 0 < done < 64 and done % 2 == 0, (done, status)  # a prefix of whole rounds
    install()
    deadline = time.time() + 30
    while True:  # under load a SIGKILLed worker may hold its lock for a moment while it exits
        code, _, err = cli("run", *KA, "--n", "2048", "--out", out, "--quiet", "--resume", "--keep-state")
        if code == 0 or "is writing" not in err or time.time() > deadline:
            break
        time.sleep(0.5)
    assert code == 0, err
    assert_same_run(out, single)


def test_damaged_results_files_are_refused(tmp_path):
    install()
    out = tmp_path / "run.h5"
    proc = subprocess.Popen([sys.executable, "-m", "tests.plugins.known_answer", "run", *KA, "--n", "4096", "--out", str(out),
                             "--quiet", "--save-every", "1"], env=ENV, cwd=ROOT)
    while _blocks_done(out)[0] < 3 and proc.poll() is None:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    intact = out.read_bytes()
    out.write_bytes(intact[: len(intact) // 2])  # truncated
    code, _, err = cli("run", *KA, "--n", "4096", "--out", out, "--quiet", "--resume")
    assert code == 2 and "truncated or damaged" in err and "--force" in err
    out.write_bytes(intact)
    with h5py.File(out, "a") as f:  # readable, but the saved state is gone
        del f["state"]
    code, _, err = cli("run", *KA, "--n", "4096", "--out", out, "--quiet", "--resume")
    assert code == 2 and "saved state cannot be resumed" in err
    code, _, err = cli("run", *KA, "--n", "4096", "--out", out, "--quiet", "--force")
    assert code == 0, err


def test_nonfinite_activations_are_counted_and_left_out(tmp_path):
    """A model output that is NaN where x1 > 2.5: counted per activation, excluded, and warned about."""
    install()
    out = tmp_path / "holes.h5"
    code, _, err = cli("run", "--model", "ka-holes", "--aug", "ishigami", "--n", "1024", "--out", out)
    assert code == 0, err
    assert "warning: non-finite outputs" in err and "both: 1 activations" in err
    from sa_frame.engine.config import build_config
    from sa_frame.engine.run import plan

    run = plan(build_config({}, {"model": "ka-holes", "aug": "ishigami", "n": 1024}))
    column = run.problem.names.index("ka1.v")
    expected = sum(int((run.problem.values(b.unit, b.known)[:, column] > 2.5).sum()) for b in run.design)
    res = ResultsFile(out).read("checkpoints")["both"]
    assert res["nonfinite"].tolist() == [0, expected] and expected > 0
    assert ResultsFile(out).attrs()["nonfinite_values"] == {"both": [1, expected]}
    assert np.isfinite(res["S1"]).all() and np.isfinite(res["ST"]).all()
    # the clean column is untouched by its neighbour's NaNs
    code, _, err = cli("run", *KA, "--n", "1024", "--out", tmp_path / "clean.h5", "--quiet")
    clean = ResultsFile(tmp_path / "clean.h5").read("checkpoints")["out"]
    np.testing.assert_array_equal(res["S1"][:, 0], clean["S1"][:, 0])


def test_binned_contrast_is_not_split_across_processes(monkeypatch, tmp_path):
    from sa_frame.core.errors import UsageError
    from sa_frame.engine.config import build_config
    from sa_frame.engine.distributed import World
    from sa_frame.engine.run import execute

    install()
    monkeypatch.setattr("sa_frame.engine.run.join", lambda device: World(0, 2))
    config = build_config({"extra": {"mode": "binned"}}, {"model": "ka-ishigami", "aug": "ishigami",
                                                          "estimator": "contrast", "n": 8, "out": str(tmp_path / "x.h5")})
    with pytest.raises(UsageError, match=r"binned mode \(the default\) cannot be split across processes.*-o mode=exact"):
        execute(config)
    assert torch.distributed.is_available()


def test_one_writer_per_results_file(tmp_path):
    """A second run on a file another live process is writing is refused; a stale lock is taken over."""
    import socket

    install()
    out = tmp_path / "locked.h5"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "locked.h5.lock").write_text(f"{socket.gethostname()} {sleeper.pid}")
        code, _, err = cli("run", *KA, "--n", "64", "--out", out, "--quiet")
        assert code == 2 and f"pid {sleeper.pid}) is writing" in err and not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    code, _, err = cli("run", *KA, "--n", "64", "--out", out, "--quiet")  # the lock's process is gone
    assert code == 0, err
    assert not (tmp_path / "locked.h5.lock").exists()
