"""What a resume may trust: the saved state checked key by key against the design (shapes,
dtypes, finiteness, block count) before any kernel reads it; the run's inputs checked by
content, not by path; temporaries of killed writes removed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sa_frame.core.errors import UsageError
from sa_frame.core.estimator import ACC_DTYPE
from sa_frame.core.model import WEIGHT_CHOICES
from sa_frame.engine.plan import RunPlan

PROBE_WIDTH = 1  # activations per checkpoint of the probe accumulator that tells the state's layout


def expected_layout(run: RunPlan) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], bool]:
    """({state key: (shape without the activation axis, dtype)}, whether sums must be finite) of
    one block folded into a fresh accumulator, learnt on a one-activation stand-in of every
    checkpoint (zero outputs)."""
    block = run.design.block(0)
    probe = run.estimator.accumulator(run.problem, run.design, {name: (PROBE_WIDTH,) for name in run.map_checkpoints})
    zeros = torch.zeros(block.n_rows, PROBE_WIDTH, dtype=torch.float32)
    probe.update(block, {name: zeros for name in run.map_checkpoints})
    layout = {key: (tuple(t.shape[:-1]), t.dtype) for key, t in probe.state().items() if key != "_blocks_done"}
    return layout, probe.finite_state


def check_state(run: RunPlan, shapes: Mapping[str, tuple[int, ...]], state: Mapping[str, Tensor],
                blocks_done: int) -> None:
    """Refuse (UsageError naming the first problem) a saved state that is not one this design
    and these checkpoints produce after `blocks_done` blocks."""
    if not 0 < blocks_done < run.design.n_blocks:
        raise UsageError(f"blocks done {blocks_done} is outside 1..{run.design.n_blocks - 1} for this design")
    saved = state.get("_blocks_done")
    if saved is None or int(saved) != blocks_done:
        raise UsageError(f"the state covers {None if saved is None else int(saved)} blocks, the file says "
                         f"{blocks_done}")
    layout, finite = expected_layout(run)
    keys = set(state) - {"_blocks_done"}
    missing, unexpected = sorted(set(layout) - keys), sorted(keys - set(layout))
    if missing or unexpected:
        raise UsageError(f"state keys differ from the design's: missing {missing[:3]}, unexpected {unexpected[:3]}")
    width = {name: int(torch.tensor(shape).prod()) for name, shape in shapes.items()}
    for key, tensor in state.items():
        if key == "_blocks_done":
            continue
        lead, dtype = layout[key]
        name = key.rsplit("/", 1)[0]
        if tensor.dtype != dtype:
            raise UsageError(f"state {key!r} is {tensor.dtype}, the accumulator keeps {dtype}")
        if tensor.ndim != len(lead) + 1 or tensor.shape[-1] != width[name]:
            raise UsageError(f"state {key!r} has shape {tuple(tensor.shape)}, expected {(*lead, width[name])}")
        grows = lead and tuple(tensor.shape[1:-1]) == lead[1:] and tensor.shape[0] == lead[0] * blocks_done
        if tuple(tensor.shape[:-1]) != lead and not grows:  # kept per row (contrast exact): rows x blocks
            raise UsageError(f"state {key!r} has shape {tuple(tensor.shape)}, expected {(*lead, width[name])}")
        if finite and tensor.dtype == ACC_DTYPE and not bool(torch.isfinite(tensor).all()):
            raise UsageError(f"state {key!r} holds non-finite sums")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_fingerprints(run: RunPlan) -> dict[str, str]:
    """What the run's numbers depend on besides its configuration: the weights file's content
    and the data's listing (names, sizes, modification times)."""
    weights = run.config.weights
    out = {"data": run.source.fingerprint()}
    if weights is not None and weights not in WEIGHT_CHOICES and Path(weights).is_file():
        out["weights"] = file_digest(Path(weights))
    elif hasattr(run.spec, "state_digest"):  # a live nn.Module given to sa_frame.run
        out["weights"] = run.spec.state_digest()
    return out


def check_inputs(stored: Mapping[str, Any], run: RunPlan, path: Path) -> None:
    """Refuse a resume whose weights or data changed since the saved blocks were computed."""
    now = input_fingerprints(run)
    changed = [key for key in sorted(set(stored) | set(now)) if stored.get(key) != now.get(key)]
    if changed:
        raise UsageError(f"cannot resume {path}: the {' and '.join(changed)} changed since it was started "
                         f"(contents, not paths, are compared); use --force to start over")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of killed writes to `path` (`.<name>.<pid>.tmp`), removed; the writer lock
    is held, so none belongs to a live writer."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


#: settings of one invocation, not of the run: never taken from a stored configuration
INVOCATION_KEYS = ("resume", "force", "quiet", "out")


def stored_run_values(path: str | Path) -> dict[str, Any]:
    """The configuration stored in an existing results file, as file values for `build_config`
    (so that ``sa-frame run --resume --out r.h5`` needs no other flag); {} when there is no
    readable file."""
    from sa_frame.results.store import ResultsFile

    results = ResultsFile(path)
    if not results.exists():
        return {}
    try:
        stored = results.config()
    except (UsageError, KeyError):  # a damaged file: the resume check names it, with what to do
        return {}
    return {k: v for k, v in stored.items() if k not in INVOCATION_KEYS}
