"""Multi-process training on torch.distributed (DDP), launched by torchrun (docs/distributed.md).

`torchrun --nproc_per_node N -m gprec train ...` starts N processes, each with RANK, WORLD_SIZE
and LOCAL_RANK in its environment. `session(train.device)` joins them in a process group (gloo
on CPU; nccl on GPUs, each process on `cuda:LOCAL_RANK`) and gives a `Dist`, through which
`run_training` and the `Trainer` share the work:

- every process loads the whole dataset (the same split seed: the same rows) and builds the same
  model; DDP averages the gradients, so the weights stay equal everywhere;
- the training rows are sharded per batch (`rows.ShardedRows`): all processes draw the same
  global batch of `train.batch_size` rows and each trains on its own chunk of it;
- evaluation scores each process's slice of the rows and gathers the predictions, so every
  process computes the same metrics from the same predictions and early stopping decides alike;
- only rank 0 writes (run directory, log, checkpoints, metrics) and prints; decisions about the
  run directory are made by rank 0 and given to the others (`Dist.on_main`).

With one process (no torchrun, or `--nproc_per_node 1`) there is no process group: `SINGLE`
changes nothing: training takes the same steps, to the bit, as without this module.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist

from gprec.errors import ConfigError, GprecError
from gprec.training.rows import chunk_bounds

T = TypeVar("T")


class Abort(GprecError):
    """Another process (rank 0) met a user error and has reported it: this one stops quietly
    (`gprec train` exits 2 without repeating the message)."""


def launched_world() -> int:
    """How many processes torchrun started (WORLD_SIZE; 1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes, and the collectives training uses.
    Every method is a no-op (or the identity) with one process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""  # gloo | nccl; "" without a process group

    @property
    def active(self) -> bool:
        return self.world > 1

    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where tensors must be for this backend's collectives."""
        return torch.device(f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu")

    def device_name(self, name: str) -> str:
        """`train.device` for this process: `cuda` is `cuda:LOCAL_RANK` (one GPU per process)."""
        return f"cuda:{self.local_rank}" if self.active and name.startswith("cuda") else name

    def seed(self, seed: int) -> int:
        """The seed of this process's own random draws (dropout, GPRec's Gumbel noise, sampled
        negatives): `seed` on rank 0, another per rank, so that processes do not draw the same
        noise for their different rows. The batch order is drawn from `seed` everywhere."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1, np.uint64)[0] >> 1)

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every process (pickled)."""
        if not self.active:
            return obj
        box = [obj if self.is_main() else None]
        tdist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order (pickled)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """`fn()` run by rank 0 alone, its result given to every process. A user error it raises
        stops every process: rank 0 reports it (`gprec: error: ...`) before the others hear of
        it, so torchrun stopping them cannot cut the message off, and they raise `Abort`."""
        if not self.active:
            return fn()
        if self.is_main():
            try:
                result = ("ok", fn())
            except GprecError as e:
                print(f"gprec: error: {e}", file=sys.stderr, flush=True)
                self.broadcast(("error", str(e)))
                raise Abort(str(e)) from e
            return self.broadcast(result)[1]
        kind, value = self.broadcast(None)
        if kind == "error":
            raise Abort(f"rank 0 stopped: {value}")
        return value

    @contextmanager
    def local_first(self) -> Iterator[None]:
        """The body run by each machine's first process (LOCAL_RANK 0) before the others start
        it: e.g. loading the data, so that one process fills the dataset cache and the others
        read it, instead of all writing it at once."""
        if not self.active:
            yield
            return
        if self.local_rank != 0:
            tdist.barrier()
        yield
        if self.local_rank == 0:
            tdist.barrier()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the processes, in place."""
        if self.active:
            tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
        return tensor

    def shard(self, n: int) -> tuple[int, int]:
        """This process's contiguous part [lo, hi) of n rows, as `torch.tensor_split` cuts."""
        return chunk_bounds(n, self.rank, self.world)

    def gather_rows(self, part: np.ndarray, n: int) -> np.ndarray:
        """The n rows' values from every process's `part` (its `shard(n)`), in row order."""
        if not self.active:
            return part
        size = -(-n // self.world)  # the longest part: every process sends that many
        t = torch.zeros(size, dtype=torch.from_numpy(part[:0]).dtype, device=self.comm_device)
        t[: len(part)] = torch.from_numpy(np.ascontiguousarray(part)).to(self.comm_device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        tdist.all_gather(out, t)
        pieces = []
        for r, o in enumerate(out):
            lo, hi = chunk_bounds(n, r, self.world)
            pieces.append(o[: hi - lo])
        return torch.cat(pieces).cpu().numpy()

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics, ...) on every process: each process
        updated its own from its chunks; what is evaluated and saved is rank 0's."""
        if self.active:
            for b in module.buffers():
                tdist.broadcast(b, src=0)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` under DistributedDataParallel for the training steps (the module itself with
        one process). Every parameter must get a gradient in every step
        (find_unused_parameters=False: tests/test_distributed.py checks every model). Buffers
        are synced once, at the start, not at each step (`sync_buffers` before evaluation)."""
        if not self.active:
            return module
        ddp = torch.nn.parallel.DistributedDataParallel
        # Newer torch names it forward_sync_buffers (and warns about the old name).
        names = inspect.signature(ddp.__init__).parameters
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in names else "broadcast_buffers"
        return ddp(
            module,
            device_ids=[self.local_rank] if self.backend == "nccl" else None,
            find_unused_parameters=False,
            **{no_sync: False},
        )


SINGLE = Dist()


@contextmanager
def session(device: str = "cpu") -> Iterator[Dist]:
    """The process group of the processes torchrun started, for the duration of a run: gloo when
    `device` (train.device) is the CPU, nccl on GPUs, this process on `cuda:LOCAL_RANK`. Without
    torchrun (WORLD_SIZE unset or 1) no group: `SINGLE`. The group is destroyed when the run
    ends; a run ended by an error leaves that to the process's exit, so that the error is
    reported before the other processes lose their connection to this one."""
    world = launched_world()
    if world <= 1:
        yield SINGLE
        return
    missing = [
        k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is {world} but {', '.join(missing)} is not set: start several "
            "processes with torchrun (torchrun --nproc_per_node N -m gprec train ...)"
        )
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    backend = "gloo"
    if device.startswith("cuda"):
        if ":" in device:
            raise ConfigError(
                f"train.device is '{device}', but under torchrun each process takes the GPU of "
                "its LOCAL_RANK: set train.device=cuda"
            )
        if not torch.cuda.is_available():
            raise ConfigError(
                "train.device is 'cuda', but torch sees no CUDA device here (on CPUs, train with "
                "train.device=cpu: the processes then use gloo)"
            )
        count = torch.cuda.device_count()
        if local_rank >= count:
            local_world = os.environ.get("LOCAL_WORLD_SIZE", "?")
            raise ConfigError(
                f"torchrun started {local_world} processes on this machine but torch sees "
                f"{count} CUDA device(s): one process per GPU (--nproc_per_node {count})"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    tdist.init_process_group(backend)
    yield Dist(rank=rank, world=world, local_rank=local_rank, backend=backend)
    # Not in a `finally`: destroying the group while the others wait on this process would
    # have them fail (a traceback each) before this one has reported why it stopped.
    tdist.destroy_process_group()
