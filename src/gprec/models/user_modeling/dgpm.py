"""DGPM: dynamic group parameter modeling around a backbone whose head is an MLP.

Ma et al., "Dynamic group parameter modeling for click-through-rate prediction", CIKM 2023.
There is no public code and no full text here; this follows the GPRec paper's description of
it (arXiv 2410.20730, Section V "User Modeling", Sections IV-B and IV-E): each of G groups has
a group embedding and a set of prediction-MLP parameters; a user is assigned to groups by the
similarity of a user representation to the group embeddings, and the prediction MLP uses the
groups' parameters, weighted by that assignment. Everything the description leaves open is a
choice made here, listed below, and where it is a real alternative it is an option.

    E = embedding(x)                                the backbone's own table, shared
    r_b = backbone.represent(x, E)                  the backbone's path, untouched
    u = f_u([E_p, E_o])                             user representation, (B, d_g)
    a_g = softmax_g(cos(u, e_g) / temperature)      assignment weights, (B, G), sum 1
    per head layer k, group parameters (U_gk (in, r), V_gk (r, out)):
      factors:  U_bk = sum_g a_g U_gk, V_bk = sum_g a_g V_gk,   W_bk = W_k + U_bk V_bk
      products: W_bk = W_k + sum_g a_g U_gk V_gk
      full (rank null), D_gk (in, out):            W_bk = W_k + sum_g a_g D_gk
    y = backbone.predict(r_b, W_b)                  the head with the per-sample weights

Defaults and where they come from:
- `n_groups` 60: the GPRec paper's group count G. The GPRec paper does not give DGPM's group
  count and DGPM's own is not available here.
- group embeddings of width `group_dim` = the embedding width d (16 in the GPRec paper, which
  uses 16 for its own group embeddings); initialised N(0, `group_init_std` = 0.1), as GPRec's.
- `user_units` [64]: f_u is an MLP over the flattened user embeddings, PERSONAL and USER
  fields (`[E_p, E_o]`, GPRec's E_u), ReLU hidden layers, a linear output of width d_g
  (choice: the description says only "user representation from user fields").
- `temperature` 1 (choice): the plain softmax of the cosines. Note what it implies: cosines
  lie in [-1, 1], so with temperature 1 no weight exceeds e^2 / (e^2 + G - 1) (0.11 at G = 60):
  every user is a broad mixture of all groups, which may be one reason the GPRec paper finds
  DGPM's group embeddings so alike (mean cosine 0.9). Lower it for sharper assignments.
- `rank` 1 (choice, for speed): group parameters are low rank, U_gk V_gk per head layer;
  `rank: null` gives full (in, out) group matrices. GPRec's own `dynamic_rank` is 4, but
  here every unit of rank costs G (in + out) multiply-adds per sample and layer (see Cost),
  so the default is the cheapest rank.
- `combine` factors (choice): the group parameter *sets* are what is combined, so the
  per-sample factors are the weighted sums of the group factors, `U_b = sum a_g U_g`,
  `V_b = sum a_g V_g`, and the delta is their product. `products` combines the group weight
  matrices instead, `sum a_g U_g V_g` (linear in the assignment, the exact low-rank version of
  "the weighted group weight matrix"); the two agree when an assignment is one-hot. With
  `rank: null` both readings coincide and `combine` is unused.
- `dedup_users` true: the assignment and the combined parameters are computed once per
  distinct user-field row of a batch and gathered (exact, as GPRec's `dedup_users`).

Choices that are not options:
- Dynamic parameters only. The GPRec paper (Section IV-B, Table III) says DGPM's sole
  construction strategy is dynamic parameters for the prediction MLP, which is why it cannot
  be combined with FinalMLP: so DGPM here only modulates the backbone head's weights, nothing
  is added to its input and no other head is built. A backbone whose head does not take layer
  modulations (`Backbone.head_accepts_layer_mods` false: FinalMLP) is refused at config time
  (`wrapper.require_layer_mods`) with the list of supported backbones.
- Add, not replace. The group parameters are added to the shared head weights
  (`W_k + sum_g a_g D_gk`), the form GPRec's dynamic strategy (its Eq. 16, which cites DGPM)
  writes. Because the assignment weights sum to 1, replacing the shared weight by
  `sum_g a_g W_gk` is the same function with `W_gk = W_k + D_gk`, so in full rank the two
  differ only in parameterisation; with low rank, replacing would cap the head's weights at
  rank r, adding does not. Only the weights are group-wise: the biases stay shared (a
  `LayerMod` delta has no bias term).
- Start from the backbone: every V_gk (low rank) or D_gk (full) starts at zero, so every
  delta is zero and DGPM at initialisation computes exactly its backbone; each U_gk stays
  random (uniform +-1/sqrt(in), nn.Linear's scale), as in GPRec's dynamic strategy, since
  zeroing both factors would zero both their gradients forever. At the first step only the
  zeroed factors receive gradients; f_u and the group embeddings get theirs once the deltas
  are non-zero.
- Training: DGPM updates its group parameters with a memory network whose update rule is not
  public. Here the group embeddings, the group parameters and f_u are ordinary parameters
  trained by backpropagation of the main BCE with the rest of the model; there are no
  auxiliary losses.

Cost. Per sample and head layer (in, out), the MLP head costs in * out multiply-adds;
`factors` adds G r (in + out) to combine the group factors (one (U, G) x (G, sum of sizes)
GEMM over all layers, U the distinct users of the batch with `dedup_users`, exact since the
assignment reads only user fields) and r (in + out) to apply them. Mixing G parameter sets per
sample is the mechanism: at rank 1 and G 60 that is about twice the head's arithmetic. The
per-sample deltas go through `LayerMod`'s delta, whose small per-row products
(`layers/mlp.py`, `_rowwise_matmul`: rank 1 included) are a broadcast product and sum, not
`bmm`s. An epoch (ML-100K, head [64, 32, 16], G 60, batch 4096) takes
2.1x the MLP's epoch (ML-100K, 1 thread, quiet:
benchmarks/results/user_modeling_speed.md). Higher ranks cost more (every unit of rank adds
G (in + out) per sample and layer). `products` has the same arithmetic but, as a `LayerMod`
delta takes per-sample factors only, materialises a (B, in or out, G r) factor per layer;
`full` costs G in out to combine and materialises a (B, in, out) matrix per layer; both are
opt-in and many times slower.

Inspection: `assignments(x)` (B, G) and `group_embeddings()` (G, d_g).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from gprec.data.schema import EncodedField
from gprec.layers.dedup import DistinctRows
from gprec.layers.mlp import MLP, LayerMod
from gprec.models.base import ModelOutput, Width
from gprec.models.registry import register
from gprec.models.wrapper import (
    BackboneWrapper,
    WrapperOptions,
    require_layer_mods,
    user_field_positions,
)


class DGPMOptions(WrapperOptions):
    n_groups: int = Field(60, ge=1, description="number of user groups G (the GPRec paper's G)")
    group_dim: Width | None = Field(
        None, description="width of the group embeddings and of the user representation (null: "
        "the embedding width d)"
    )  # fmt: skip
    group_init_std: float = Field(
        0.1, gt=0, description="std of the normal initialisation of the group embeddings"
    )
    user_units: list[Width] = Field(
        [64], description="hidden widths of f_u, which maps the user fields' embeddings to u"
    )
    temperature: float = Field(
        1.0, gt=0, description="assignment weights are softmax over groups of cos(u, e_g) / this"
    )
    rank: Width | None = Field(
        1, description="rank r of each group's parameters per head layer (null: full matrices)"
    )
    combine: Literal["factors", "products"] = Field(
        "factors",
        description="low rank: combine the group factors (U_b = sum a_g U_g, V_b = sum a_g V_g, "
        "delta U_b V_b) or the group matrices (delta sum a_g U_g V_g); unused with rank null",
    )

    # Exact: the assignment and the combined parameters depend on the user fields alone.
    dedup_users: bool = Field(
        True,
        description="assign and combine group parameters once per distinct user in a batch "
        "(same result, faster)",
    )

    @model_validator(mode="after")
    def _head_accepts_layer_mods(self) -> DGPMOptions:
        """DGPM only modulates the head's weights: a head without MLP layers is refused before
        any data is read."""
        require_layer_mods(
            self.backbone["name"],
            "DGPM sets the weights of the backbone's prediction head per sample",
        )
        return self


@register("dgpm")
class DGPM(BackboneWrapper):
    """DGPM around a registered backbone (`options.backbone`) whose head is an MLP.

    Parameters: `groups` (G, d_g) group embeddings, `f_u` the user MLP, and `group_params`
    (G, sum of sizes): row g is group g's parameter set, per head layer either `U` (in * r)
    then `V` (r * out), or `D` (in * out) with `rank: null`.
    """

    Options = DGPMOptions
    description = "DGPM: softmax-of-cosine group assignment, group-weighted head weights"

    def __init__(self, fields: list[EncodedField], options: DGPMOptions):
        super().__init__(fields, options)
        o, bb = options, self.backbone
        why = "DGPM assigns users to groups from their personal and user fields"
        users = self.register_index("user_idx", user_field_positions(fields, "model.name", why))
        d = self.embedding_dim
        d_g = o.group_dim or d
        self.n_groups = G = o.n_groups
        self.f_u = MLP(len(users) * d, o.user_units, d_g)
        self.groups = nn.Parameter(torch.randn(G, d_g) * o.group_init_std)

        self.rank = o.rank
        self.shapes: list[tuple[int, int]] = list(bb.head.layer_shapes)
        if self.rank is None:
            self.sizes = [a * b for a, b in self.shapes]
        else:
            self.sizes = [n for a, b in self.shapes for n in (a * self.rank, self.rank * b)]
        params = torch.zeros(G, sum(self.sizes))
        if self.rank is not None:  # U random (nn.Linear's scale for `in` inputs), V zero
            start = 0
            for k, n in enumerate(self.sizes):
                if k % 2 == 0:
                    bound = 1.0 / math.sqrt(self.shapes[k // 2][0])
                    params[:, start : start + n].uniform_(-bound, bound)
                start += n
        self.group_params = nn.Parameter(params)
        self.distinct_users = DistinctRows([fields[i].cardinality for i in users])

    # -- distinct users ----------------------------------------------------------
    def _distinct_users(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(first, inverse)`: a row of each distinct user-field row and every row's distinct
        user; None when every row is distinct or dedup is off."""
        if not self.options.dedup_users:
            return None
        return self.distinct_users(x.index_select(1, self.user_idx))

    # -- assignment ------------------------------------------------------------
    def _assign(self, emb: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Assignment weights (B, G), or of the rows `rows` only."""
        e_u = emb.index_select(1, self.user_idx)
        u = self.f_u((e_u if rows is None else e_u.index_select(0, rows)).flatten(1))
        cos = F.normalize(u, dim=-1) @ F.normalize(self.groups, dim=-1).t()  # (B, G)
        return torch.softmax(cos / self.options.temperature, dim=-1)

    # -- dynamic parameters ------------------------------------------------------
    def _mods(self, a: torch.Tensor, inverse: torch.Tensor | None = None) -> list[LayerMod | None]:
        """One additive delta per head layer from the assignment `a` (B, G), or, with
        `inverse` (B,), from `a` per distinct user (U, G)."""
        b = a.shape[0] if inverse is None else inverse.shape[0]

        def combined() -> list[torch.Tensor]:  # sum_g a_g P_g, all layers in one GEMM
            parts = torch.split(a @ self.group_params, self.sizes, 1)
            # gathered part by part: the backward's concatenation is then per distinct user
            return parts if inverse is None else [p.index_select(0, inverse) for p in parts]

        if self.rank is None:
            # applied as x D_b I (I expanded, no copy)
            parts = combined()
            return [
                LayerMod(delta=(p.view(b, i, o), self._eye(o, a).expand(b, o, o)))
                for p, (i, o) in zip(parts, self.shapes, strict=True)
            ]
        r = self.rank
        if self.options.combine == "factors":
            parts = combined()
            return [
                LayerMod(delta=(parts[2 * k].view(b, i, r), parts[2 * k + 1].view(b, r, o)))
                for k, (i, o) in enumerate(self.shapes)
            ]
        # products: sum_g a_g U_g V_g = [U_1 .. U_G] diag(a (x) 1_r) [V_1; ..; V_G], a rank-G r
        # delta; the assignment scales the narrower of the two concatenated factors.
        G = self.n_groups
        if inverse is not None:
            a = a.index_select(0, inverse)
        scale = a.repeat_interleave(r, dim=1).unsqueeze(-1)  # (B, G r, 1)
        parts = torch.split(self.group_params, self.sizes, dim=1)
        mods: list[LayerMod | None] = []
        for k, (i, o) in enumerate(self.shapes):
            u = parts[2 * k].view(G, i, r).permute(1, 0, 2).reshape(i, G * r)
            v = parts[2 * k + 1].reshape(G * r, o)
            if o <= i:
                delta = (u.expand(b, i, G * r), scale * v)
            else:
                delta = ((scale * u.t()).transpose(1, 2), v.expand(b, G * r, o))
            mods.append(LayerMod(delta=delta))
        return mods

    @staticmethod
    def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.eye(n, dtype=like.dtype, device=like.device)

    # -- the model -------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        emb = self.embedding(x)
        rep = self.backbone.represent(x, emb)
        distinct = self._distinct_users(x)
        if distinct is None:
            mods = self._mods(self._assign(emb))
        else:
            first, inverse = distinct
            mods = self._mods(self._assign(emb, first), inverse)
        return ModelOutput(self.backbone.predict(rep, mods))

    # -- inspection ------------------------------------------------------------
    @torch.no_grad()
    def assignments(self, x: torch.Tensor) -> torch.Tensor:
        """Assignment weights `(B, G)`: softmax over groups of cos(u, e_g) / temperature."""
        return self._assign(self.embedding(x))

    @torch.no_grad()
    def group_embeddings(self) -> torch.Tensor:
        """The group embeddings `(G, d_g)`."""
        return self.groups.detach().clone()
