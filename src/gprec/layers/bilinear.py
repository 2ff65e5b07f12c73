"""FinalMLP's blocks: the two-stream feature-selection gates and the multi-head bilinear fusion.

Reference: Mao et al., "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction",
AAAI 2023; the authors' own code is FuxiCTR `model_zoo/FinalMLP/src/FinalMLP.py`
(`FeatureSelection`, `InteractionAggregation`), initialised by FuxiCTR's
`BaseModel.reset_parameters` (every `nn.Linear`: Xavier-normal weight, zero bias).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _gate_mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear -> ReLU per hidden width, then Linear -> Sigmoid (the authors' `MLP_Block`)."""
    layers: list[nn.Module] = []
    dim = in_dim
    for width in hidden:
        layers += [nn.Linear(dim, width), nn.ReLU()]
        dim = width
    layers += [nn.Linear(dim, out_dim), nn.Sigmoid()]
    return nn.Sequential(*layers)


class FeatureSelection(nn.Module):
    """FinalMLP's feature selection: one context gate per stream.

    For stream k in {1, 2}::

        h_k = 2 * sigmoid(Gate_k(ctx_k)) * e

    `e` is the flattened field embeddings `(B, in_dim)`; `Gate_k` is an MLP (`hidden` widths,
    ReLU) ending in a linear layer of width `in_dim`, so every embedding coordinate gets its own
    gate in (0, 2). `ctx_k` is a per-sample context of width `context_dims[k]` (e.g. the
    flattened embeddings of the user fields for one stream and the item fields for the other),
    or, with `context_dims[k] == 0`, **one learned vector of width `empty_context_dim` shared by
    all samples**, as in the authors' code (`fs1_ctx_bias`, zero-initialised, width
    `embedding_dim`). The gate is then the same for every sample: we run the gate MLP once on
    that vector and broadcast, instead of repeating the vector `B` times through the MLP as the
    authors' code does (same values).

    Initialisation as the authors' code: gate linears Xavier-normal with zero bias, the empty
    context vector zero (`empty_context_std=0`). Note what this implies, kept for fidelity: the
    gate's first hidden layer then sees an all-zero input and outputs exactly 0, where ReLU's
    gradient is 0, so the context vector and the hidden layer(s) of an empty-context gate never
    receive a gradient and the gate reduces to `2 * sigmoid(b_out)`, a learned per-coordinate
    scale starting at 1. `empty_context_std > 0` draws the vector from N(0, std^2) instead
    (our option) so that the whole gate trains.

    `hidden` default `(800,)`: the gate MLP of the FuxiCTR FinalMLP run measured in issue 17
    (`fs_hidden_units: [800]`); FuxiCTR's class signature defaults to `[64]` and its config
    template to `[1024, 512]`. In the authors' code a non-empty context is the flattened
    embeddings of the context fields from a separate embedding table; building the context is
    the model's job, this block takes it as a tensor.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        context_dims: tuple[int, int] = (0, 0),
        hidden: Sequence[int] = (800,),
        empty_context_dim: int = 16,
        empty_context_std: float = 0.0,
    ):
        super().__init__()
        if len(context_dims) != 2 or any(c < 0 for c in context_dims):
            raise ValueError(f"context_dims must be two widths >= 0, got {context_dims}")
        if empty_context_dim < 1:
            raise ValueError(f"empty_context_dim must be positive, got {empty_context_dim}")
        self.in_dim = in_dim
        self.context_dims = tuple(context_dims)
        self.empty_context_std = empty_context_std
        self.gates = nn.ModuleList(
            _gate_mlp(c if c > 0 else empty_context_dim, list(hidden), in_dim)
            for c in self.context_dims
        )
        for i, c in enumerate(self.context_dims):
            vector = nn.Parameter(torch.empty(1, empty_context_dim)) if c == 0 else None
            self.register_parameter(f"context{i + 1}", vector)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The authors' init: FuxiCTR BaseModel.reset_parameters (xavier_normal_, zero bias);
        # the empty-context vector starts at zero (nn.Parameter(torch.zeros(1, embedding_dim))).
        for gate in self.gates:
            for m in gate:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_normal_(m.weight)
                    nn.init.zeros_(m.bias)
        for vector in (self.context1, self.context2):
            if vector is not None:
                with torch.no_grad():
                    vector.normal_(0.0, self.empty_context_std)

    def gate(self, stream: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """`2 * sigmoid(Gate_k(ctx_k))` for stream `k` in {1, 2}.

        Returns `(B, in_dim)` for a per-sample context `(B, context_dims[k-1])`, or `(1, in_dim)`
        (the same gate for every sample) for an empty context, where `context` must be None.
        """
        if stream not in (1, 2):
            raise ValueError(f"stream must be 1 or 2, got {stream}")
        width = self.context_dims[stream - 1]
        if width == 0:
            if context is not None:
                raise ValueError(
                    f"stream {stream} has an empty context (context_dims[{stream - 1}] == 0): "
                    "its gate input is a learned vector, pass context=None"
                )
            context = self.context1 if stream == 1 else self.context2
        elif context is None or context.shape[-1] != width:
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"stream {stream} needs a context of width {width}, got {got}")
        return 2.0 * self.gates[stream - 1](context)

    def forward(
        self,
        e: torch.Tensor,
        context1: torch.Tensor | None = None,
        context2: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`e`: `(B, in_dim)` flattened embeddings -> `(h_1, h_2)`, each `(B, in_dim)`."""
        if e.shape[-1] != self.in_dim:
            raise ValueError(f"expected input width {self.in_dim}, got {tuple(e.shape)}")
        return e * self.gate(1, context1), e * self.gate(2, context2)


class MultiHeadBilinearFusion(nn.Module):
    """FinalMLP's stream-level fusion with multi-head bilinear interaction.

    The two stream outputs `o_1 (B, dim1)` and `o_2 (B, dim2)` are cut into `num_heads`
    contiguous chunks `o_1j (dim1/H)`, `o_2j (dim2/H)`; the logit is::

        logit = b + sum_j (w_1j . o_1j + w_2j . o_2j + o_1j^T W_3j o_2j)
              = b + w_1 . o_1 + w_2 . o_2 + sum_j o_1j^T W_3j o_2j

    Output `(B,)` (a logit, no sigmoid). `num_heads` must divide both `dim1` and `dim2` (a
    `ValueError` says which does not). The bilinear terms of all heads are one `einsum` over
    `(B, H, dim/H)` views; there is no loop over heads. This is not an MLP: there is no hidden
    layer for strategies that act on a prediction MLP's layers.

    Initialisation as the authors' code: `w_1`, `w_2` are `nn.Linear(dim, 1)` weights there,
    Xavier-normal (std sqrt(2 / (dim + 1))); `W_3` is `xavier_normal_` on a
    `(H * dim1/H * dim2/H, 1)` tensor, i.e. std sqrt(2 / (1 + H * dim1/H * dim2/H)); biases zero
    (their two Linear biases are one bias `b` here).
    """

    def __init__(self, dim1: int, dim2: int, num_heads: int = 1):
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be positive, got {num_heads}")
        bad = [f"{name}={d}" for name, d in (("dim1", dim1), ("dim2", dim2)) if d % num_heads]
        if bad:
            raise ValueError(
                f"num_heads={num_heads} must divide both stream widths, but not {', '.join(bad)}"
            )
        self.dim1, self.dim2, self.num_heads = dim1, dim2, num_heads
        self.head_dim1, self.head_dim2 = dim1 // num_heads, dim2 // num_heads
        self.w1 = nn.Parameter(torch.empty(dim1))
        self.w2 = nn.Parameter(torch.empty(dim2))
        self.W3 = nn.Parameter(torch.empty(num_heads, self.head_dim1, self.head_dim2))
        self.bias = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The authors' init (see the class docstring): Xavier-normal std for each tensor's
        # original shape in their code, zero bias.
        with torch.no_grad():
            self.w1.normal_(0.0, math.sqrt(2.0 / (self.dim1 + 1)))
            self.w2.normal_(0.0, math.sqrt(2.0 / (self.dim2 + 1)))
            self.W3.normal_(0.0, math.sqrt(2.0 / (1 + self.W3.numel())))
            self.bias.zero_()

    def forward(self, o1: torch.Tensor, o2: torch.Tensor) -> torch.Tensor:
        """`o1`: `(B, dim1)`, `o2`: `(B, dim2)` -> logit `(B,)`."""
        b = o1.shape[0]
        linear = o1 @ self.w1 + o2 @ self.w2
        bilinear = torch.einsum(
            "bhx,hxy,bhy->b",
            o1.reshape(b, self.num_heads, self.head_dim1),
            self.W3,
            o2.reshape(b, self.num_heads, self.head_dim2),
        )
        return linear + bilinear + self.bias
