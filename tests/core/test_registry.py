"""The plugin registry, the CLI shell and a real pip-installed third-party plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import sa_frame
from sa_frame.cli.app import main
from sa_frame.core import registry as plugin_module
from sa_frame.core.errors import PluginError, UsageError
from tests.cli_runner import cli
from tests.plugins.every_hook import CheckpointOverride, DuplicateEstimator, EveryHookPlugin

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def every_hook():
    reg = plugin_module.registry()
    reg.add_plugin(EveryHookPlugin(), provider="tests", version="9.9")
    return reg


def test_every_kind_is_collected_with_its_provider(every_hook):
    for kind, name in [("model", "test-model"), ("augmentation", "test-brighten"), ("sampler", "test-sampler"),
                       ("estimator", "test-estimator"), ("analysis", "test-analysis")]:
        reg = every_hook.entries(kind)[name]
        assert (reg.provider, reg.version, reg.builtin) == ("tests", "9.9", False)
    assert sa_frame.registered("checkpoint")["test-model"] == ["layer1", "fc"]
    assert sa_frame.registered("augmentation_set")["test-set"] == ["test-brighten"]
    assert "sobol" in sa_frame.registered("estimator")  # built-ins alongside


def test_family_names_resolve_by_prefix(every_hook):
    assert sa_frame.lookup("model", "test-family/wide").name == "test-family/wide"
    with pytest.raises(UsageError, match="unknown model 'test-famly/wide'"):
        sa_frame.lookup("model", "test-famly/wide")


def test_later_plugin_overrides_checkpoints(every_hook):
    every_hook.add_plugin(CheckpointOverride(), provider="other")
    assert sa_frame.registered("checkpoint")["test-model"] == ["fc"]


def test_duplicate_name_names_both_providers(every_hook):
    every_hook.add_plugin(DuplicateEstimator(), provider="dup-dist", version="1")
    with pytest.raises(PluginError, match="estimator 'test-estimator' is registered twice: by tests .* and by "
                                          "dup-dist"):
        sa_frame.registered("estimator")


def test_unknown_names_list_registered_and_closest():
    with pytest.raises(UsageError, match=r"unknown estimator 'shaply' \(did you mean 'shapley' or 'ssa' or "
                                         r"'sbsa'\?\); registered: contrast, sbsa, shapley, sobol, ssa, variance"):
        sa_frame.lookup("estimator", "shaply")
    with pytest.raises(UsageError, match="unknown plugin kind 'estimatr'.*'estimator'"):
        sa_frame.registered("estimatr")


def test_augmentation_contract_validates_inputs(every_hook):
    aug = sa_frame.registered("augmentation")["test-brighten"]
    images = torch.rand(4, 3, 8, 8)
    out = aug(images, {"factor": torch.tensor([0.5, 1.0, 0.75, 1.0])})
    torch.testing.assert_close(out[0], images[0] * 0.5)
    torch.testing.assert_close(aug(images, aug.identity_params(4)), images)
    for params, message in [({"factor": torch.tensor([2.0, 1, 1, 1])}, "'factor'.*outside its range"),
                            ({"factor": torch.ones(3)}, "one value per image"),
                            ({}, "missing \\['factor'\\]")]:
        with pytest.raises(UsageError, match=f"test-brighten.*{message}"):
            aug(images, params)
    with pytest.raises(UsageError, match="float in \\[0, 1\\], got torch.uint8"):
        aug((images * 255).to(torch.uint8), {"factor": torch.ones(4)})
    with pytest.raises(UsageError, match="must lie in \\[0, 1\\]"):
        aug(images + 1, {"factor": torch.ones(4)})


def test_plugin_commands_and_listing(every_hook):
    code, out, err = cli("hello", "--name", "sa")
    assert code == 0 and out.strip() == "hello sa", err
    def brief(items):
        return [{k: item[k] for k in ("kind", "name", "provider", "version")} for item in items]

    listed = json.loads(cli("plugins", "--json")[1])
    assert {"kind": "augmentation", "name": "test-brighten", "provider": "tests", "version": "9.9"} in brief(listed)
    assert all(item["provider"] == "tests" and not item["builtin"] for item in listed)  # built-ins only with --all
    everything = json.loads(cli("plugins", "--json", "--all")[1])
    assert {"kind": "estimator", "name": "sobol", "provider": "sa-frame", "version": sa_frame.__version__} \
        in brief(everything)
    # asking for a kind lists all of it, built-ins included (the README's `--kind estimator --json`)
    estimators = json.loads(cli("plugins", "--json", "--kind", "estimator")[1])
    assert {e["name"] for e in estimators} >= {"sobol", "shapley", "variance", "contrast"}
    sobol = next(e for e in estimators if e["name"] == "sobol")
    assert sobol["builtin"] and sobol["description"] == sa_frame.lookup("estimator", "sobol").description
    sets = json.loads(cli("plugins", "--json", "--kind", "augmentation_set")[1])
    assert [s["name"] for s in sets] == ["a1", "a2", "test-set"] and sets[2]["builtin"] is False


def _run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sa_frame", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def test_cli_exit_codes_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plugins", "--kind", "nonsense"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown plugin kind 'nonsense'" in err and "estimator" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"sa-frame {sa_frame.__version__}"
    with pytest.raises(SystemExit) as exc:
        main(["--debug", "plugins", "--kind", "nonsense"])
    assert exc.value.code == 2 and "Traceback" in capsys.readouterr().err


def test_the_script_exits_quickly_with_the_status_main_gave(monkeypatch, capsys):
    """`console_main` (the `sa-frame` script) runs the atexit handlers, flushes and leaves with
    os._exit once torch is loaded, keeping main's exit status; a text status is printed, as
    Python prints it, with status 1."""
    import sa_frame.cli.app as app

    calls = []
    monkeypatch.setattr(app.os, "_exit", lambda code: calls.append(code))
    monkeypatch.setattr(app.atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    for outcome in (None, SystemExit(2), SystemExit(None), SystemExit("text status"), SystemExit(130)):
        def fake_main(argv=None, outcome=outcome):
            if outcome is not None:
                raise outcome

        monkeypatch.setattr(app, "main", fake_main)
        app.console_main([])
    assert calls == ["atexit", 0, "atexit", 2, "atexit", 0, "atexit", 1, "atexit", 130]
    assert capsys.readouterr().err == "text status\n"


def test_the_script_writes_a_complete_file_and_reports_errors(tmp_path):
    """Through the real script path (`python -m sa_frame`): a finished run's file is complete and
    its maps readable after the quick exit; an error after torch is loaded still prints its one
    line and exits 2."""
    out = tmp_path / "r.h5"
    done = _run_cli("run", "--n", "8", "--out", str(out), "--quiet", env={"SA_FRAME_LOAD_PLUGINS": ""})
    assert done.returncode == 0, done.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"
        first = f["checkpoints/fc/S1"][...]
        assert first.shape[-1] == 10 and np.isfinite(first).any()
    again = _run_cli("run", "--n", "8", "--out", str(out), "--quiet", env={"SA_FRAME_LOAD_PLUGINS": ""})
    assert again.returncode == 2
    assert again.stderr == f"sa-frame: error: {out} already holds a complete run; use --force to overwrite it or " \
                           f"--out for another file\n"


def test_example_plugin_after_pip_install(tmp_path):
    """The example distribution, pip-installed, shows up through its entry point."""
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--target", str(target), str(ROOT / "examples" / "sa-frame-vignette")],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {"PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    listed = _run_cli("plugins", "--json", env={**env, "SA_FRAME_LOAD_PLUGINS": "vignette"})
    assert listed.returncode == 0, listed.stderr
    assert {"kind": "augmentation", "name": "vignette", "provider": "sa-frame-vignette", "version": "0.1.0",
            "builtin": False, "description": "darken the corners (strength 0 = no-op, 1 = black corners)"} \
        in json.loads(listed.stdout)
    assert {"kind": "augmentation", "name": "invert", "provider": "sa-frame-vignette", "version": "0.1.0",
            "builtin": False, "description": "colour inversion, 1 - x (parameter-free: switched)"} \
        in json.loads(listed.stdout)
    # the tutorial's lazy hook module: `sa-frame --help` with the plugin loaded imports no torch
    code = ("import sys\nfrom sa_frame.cli.app import main\nimport sa_frame\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nassert 'sa_frame_vignette' in sys.modules\nprint('torch' in sys.modules)")
    helped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, **env, "SA_FRAME_LOAD_PLUGINS": "vignette"})
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.strip().splitlines()[-1] == "False"
    everything = json.loads(_run_cli("plugins", "--json", "--all", env={**env, "SA_FRAME_LOAD_PLUGINS": "vignette"}
                                     ).stdout)
    assert {"sobol", "vignette"} <= {item["name"] for item in everything}
    # the allowlist keeps it out
    blocked = _run_cli("plugins", "--json", env={**env, "SA_FRAME_LOAD_PLUGINS": "something-else"})
    assert json.loads(blocked.stdout) == []
    # another distribution squatting the allowed name: refused by name, picked by distribution
    squat = target / "squatter-0.1.dist-info"
    squat.mkdir()
    (squat / "METADATA").write_text("Metadata-Version: 2.1\nName: squatter\nVersion: 0.1\n")
    (squat / "entry_points.txt").write_text("[sa_frame]\nvignette = squatter_plugin\n")
    (target / "squatter_plugin.py").write_text("raise SystemExit('the squatter ran')\n")
    clash = _run_cli("plugins", "--json", env={**env, "SA_FRAME_LOAD_PLUGINS": "vignette"})
    assert clash.returncode == 2 and "plugins 'vignette' of" in clash.stderr and "DISTRIBUTION:vignette" in \
        clash.stderr, clash.stderr
    picked = _run_cli("plugins", "--json", env={**env, "SA_FRAME_LOAD_PLUGINS": "sa-frame-vignette:vignette"})
    assert picked.returncode == 0, picked.stderr
    assert [item["provider"] for item in json.loads(picked.stdout)] == ["sa-frame-vignette"] * 2  # invert, vignette
    # and it really augments: identity is a no-op, strength 1 blackens the corners
    code = ("import torch, sa_frame_vignette.augmentations as v; a = v.Vignette(); x = torch.rand(2, 3, 9, 9); "
            "y = a(x, {'strength': torch.tensor([0.0, 1.0])}); "
            "print(bool(torch.equal(y[0], x[0])), float(y[1, :, 0, 0].abs().max()), bool(torch.equal(y[1, :, 4, 4], x[1, :, 4, 4])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env})
    assert out.stdout.split() == ["True", "0.0", "True"], out.stderr
