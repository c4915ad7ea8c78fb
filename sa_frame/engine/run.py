"""`sa-frame run` (and its Python form `execute`): plan, then design blocks through the
runner into the accumulator; state saved every K blocks; indices written to the results.

A resumed run continues from the last saved block with the saved state and ends with
exactly the numbers of an uninterrupted run of the same configuration.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np

from sa_frame.core.errors import UsageError
from sa_frame.core.estimator import Accumulator
from sa_frame.engine.config import RunConfig
from sa_frame.engine.distributed import World, join, leave, merged_on_main
from sa_frame.engine.low_variance import mark_low_variance, ratio_maps
from sa_frame.engine.plan import RunPlan, plan, resolve_device
from sa_frame.engine.record import base_attrs, nonfinite_summary, variables_section
from sa_frame.engine.region_runner import RegionRunner
from sa_frame.engine.relevance_runner import RelevanceRunner
from sa_frame.engine.resume import check_inputs, check_state, input_fingerprints, remove_stale_temporaries
from sa_frame.engine.runner import Progress, Runner
from sa_frame.engine.stop import RunInterrupted, StopRequest
from sa_frame.results.lock import WriterLock
from sa_frame.results.store import COMPLETE, RUNNING, ResultsFile, state_tree

#: settings that change no formula but how rows meet the network; why a resume still keeps them
BATCHING_KEYS = ("batch_size", "device")
BATCHING_CHANGES = ("batch size and device decide which images share a forward, which kernels run and the order "
                    "of the float64 sums; float32 convolutions may then round differently (demo-cnn's outputs "
                    "differ by up to 8e-6 between batches of 64 and of 1), so the resumed maps would not equal an "
                    "uninterrupted run's exactly")


def check_existing(results: ResultsFile, config: RunConfig) -> int:
    """Blocks already done (0 for a fresh run); refuse to clobber or to resume another config."""
    if not results.exists():
        if config.resume:
            raise UsageError(f"nothing to resume: {results.path} does not exist")
        return 0
    if config.force and config.resume:
        raise UsageError("--resume continues the saved run and --force discards it: give one of them")
    if config.force:
        return 0
    try:
        attrs = results.attrs()
    except UsageError as exc:
        raise UsageError(f"{exc}; the file may be truncated or damaged: use --force to start over "
                         f"(or --out for another file)") from None
    status = attrs.get("status")
    if status == COMPLETE:
        raise UsageError(f"{results.path} already holds a complete run; use --force to overwrite it or --out "
                         f"for another file")
    if not config.resume:
        raise UsageError(f"{results.path} holds an unfinished run; use --resume to continue it or --force to "
                         f"start over")
    stored = attrs["identity"]
    new = config.identity()
    differing = sorted(k for k in set(stored) | set(new) if stored.get(k) != new.get(k))
    if differing:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in differing)
        why = f"; {BATCHING_CHANGES}" if set(differing) <= set(BATCHING_KEYS) else ""
        raise UsageError(f"cannot resume {results.path} with another configuration ({detail}){why}; "
                         f"`sa-frame run --resume --out {results.path}` alone continues with the stored one")
    return int(attrs["blocks_done"])


#: a run with the defaults' sizes expected to take longer than this gets a note on how to pick a size
LONG_RUN_S = 3600.0
#: any run expected to take longer than this says so after its first block, with its memory and disk
PROBE_NOTE_S = 600.0


def first_block_note(run: RunPlan, first_block_s: float, blocks_left: int, processes: int, state_bytes: int) \
        -> str | None:
    """What a person should know once the first block (the probe) is done, None for a short run:
    the expected time, the state it keeps in memory and in the file, and — for the paper's default
    size over LONG_RUN_S — how to pick a size. The run goes on either way."""
    expected = first_block_s * blocks_left / max(1, processes)
    state = (f"it keeps {state_bytes / 2**20:,.0f} MiB of state in memory (per process) and in {run.config.out} "
             f"while it runs, saved every {run.config.save_every} blocks")
    if run.config.n is None and run.profile == "paper" and expected > LONG_RUN_S:
        return (f"this run uses the paper's size, n = {run.n:,} ({run.design.n_rows:,} rows), and at the speed of "
                f"its first block it needs about {expected / 3600:.1f} h; {state}; it goes on (Ctrl-C saves, "
                f"--resume continues). For a first look give a smaller --n (docs/estimators.md: sizes and "
                f"intervals) or --quick")
    if expected > PROBE_NOTE_S:
        return (f"{run.design.n_rows:,} rows in {run.design.n_blocks:,} blocks: about {expected / 60:,.0f} min at the "
                f"speed of the first block; {state} (Ctrl-C saves, --resume continues)")
    return None


def execute(config: RunConfig, progress_factory: Callable[[int, int], Progress] | None = None,
            notify: Callable[[str], None] | None = None) \
        -> tuple[RunPlan, dict[str, dict[str, np.ndarray]] | None, float]:
    """Run (or resume) a configuration, alone or as one of torchrun's processes; returns the plan,
    the index maps (None on ranks other than 0) and the wall time. `notify` receives notes a
    person should see while the run goes on (a default size that will take hours)."""
    results = ResultsFile(config.out, compression=config.compression)
    start_block = check_existing(results, config)
    world = join(resolve_device(config.device))
    stop = StopRequest()  # one process: a signal stops at the next block boundary, saved
    with WriterLock(config.out) if world.is_main else contextlib.nullcontext(), \
            stop if world.size == 1 else contextlib.nullcontext():
        return _execute(config, results, start_block, world, progress_factory, stop, notify)


def _execute(config: RunConfig, results: ResultsFile, start_block: int, world: World,
             progress_factory: Callable[[int, int], Progress] | None, stop: StopRequest,
             notify: Callable[[str], None] | None = None) \
        -> tuple[RunPlan, dict[str, dict[str, np.ndarray]] | None, float]:
    run = plan(config)
    why_not = run.estimator.split_error(run.design) if world.size > 1 else None
    if why_not:
        raise UsageError(why_not)
    runner: Runner | RegionRunner | RelevanceRunner = RegionRunner(run) if run.regions is not None else \
        RelevanceRunner(run) if run.relevance is not None else Runner(run)
    shapes = runner.shapes()
    need = run.estimator.memory_note(run.design, shapes)
    if need and notify is not None and world.is_main:
        notify(need)
    fixed = runner.sections() if isinstance(runner, RegionRunner) else {}  # a region run's images and regions

    def fresh() -> Accumulator:
        return run.estimator.accumulator(run.problem, run.design, shapes, device=run.device)

    acc = fresh()
    variables = variables_section(run)
    inputs = input_fingerprints(run)
    if world.is_main:
        remove_stale_temporaries(results.path)
    if start_block and world.is_main:  # the saved state covers blocks [0, start_block): one copy of it
        stored = results.attrs()
        if "inputs" in stored:  # files written before fingerprints were recorded have none
            check_inputs(stored["inputs"], run, results.path)
        try:
            state = results.state()
            if not any("/" in key for key in state):
                raise ValueError("no accumulator state was saved")
            check_state(run, shapes, state, start_block)  # before any kernel reads it
            acc.load_state(state)
        except (KeyError, ValueError, RuntimeError, OSError, UsageError) as exc:
            raise UsageError(f"{results.path}: the saved state cannot be resumed ({exc}); use --force to start "
                             f"over") from None
    elif world.is_main:
        results.write(base_attrs(run, RUNNING, 0, inputs), {"variables": variables, **fixed})
    world.barrier()
    started = time.perf_counter()
    n_blocks = run.design.n_blocks
    rounds_per_save = max(1, config.save_every // world.size)

    def save(rounds_done: int) -> None:
        if rounds_done == 1 and notify is not None and world.is_main:  # the first block is the probe
            state_bytes = sum(t.numel() * t.element_size() for t in acc.state().values())
            note = first_block_note(run, time.perf_counter() - started, n_blocks - start_block, world.size,
                                    state_bytes)
            if note:
                notify(note)
        # every rank has finished `rounds_done` rounds of W blocks: the merged state is a prefix
        prefix = start_block + rounds_done * world.size
        stopping = stop.requested is not None and world.size == 1
        if (rounds_done % rounds_per_save == 0 or stopping) and prefix < n_blocks:
            merged = merged_on_main(world, acc, fresh)
            if merged is not None:
                results.write(base_attrs(run, RUNNING, prefix, inputs), {"variables": variables, **fixed,
                                                                         "state": state_tree(merged.state())})
        if stopping and prefix < n_blocks:
            raise RunInterrupted(f"interrupted ({stop.requested}) after {prefix} of {n_blocks} blocks; the state is "
                                 f"saved in {results.path}: `sa-frame run --resume ... --out {results.path}` with "
                                 f"the same options continues it")

    rows_per_block = run.design.n_rows // n_blocks
    progress = progress_factory(run.design.n_rows, start_block * rows_per_block) \
        if progress_factory and world.is_main else (lambda n: None)
    runner.process(acc, world.blocks(start_block, n_blocks), save,
                   (lambda n: progress(n * world.size)) if world.size > 1 else progress)
    merged = merged_on_main(world, acc, fresh)
    elapsed = time.perf_counter() - started
    if merged is None:
        leave(world)
        return run, None, elapsed
    maps = merged.finalize()
    undefined = {}
    if run.mode == "augmentations":  # a region run's score or a step-wise run's relevances have no such denominators
        names = ratio_maps(run.estimator.fractions, run.estimator.analysis_maps)
        undefined = {name: mark_low_variance(stats, names) for name, stats in maps.items()}
    attrs = base_attrs(run, COMPLETE, n_blocks, inputs) | {"elapsed_s": elapsed, "processes": world.size,
                                                   "nonfinite_values": nonfinite_summary(maps),
                                                   "low_variance": {k: v for k, v in undefined.items() if v}}
    sections = {"variables": variables, **fixed, "checkpoints": maps}
    if config.keep_state:  # float64 sums: to check exactness, or to merge with other runs later
        sections["state"] = state_tree(merged.state())
    results.write(attrs, sections)
    leave(world)
    return run, maps, elapsed
