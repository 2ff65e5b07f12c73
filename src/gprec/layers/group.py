"""Group-level building blocks: G independent MLPs as one batched op, and Gumbel pair masks.

`BatchedGroupMLP` is GPRec's group classifier `g` (docs/gprec.md §3.1): G small MLPs over
the same input, each `[in, *hidden, out]`. With G = 60 and hidden `[64, 32]`
it costs ~25x the FLOPs of a whole MLP backbone, so its layout matters on CPU:

- the first layer of all groups is one GEMM, `nn.Linear(in, G * h1)`;
- activations are kept feature-major, `(G, width, batch)`: the first GEMM
  is computed as `W1 @ x^T`, whose `(G * h1, batch)` result is already the
  `(G, h1, batch)` operand the next `bmm` wants, so no big tensor is ever
  transposed or copied between layers;
- biases are fused into the GEMMs (`addmm` / `baddbmm`) and the ReLUs run in
  place, so each layer allocates one `(G, width, batch)` tensor, not three
  (fresh large allocations page-fault, which on a small CPU costs as much as
  the arithmetic).

Only the tiny `(G, out, batch)` result is permuted back to `(batch, G, out)`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class BatchedGroupMLP(nn.Module):
    """G independent MLPs `in -> hidden... -> out` (ReLU between), computed together.

    Parameters: `first` is `nn.Linear(in_dim, G * h1)` (rows `g*h1 : (g+1)*h1`
    are group g's first layer); every later layer k has `weights[k]` of shape
    `(G, in, out)` and `biases[k]` of shape `(G, out)`. Every group is
    initialised as `nn.Linear` would initialise it on its own.
    `forward`: `(batch, in_dim)` -> `(batch, G, out_dim)`.
    """

    def __init__(
        self, in_dim: int, n_groups: int, hidden: list[int] | None = None, out_dim: int = 2
    ):
        super().__init__()
        hidden = [64, 32] if hidden is None else list(hidden)
        if n_groups < 1:
            raise ValueError("n_groups must be at least 1")
        self.in_dim, self.n_groups, self.out_dim = in_dim, n_groups, out_dim
        dims = [*hidden, out_dim]
        self.first = nn.Linear(in_dim, n_groups * dims[0])
        self.first_width = dims[0]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            bound = 1.0 / math.sqrt(a)  # what nn.Linear's default init gives, per group
            self.weights.append(nn.Parameter(torch.empty(n_groups, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_groups, b).uniform_(-bound, bound)))

    @property
    def dims(self) -> list[int]:
        return [self.in_dim, self.first_width, *(w.shape[2] for w in self.weights)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, batch = self.n_groups, x.shape[0]
        # (G*h1, in) @ (in, B) -> (G*h1, B) == (G, h1, B), bias fused, ReLU in place.
        h = torch.addmm(self.first.bias.unsqueeze(1), self.first.weight, x.t())
        # In-place ReLUs act on the GEMM outputs themselves, never on a view of
        # one: autograd would otherwise rebuild the base tensor in backward.
        last = len(self.weights)
        for k in range(last):  # over layers (2 by default), never over groups
            h = torch.relu_(h)
            if k == 0:
                h = h.view(g, self.first_width, batch)
            # (G, out, in) @ (G, in, B) -> (G, out, B); the transposed weight is a view.
            w, b = self.weights[k], self.biases[k]
            h = torch.baddbmm(b.unsqueeze(2), w.transpose(1, 2), h)
        if last == 0:
            h = h.view(g, self.first_width, batch)
        return h.permute(2, 0, 1)  # (B, G, out); small, a view


class SharedGroupClassifier(nn.Module):
    """A cheaper group classifier: one first block shared by all groups, small per-group layers
    after it. `in -> shared... (ReLU) -> [per group: group_hidden... -> out]`,
    `(batch, in_dim) -> (batch, G, out_dim)` like `BatchedGroupMLP`.

    Why: the faithful classifier gives each of the G groups its own first layer over E_u
    (G * in * h1 multiply-adds per user, ~25x a whole MLP backbone at G = 60). Groups differ
    in which users they hold, not in which features of a user matter, so one shared feature
    block and a few units per group keep the G independent decisions at a fraction of the cost
    (`GPRecOptions.classifier: shared`).
    """

    def __init__(
        self,
        in_dim: int,
        n_groups: int,
        shared: list[int],
        group_hidden: list[int],
        out_dim: int = 2,
    ):
        super().__init__()
        if not shared:
            raise ValueError("a shared classifier needs at least one shared width")
        dims = [in_dim, *shared]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.groups = BatchedGroupMLP(shared[-1], n_groups, group_hidden, out_dim)
        self.n_groups, self.out_dim = n_groups, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.groups(self.shared(x))


def gumbel_pair_masks(
    logits: torch.Tensor,
    tau: float,
    training: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """docs/gprec.md §3.2: binary-like membership masks from pair scores; `m1`, `(batch, G)`.

    `logits` is `(batch, G, 2)`: `[..., 0]` scores "in group i", `[..., 1]`
    "not in group i". With `log s` the log-softmax of the pair and Gumbel
    noise `gn = -log(-log(u))` (training only),
    `m1 = softmax(((log s1 + gn1) / tau, (log s0 + gn0) / tau))[0]`, `m0 = 1 - m1`.

    A two-way softmax is a sigmoid of the difference, and the log-softmax
    shift cancels in it, so this computes exactly
    `m1 = sigmoid((s1 - s0 + gn1 - gn0) / tau)` without the (B, G, 2) temporaries.
    The difference of two independent standard Gumbels is a standard logistic,
    `log u - log(1 - u)` for one uniform `u`: one draw per mask, not two.
    """
    diff = logits[..., 0] - logits[..., 1]
    if training:
        eps = torch.finfo(logits.dtype).eps
        u = torch.rand(diff.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        u = u.clamp_(eps, 1.0 - eps)
        diff = diff + (torch.log(u) - torch.log1p(-u))
    return torch.sigmoid(diff / tau)
