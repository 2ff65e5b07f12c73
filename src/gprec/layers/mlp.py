"""Multi-layer perceptrons, including a prediction head that takes per-sample weight deltas."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}

# A low-rank per-sample weight delta for one linear layer: U (batch, in, r), V (batch, r, out).
LowRankDelta = tuple[torch.Tensor, torch.Tensor]


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> activation -> dropout blocks, then an optional output layer."""

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        out_dim: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ):
        layers: list[nn.Module] = []
        dim = in_dim
        for width in hidden:
            layers.append(nn.Linear(dim, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = width
        if out_dim is not None:
            layers.append(nn.Linear(dim, out_dim))
            dim = out_dim
        super().__init__(*layers)
        self.out_dim = dim


class PredictionHead(nn.Module):
    """The prediction MLP `f_y` (docs/gprec.md §2: `[64, 32, 16, 1]`), returning a logit.

    `forward` optionally adds per-sample low-rank weight deltas to each linear
    layer, `W_b = W + U_b V_b`, applied as `x W + (x U_b) V_b` with batched
    matmuls so the full per-sample matrices are never built. Dynamic-parameter
    models (GPRec's `dynamic` strategy, APG, DGPM) use this; plain models don't.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ):
        super().__init__()
        dims = [in_dim, *hidden, 1]
        self.linears = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(b) if batch_norm else nn.Identity() for b in dims[1:-1]
        )
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.in_dim = in_dim

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        return [(lin.in_features, lin.out_features) for lin in self.linears]

    def forward(
        self, x: torch.Tensor, deltas: list[LowRankDelta | None] | None = None
    ) -> torch.Tensor:
        last = len(self.linears) - 1
        for i, lin in enumerate(self.linears):
            h = lin(x)
            if deltas is not None and deltas[i] is not None:
                u, v = deltas[i]
                h = h + torch.bmm(torch.bmm(x.unsqueeze(1), u), v).squeeze(1)
            if i < last:
                h = self.dropout(self.activation(self.norms[i](h)))
            x = h
        return x.squeeze(-1)
