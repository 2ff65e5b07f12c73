"""The one multi-layer perceptron: hidden blocks, an optional output layer, and the two ways other
models reach into it without touching its internals.

- `forward_parts(parts)` is `forward(cat(parts))` computed from the parts, some of which may be
  factored representations (`gprec.layers.factored`): the first layer is applied per column
  block and nothing wide is ever concatenated (GPRec's `input` strategy, f_1, f_DP).
- `forward(x, mods)` modulates each linear layer per sample with a `LayerMod` (what user-level
  models do to a shared prediction MLP), without ever building a per-sample weight matrix:
  an input gate (PEPNet's PPNet), a replacement of the weight by `U S_b V` or `S_b` (APG),
  a per-partition element-wise product `W * W_p` (STAR), and a low-rank additive delta
  `W + U_b V_b` (GPRec's `dynamic` strategy, DGPM).

A prediction head is an `MLP` with `out_dim=1`; it declares what it accepts through
`accepts_extra_inputs` and `accepts_layer_mods`, which other heads (FinalMLP's bilinear
fusion) answer differently. A head that accepts layer mods also offers `layer_shapes` and
`freeze_weights(layers)` (for a model that replaces those layers' weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gprec.layers.factored import Part, factored_linear

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}

# A low-rank per-sample weight delta for one linear layer: U (batch, in, r), V (batch, r, out).
LowRankDelta = tuple[torch.Tensor, torch.Tensor]


@dataclass
class LayerMod:
    """Per-sample modulation of one linear layer `h = x W + b` (`W` is `(in, out)` here).

    Applied in this order, each optional:
    - `gate` `(B, in)`: the layer's input is multiplied by it first (PEPNet's PPNet gates);
    - `replace`: the weight is replaced per sample, the bias kept. `(S,)` with `S`
      `(B, in, out)` gives `x S_b`; `(U, S, V)` with `U` `(in, k)`, `S` `(B, k, k)`, `V`
      `(k, out)` gives `((x U) S_b) V`, the per-sample matrix never built (APG). The layer's
      own weight is then unused: a model that always replaces it freezes it
      (`MLP.freeze_weights`), so that no parameter goes without a gradient;
    - `partition_scale`: `(W_p, b_p, p)` with `W_p` `(P, in, out)`, `b_p` `(P, out)` and the
      partition `p` `(B,)` of each sample: `x (W * W_p[p_b]) + b + b_p[p_b]` (STAR). All P
      products are computed and each sample's gathered: P times the layer's cost, batched;
      the P used here (a user attribute) are a handful. It scales the layer's own weight, so
      it cannot be combined with `replace` (a ValueError);
    - `delta` `(U_b, V_b)`: `+ (x U_b) V_b`, a low-rank addition to the weight (GPRec's
      `dynamic`, DGPM).
    """

    gate: torch.Tensor | None = None
    replace: tuple[torch.Tensor, ...] | None = None
    partition_scale: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    delta: LowRankDelta | None = None

    def __post_init__(self) -> None:
        if self.replace is not None and self.partition_scale is not None:
            raise ValueError(
                "LayerMod: replace and partition_scale both given; partition_scale scales the "
                "layer's own weight, which replace discards"
            )

    def apply(self, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            x = x * self.gate
        if self.replace is not None:
            if len(self.replace) == 1:
                h = torch.bmm(x.unsqueeze(1), self.replace[0]).squeeze(1)
            else:
                u, s, v = self.replace
                h = _rowwise_matmul(x @ u, s) @ v
            h = h + linear.bias
        elif self.partition_scale is not None:
            w_p, b_p, part = self.partition_scale
            w = linear.weight.t() * w_p  # (P, in, out)
            every = torch.einsum("bi,pio->bpo", x, w)  # (B, P, out)
            h = every.gather(1, part.view(-1, 1, 1).expand(-1, 1, w.shape[-1])).squeeze(1)
            h = h + linear.bias + b_p.index_select(0, part)
        else:
            h = linear(x)
        if self.delta is not None:
            u, v = self.delta
            h = h + _rowwise_matmul(_rowwise_matmul(x, u), v)
        return h


def _rowwise_matmul(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """`x_b @ m_b` per row: `(B, a)`, `(B, a, c)` -> `(B, c)`. For small per-row matrices (the
    low-rank deltas, APG's cores) a broadcast product summed over `a`: on one CPU thread, with
    backward, a batch of `1 x a` matrix products took 1.5-5x longer up to `a * c = 1024` (rank
    1: 5x) and 0.6x at 2048, hence the threshold."""
    if m.shape[-2] * m.shape[-1] <= 1024:
        return (x.unsqueeze(-1) * m).sum(1)
    return torch.bmm(x.unsqueeze(1), m).squeeze(1)


class MLP(nn.Module):
    """`Linear -> [BatchNorm] -> activation -> [dropout]` per hidden width, then an optional
    `Linear` to `out_dim` (no activation). `(B, in_dim) -> (B, out_dim or hidden[-1])`."""

    accepts_extra_inputs = True  # forward_parts: the first layer's input may be widened
    accepts_layer_mods = True  # forward(x, mods): per-sample LayerMod on each linear layer

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

    def freeze_weights(self, layers: list[int]) -> None:
        """Stop training the weights of linear layers `layers` (their biases stay trained):
        for a model whose `LayerMod(replace=...)` always replaces those weights, so they
        would never get a gradient (which DDP refuses) and are not counted as trained."""
        for i in layers:
            self.linears[i].weight.requires_grad_(False)

    def forward(
        self, x: torch.Tensor | list[Part], mods: list[LayerMod | None] | None = None
    ) -> torch.Tensor:
        """`x` is the input, or a list of parts (dense or factored) that concatenate to it;
        `mods`, one per linear layer (None: that layer as it is)."""
        if isinstance(x, list):
            if mods is not None:
                raise ValueError("layer modulations need a dense input, not parts")
            return self.forward_parts(x)
        if mods is not None and len(mods) != len(self.linears):
            raise ValueError(f"{len(mods)} layer modulations for {len(self.linears)} layers")
        return self._run(0, x, mods)

    def forward_parts(self, parts: list[Part]) -> torch.Tensor:
        """`forward(cat(dense parts))`, the first layer applied block by block."""
        first = self.linears[0]
        return self._after(0, factored_linear(first.weight, first.bias, parts))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the last linear layer (what `factored.PersonalRep` keeps)."""
        return self._run(0, x, None, stop=len(self.linears) - 1)

    def _run(self, start, x, mods, stop=None) -> torch.Tensor:
        for i in range(start, len(self.linears) if stop is None else stop):
            mod = mods[i] if mods is not None else None
            h = self.linears[i](x) if mod is None else mod.apply(self.linears[i], x)
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
