"""The processes of one ``torchrun`` launch: this process's rank, its process group, and the one collective
the jobs share (``agree``: every rank's outcome and payload, so that all ranks end the same way).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR / PORT) for every process it starts; outside
torchrun this is world 1 and nothing here touches torch.distributed. Training (``training/loop.py``: gradients
averaged by DDP) and sampling (``sampling/job.py``: the image indices split across ranks) run the same job on
every rank; only rank 0 reports (events, the CLI's log lines and JSON result) and writes to the workspace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.engine.errors import JobCancelled, UserError


@dataclass
class DistInfo:
    """Rank / world of this process (world 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False

    @classmethod
    def from_env(cls) -> DistInfo:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")), True)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> range:
        """This rank's contiguous block of the indices 0..n-1: the blocks of ranks 0, 1, ... in order cover
        them once, their sizes differing by at most one."""
        q, r = divmod(int(n), self.world)
        start = self.rank * q + min(self.rank, r)
        return range(start, start + q + (1 if self.rank < r else 0))


@contextlib.contextmanager
def process_group(dist: DistInfo, cuda: bool) -> Iterator[None]:
    """The default process group for the duration of a job (NCCL when the job runs on a GPU, else gloo);
    nothing outside torchrun, and a group someone else opened is left open."""
    if not dist.active:
        yield
        return
    import torch
    import torch.distributed as tdist

    owns = not tdist.is_initialized()
    if owns:
        if cuda:
            torch.cuda.set_device(dist.local_rank)
        tdist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield
    finally:
        if owns:
            tdist.destroy_process_group()


def agree(dist: DistInfo, run) -> list[Any]:
    """``run()`` on every rank, then every rank's payload on every rank (in rank order).

    A rank whose ``run()`` was cancelled or failed still takes part in the exchange, so no rank waits for
    it; then every rank ends the same way: cancelled if any rank was, else failed with the first failing
    rank's message (a UserError naming the rank). Outside torchrun: ``[run()]``."""
    if not dist.active:
        return [run()]
    import torch.distributed as tdist

    try:
        mine: tuple[str, Any] = ("ok", run())
    except JobCancelled:
        mine = ("cancelled", None)
    except Exception as exc:  # noqa: BLE001 (any failure: every rank learns it below, its own rank re-raises it)
        mine = ("failed", exc)
    outcomes: list[Any] = [None] * dist.world
    tdist.all_gather_object(outcomes, mine if mine[0] != "failed" else ("failed", str(mine[1])))
    if mine[0] == "failed":
        raise mine[1]
    if any(state == "cancelled" for state, _ in outcomes):
        raise JobCancelled()
    for rank, (state, message) in enumerate(outcomes):
        if state == "failed":
            raise UserError(f"rank {rank} of {dist.world} failed: {message}")
    return [payload for _, payload in outcomes]
