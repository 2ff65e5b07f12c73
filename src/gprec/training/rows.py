"""Where an epoch's training batches come from.

The trainer iterates a *row source*: anything with `len()` (rows per epoch), `n_batches(size,
min_last)` and `batches(size, generator, min_last)`, which yields (X, y) batches, shuffled when
given a generator. `TensorRows` is the in-memory one (the default, and the fastest): one
permutation per epoch, batches as contiguous views. Other sources (rows streamed from disk,
one rank's shard in multi-process training) plug in here without the trainer knowing.

A source whose batches are each one process's part of a global batch (`ShardedRows`) yields
(X, y, share) instead: `share`, the part's fraction of the global batch's rows, by which the
trainer weighs the part's mean loss so that DDP's average over the processes is the global mean.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class RowSource(Protocol):
    def __len__(self) -> int: ...

    def n_batches(self, batch_size: int, min_last: int) -> int: ...

    def batches(
        self, batch_size: int, generator: torch.Generator | None, min_last: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def iterate_batches(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    min_last: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, y) batches; with a generator, in a fresh random order. A last batch smaller
    than `min_last` rows is dropped (`batch_size`: drop any partial one).

    One gather per epoch makes every batch a contiguous view, which is
    cheaper than gathering each batch separately.
    """
    if generator is not None:
        perm = torch.randperm(len(y), generator=generator).to(X.device)
        X, y = X[perm], y[perm]
    for start in range(0, len(y), batch_size):
        if len(y) - start < min_last:
            break
        yield X[start : start + batch_size], y[start : start + batch_size]


class TensorRows:
    """Rows held in memory as tensors (on the training device)."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor):
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def n_batches(self, batch_size: int, min_last: int) -> int:
        return len(self) // batch_size + (len(self) % batch_size >= min_last)

    def batches(self, batch_size, generator=None, min_last=1):
        return iterate_batches(self.X, self.y, batch_size, generator, min_last)


def chunk_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Part `rank` of `world` of n rows as `torch.tensor_split` cuts them: [lo, hi), the first
    n % world parts one row longer."""
    q, extra = divmod(n, world)
    lo = rank * q + min(rank, extra)
    return lo, lo + q + (rank < extra)


class ShardedRows:
    """One process's share of rows held in memory, in multi-process training
    (`training.distributed`).

    Every process holds all the rows and draws the same permutation per epoch (the same seeded
    generator, as `TensorRows` draws it), so all see the same global batches of `batch_size`
    rows, the batches one process would train on; each trains on its own contiguous part of
    every batch (`torch.tensor_split` into `world` parts, sizes at most one row apart). A batch
    comes with its part's `share` of the global batch (part rows / batch rows): the trainer
    scales the part's mean loss by share * world, so that DDP's average of the processes'
    gradients is the gradient of the global batch's mean loss, the step one process would take
    on the whole batch (up to the order of float sums).

    `len()` is the global row count (what samples per second counts). A last global batch too
    small to give every process `min_part` rows (2 for BatchNorm) is dropped on every process
    alike, so all take the same number of steps.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, rank: int, world: int, min_part: int = 1):
        self.X, self.y = X, y
        self.rank, self.world, self.min_part = rank, world, min_part

    def __len__(self) -> int:
        return len(self.y)

    def _min_last(self, min_last: int) -> int:
        return max(min_last, self.world * self.min_part)

    def n_batches(self, batch_size: int, min_last: int) -> int:
        n, m = len(self), self._min_last(min_last)
        return n // batch_size + (n % batch_size >= m)

    def batches(self, batch_size, generator=None, min_last=1):
        n, size, m = len(self), batch_size, self._min_last(min_last)
        if size < self.world * self.min_part:
            raise ValueError(f"a batch of {size} rows cannot be split into {self.world} parts")
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        full, last = divmod(n, size)
        lo, hi = chunk_bounds(size, self.rank, self.world)
        take = [order[: full * size].view(full, size)[:, lo:hi].reshape(-1)]
        parts = [(hi - lo, (hi - lo) / size)] * full
        if last >= m:
            a, b = chunk_bounds(last, self.rank, self.world)
            take.append(order[full * size + a : full * size + b])
            parts.append((b - a, (b - a) / last))
        idx = torch.cat(take).to(self.X.device)
        X, y = self.X[idx], self.y[idx]  # one gather of this process's rows per epoch
        start = 0
        for rows, share in parts:
            yield X[start : start + rows], y[start : start + rows], share
            start += rows
