"""Several processes, one run (torchrun; docs/scaling.md).

Under ``torchrun --nproc-per-node K -m sa_frame run ...`` every process builds the same
plan; rank r folds design blocks start+r, start+r+W, ... into its own accumulator. At a
save point (every `save_every` rounds of W blocks) and at the end, the states are
gathered on rank 0 and merged in rank order; because every rank has then finished the
same number of rounds, the merged state covers exactly the blocks [0, start + rounds*W)
— a prefix — so a saved run can be resumed by any number of processes. Only rank 0
writes the results file. NCCL on GPUs, gloo on CPUs (torch.distributed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sa_frame.core.errors import UsageError
from sa_frame.core.estimator import Accumulator


@dataclass(frozen=True)
class World:
    """This process' place among the run's processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def blocks(self, start: int, n_blocks: int) -> range:
        """The design blocks this process computes when resuming at `start`."""
        return range(start + self.rank, n_blocks, self.size)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


SINGLE = World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> World:
    """Join the process group torchrun set up (once per process); a single World otherwise."""
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot join the torchrun process group ({backend}): {exc}") from None
    return World(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """One GPU per process: cuda means cuda:LOCAL_RANK under torchrun."""
    if device.type == "cuda" and launched_by_torchrun() and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def merged_on_main(world: World, acc: Accumulator, fresh: Callable[[], Accumulator]) -> Accumulator | None:
    """All ranks' states merged in rank order on rank 0 (None on the others); `acc` itself on
    a single process. Collective: every rank must call it at the same point."""
    if world.size == 1:
        return acc
    state = {k: v.detach().cpu() for k, v in acc.state().items()}
    gathered: list[dict[str, torch.Tensor]] | None = [{} for _ in range(world.size)] if world.is_main else None
    dist.gather_object(state, gathered, dst=0)
    if not world.is_main:
        return None
    assert gathered is not None
    merged = fresh()
    merged.load_state(gathered[0])
    for other_state in gathered[1:]:
        other = fresh()
        other.load_state(other_state)
        merged.merge(other)
    return merged


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
