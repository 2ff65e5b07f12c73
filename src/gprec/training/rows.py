"""Where an epoch's training batches come from.

The trainer iterates a *row source*: anything with `len()` (rows per epoch), `n_batches(size,
min_last)` and `batches(size, generator, min_last)`, which yields (X, y) batches, shuffled when
given a generator. `TensorRows` is the in-memory one (the default, and the fastest): one
permutation per epoch, batches as contiguous views. Other sources (rows streamed from disk,
one rank's shard in multi-process training) plug in here without the trainer knowing.
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
