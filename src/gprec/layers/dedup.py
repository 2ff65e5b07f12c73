"""Run a per-user computation once per distinct user of a batch, exactly.

A model part that reads only some fields (GPRec's group classifier, APG's hypernetworks, DGPM's
assignment: the user fields) gives the same output for every row with the same values there. A
batch of 4096 MovieLens rows holds far fewer distinct users, so the part runs on one row per
distinct user and its output is gathered back (`out[inverse]`); gradients flow through the
gather as the sum over the rows that share a user, as they would row by row.

Finding the distinct rows (`torch.unique`) gives shapes that depend on the data, which a
static graph (ONNX export) cannot hold. Within `static_shapes(model)` every module of the
model that declares a `static_shapes` attribute (`DistinctRows`; STAR's present-partitions
shortcut) takes its every-row path instead: the same numbers, one gather fewer, no
data-dependent shape. Outside it nothing changes (training keeps the dedup).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def static_shapes(model: nn.Module) -> Iterator[nn.Module]:
    """`model` with the data-dependent shortcuts of its modules off (each module that has a
    `static_shapes` attribute gets True) for the block; restored after."""
    modules = [m for m in model.modules() if hasattr(m, "static_shapes")]
    before = [m.static_shapes for m in modules]
    for m in modules:
        m.static_shapes = True
    try:
        yield model
    finally:
        for m, value in zip(modules, before, strict=True):
            m.static_shapes = value


def radix_multipliers(cardinalities: list[int]) -> torch.Tensor | None:
    """Multipliers making `row @ m` a unique int64 key per row of field indices; None on overflow."""
    total, mult = 1, []
    for c in cardinalities:
        mult.append(total)
        total *= c
    return torch.tensor(mult, dtype=torch.long) if total < 2**62 else None


class DistinctRows(nn.Module):
    """`forward(cols) -> (first, inverse)` for a `(B, k)` block of field indices: `first[u]` a
    row holding distinct row `u`, `inverse[b]` row `b`'s distinct row; None when every row is
    distinct (nothing to save). Keys rows by one int64 (the fields' radix) when it fits, else
    compares whole rows. `static_shapes` (see `static_shapes`): always None, every row computed."""

    static_shapes = False

    def __init__(self, cardinalities: list[int]):
        super().__init__()
        radix = radix_multipliers(cardinalities)
        self._radix_ok = radix is not None
        self.register_buffer(
            "radix",
            radix if radix is not None else torch.ones(len(cardinalities), dtype=torch.long),
            persistent=False,
        )

    def forward(self, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.static_shapes:
            return None
        if self._radix_ok:  # multiply-and-sum, not a matmul: CUDA has no integer matmul
            _, inverse = torch.unique((cols * self.radix).sum(1), return_inverse=True)
        else:
            _, inverse = torch.unique(cols, dim=0, return_inverse=True)
        n_unique = int(inverse.max()) + 1 if inverse.numel() else 0
        if n_unique == cols.shape[0]:
            return None
        rows = torch.arange(cols.shape[0], device=cols.device)
        first = torch.full((n_unique,), cols.shape[0], dtype=torch.long, device=cols.device)
        first.scatter_reduce_(0, inverse, rows, reduce="amin")
        return first, inverse
