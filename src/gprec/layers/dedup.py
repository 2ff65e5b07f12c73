"""Run a per-user computation once per distinct user of a batch, exactly.

A model part that reads only some fields (GPRec's group classifier, APG's hypernetworks, DGPM's
assignment: the user fields) gives the same output for every row with the same values there. A
batch of 4096 MovieLens rows holds far fewer distinct users, so the part runs on one row per
distinct user and its output is gathered back (`out[inverse]`); gradients flow through the
gather as the sum over the rows that share a user, as they would row by row.
"""

from __future__ import annotations

import torch
from torch import nn


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
    compares whole rows."""

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
