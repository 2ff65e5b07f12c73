"""The one multi-layer perceptron: hidden blocks, an optional output layer, and the two ways other
models reach into it without touching its internals.

- `forward_parts(parts)` is `forward(cat(parts))` computed from the parts, some of which may be
  factored representations (`gprec.layers.factored`): the first layer is applied per column
  block and nothing wide is ever concatenated (GPRec's `input` strategy, f_1, f_DP).
- `forward(x, deltas)` adds per-sample low-rank weight deltas `W_b = W + U_b V_b` to each linear
  layer, applied as `x W + (x U_b) V_b` with batched matmuls so the per-sample matrices are
  never built (GPRec's `dynamic` strategy; APG and DGPM later).

A prediction head is an `MLP` with `out_dim=1`; it declares what it accepts through
`accepts_extra_inputs` and `accepts_weight_deltas`, which other heads (FinalMLP's bilinear
fusion) answer differently.
"""

from __future__ import annotations

import torch
from torch import nn

from gprec.layers.factored import Part, factored_linear

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}

# A low-rank per-sample weight delta for one linear layer: U (batch, in, r), V (batch, r, out).
LowRankDelta = tuple[torch.Tensor, torch.Tensor]


class MLP(nn.Module):
    """`Linear -> [BatchNorm] -> activation -> [dropout]` per hidden width, then an optional
    `Linear` to `out_dim` (no activation). `(B, in_dim) -> (B, out_dim or hidden[-1])`."""

    accepts_extra_inputs = True  # forward_parts: the first layer's input may be widened
    accepts_weight_deltas = True  # forward(x, deltas)

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        out_dim: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ):
        super().__init__()
        dims = [in_dim, *hidden, *([out_dim] if out_dim is not None else [])]
        self.linears = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(b) if batch_norm else nn.Identity() for b in hidden
        )
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.n_hidden = len(hidden)
        self.in_dim, self.out_dim = in_dim, dims[-1]

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """`(in, out)` of every linear layer: the shapes weight deltas must have."""
        return [(lin.in_features, lin.out_features) for lin in self.linears]

    @property
    def output_layer(self) -> nn.Linear:
        return self.linears[-1]

    def forward(
        self, x: torch.Tensor | list[Part], deltas: list[LowRankDelta | None] | None = None
    ) -> torch.Tensor:
        """`x` is the input, or a list of parts (dense or factored) that concatenate to it."""
        if isinstance(x, list):
            if deltas is not None:
                raise ValueError("weight deltas need a dense input, not parts")
            return self.forward_parts(x)
        return self._run(0, x, deltas)

    def forward_parts(self, parts: list[Part]) -> torch.Tensor:
        """`forward(cat(dense parts))`, the first layer applied block by block."""
        first = self.linears[0]
        return self._after(0, factored_linear(first.weight, first.bias, parts))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the last linear layer (what `factored.PersonalRep` keeps)."""
        return self._run(0, x, None, stop=len(self.linears) - 1)

    def _run(self, start, x, deltas, stop=None) -> torch.Tensor:
        for i in range(start, len(self.linears) if stop is None else stop):
            h = self.linears[i](x)
            if deltas is not None and deltas[i] is not None:
                u, v = deltas[i]
                h = h + torch.bmm(torch.bmm(x.unsqueeze(1), u), v).squeeze(1)
            x = self._post(i, h)
        return x

    def _post(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """What follows linear layer `i`: the hidden block's norm, activation and dropout."""
        if i < self.n_hidden:
            return self.dropout(self.activation(self.norms[i](h)))
        return h

    def _after(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """The rest of the network from linear layer `i`'s output `h` on."""
        return self._run(i + 1, self._post(i, h), None)
