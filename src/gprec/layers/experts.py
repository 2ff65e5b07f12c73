"""Many small MLPs run as one batched op, and the per-sample gather of a partition's output:
the experts, gates and towers of the mixture-of-experts models (MMoE, PLE).

`ParallelMLPs` is `n = n_streams * per_stream` independent MLPs. Stream `s`'s `per_stream`
nets read input `s`, or all nets read one shared input. It generalises
`gprec.layers.group.BatchedGroupMLP` (one shared input, ReLU, linear last layer) to what the
experts need: every layer activated (an expert's output is its last hidden layer), the
models' activation, BatchNorm and dropout, and per-stream inputs (PLE's upper levels, where
each group's experts read that group's path).

Layout: activations are feature-major, `(n, width, batch)`, as in `BatchedGroupMLP`. The
first layer over a shared input `(in, B)` is one GEMM `(n*h1, in) @ (in, B)` whose result is
already the `(n, h1, B)` operand of the next `baddbmm`; over per-stream inputs
`(n_streams, in, B)` it is one `baddbmm` with each stream's nets' first layers stacked. A
mixture `sum_i w_i f_i` is then a reduction over the leading axis, and a next level reads the
`(width, B)` mixtures directly, so no large tensor is transposed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gprec.layers.mlp import ACTIVATIONS


class ParallelMLPs(nn.Module):
    """`n_streams * per_stream` MLPs `in -> hidden... [-> out]`, computed together.

    Each hidden block is `Linear -> [BatchNorm] -> activation -> [dropout]` (as `MLP`'s); with
    `out_dim` a final `Linear` without activation follows (gates, towers), without it the last
    hidden block is the output (experts). Net `i = s * per_stream + j` is stream `s`'s `j`-th.
    Every layer is initialised as `nn.Linear` would initialise it on its own.

    `forward(x)`: `x` `(in, B)`, read by every net, or `(n_streams, in, B)`, stream `s`'s nets
    reading `x[s]`; returns `(n, out, B)`.
    """

    def __init__(
        self,
        in_dim: int,
        n_streams: int,
        per_stream: int,
        hidden: list[int],
        out_dim: int | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        super().__init__()
        dims = [in_dim, *hidden, *([out_dim] if out_dim is not None else [])]
        if len(dims) < 2:
            raise ValueError("ParallelMLPs needs at least one layer (hidden or out_dim)")
        if n_streams < 1 or per_stream < 1:
            raise ValueError("n_streams and per_stream must be at least 1")
        self.in_dim, self.n_streams, self.per_stream = in_dim, n_streams, per_stream
        self.n = n = n_streams * per_stream
        self.dims = dims
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for k, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            bound = 1.0 / math.sqrt(a)  # nn.Linear's default init, per net
            # Weights are stored (out, in) per net: the baddbmm operand as it is. The first
            # layer's nets are stacked per stream, rows (j, unit) of stream s.
            shape = (n_streams, per_stream * b, a) if k == 0 else (n, b, a)
            self.weights.append(nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, b).uniform_(-bound, bound)))
        self.n_hidden = len(hidden)
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(n * b) if batch_norm else nn.Identity() for b in hidden
        )
        self.batch_norm = batch_norm
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def out_dim(self) -> int:
        return self.dims[-1]

    def layers_of(self, i: int, grad: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Net `i`'s layers as `(W (in, out), b (out,))`, views of the parameters (for
        inspection and tests: `x @ W + b` is that layer of that net alone); with `grad`, the
        same views of their gradients."""
        out = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if grad:
                w, b = w.grad, b.grad
            w_i = w.view(self.n, -1, w.shape[-1])[i] if k == 0 else w[i]
            out.append((w_i.t(), b[i]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[-1]
        w0, b0 = self.weights[0], self.biases[0]
        if x.dim() == 2:
            # (n*h1, in) @ (in, B): every net's first layer in one GEMM, bias fused.
            h = torch.addmm(b0.view(-1, 1), w0.view(-1, self.in_dim), x)
        else:
            # (S, per*h1, in) @ (S, in, B): each stream's nets over that stream's input.
            h = torch.baddbmm(b0.view(self.n_streams, -1, 1), w0, x)
        h = h.view(self.n, -1, batch)
        for k in range(len(self.weights)):
            if k > 0:  # (n, out, in) @ (n, in, B)
                h = torch.baddbmm(self.biases[k].unsqueeze(2), self.weights[k], h)
            if k < self.n_hidden:
                h = self._hidden_block(k, h)
        return h

    def _hidden_block(self, k: int, h: torch.Tensor) -> torch.Tensor:
        if self.batch_norm:
            # One BatchNorm over the n*width channels is each net's own BatchNorm.
            n, width, batch = h.shape
            h = self.norms[k](h.reshape(n * width, batch).t()).t().reshape(n, width, batch)
        return self.dropout(self.activation(h))


def own_partition(per_partition: torch.Tensor, partition: torch.Tensor) -> torch.Tensor:
    """`per_partition[p_b, ..., b]` for each sample `b`: `(P, *rest, B)` -> `(*rest, B)`.

    The feature-major results of G nets, one per partition (gates, towers, a partition's
    experts), narrowed to each sample's own partition `partition` `(B,)`.
    """
    rest = per_partition.shape[1:-1]
    index = partition.view(1, *(1 for _ in rest), -1).expand(1, *rest, -1)
    return per_partition.gather(0, index).squeeze(0)
