"""APG: per-sample weights of the backbone's prediction head, generated from user fields.

Yan et al., "APG: Adaptive Parameter Generation Network for Click-Through Rate Prediction",
NeurIPS 2022 (arXiv 2203.16218). No authors' code is public; FuxiCTR's
`model_zoo/APG/src/APG.py` was read to check details.

Each generated linear layer `l` of the head (`in -> out`) computes, for sample `b` with
condition `z_b` (the concatenated embeddings of the condition fields):

    S_b = G_l(z_b)                          a hypernetwork MLP, `(k, k)` per sample
    h_b = ((x_b U) S_b) V + b               decomposed feed-forward: W_b = U S_b V is never built

- low-rank parameterisation (paper 3.2): `W_b = U S_b V`, `U (in, k)`, `S_b (k, k)`,
  `V (k, out)`; decomposed feed-forwarding (3.3): `((x U) S_b) V`, never the `(in, out)`
  matrix;
- parameter sharing (3.4): `U` and `V` are shared by all samples (the common pattern) and only
  `S_b` is generated (the instance-specific pattern): `share_uv: true`, the paper's model.
  `share_uv: false` is the unshared low-rank version the paper starts from: `U_b`, `V_b` are
  generated too, by one more hypernetwork per layer. The head's `LayerMod` takes a per-sample
  weight only as a whole `(B, in, out)` matrix, so that version builds `W_b = U_b S_b V_b`
  (B x in x out floats per layer): its slowness is that of the mechanism, an ablation only;
- over-parameterisation (3.5): `U = U_1 U_2`, `V = V_1 V_2` with `U_1 (in, P)`, `U_2 (P, k)`,
  `V_1 (k, P)`, `V_2 (P, out)`, `P >= k` (`overparam_dim`; null: plain `U`, `V`). The products
  are computed at every forward, in training and evaluation alike: they cost
  `in P k + k P out` multiply-adds, independent of the batch, so merging them once for
  inference (what the paper does) would save nothing measurable and gives the same numbers.

APG *replaces* the weight (`LayerMod(replace=(U, S_b, V))`): the head's own weight of a
generated layer is not used (its bias is). That weight stays in the backbone's head (the
head is the backbone's, built as for any model) but is frozen (`head.freeze_weights`), so
no parameter goes without a gradient (DDP would refuse the model) and the run's parameter
count, of trainable parameters, leaves it out. Unlike an additive delta, nothing starts from
the shared weight, and `S_b` is not initialised to the identity (the hypernetworks are
initialised as `nn.Linear` is; `U`, `V` and their factors xavier-normal, as FuxiCTR).

Defaults and where they come from:
- `condition_fields: null`: the personal and user fields (user_id, age, gender, occupation, zip
  on MovieLens): individual-level user modeling, the condition the GPRec paper's Table II puts
  APG under (the paper's "group-wise" condition design, with user fields as the group).
  Any fields may be named instead (user and item fields: the paper's "mix-wise" design). The
  paper's "self-wise" condition (z = the layer's own input) is not offered: every layer's
  modulation is given to the head before it runs (`predict(rep, mods)`).
- `rank: 8` (FuxiCTR's APG configs use rank 8 for small heads); it must not exceed the
  smallest hidden width of the head ([64, 32, 16] in the GPRec paper): FuxiCTR's APG_DCNv2
  default rank 32 does not fit that head.
- `overparam_dim: 64` (FuxiCTR's APG configs pair rank 8 with P = 64).
- `hypernet_units: [64, 32]`: each hypernetwork's hidden widths (FuxiCTR's small APG config;
  the GPRec setting's head is [64, 32, 16]). One independent hypernetwork per generated
  layer, all computed as one batched op (`BatchedGroupMLP`).
- `output_layer: false`: the head's 1-wide output layer keeps its shared weight, as in
  FuxiCTR's APG_MLP (its output projection is a plain Linear); `true` generates it too, with
  rank 1 (a 1-wide layer has no higher rank): a per-sample scale of a shared weight vector.
- Bias (our choice): each layer keeps the head's shared bias `b`. FuxiCTR can generate it
  (`generate_bias`); the paper's layer equations have none; a generated bias is not offered
  because the head's `LayerMod` has no per-sample bias.
- `dedup_condition: true`: the hypernetworks run once per distinct condition row of the
  batch (exact: they read only the condition fields), as GPRec's `dedup_users`.

Backbones: those whose head takes per-layer weight modulations
(`Backbone.head_accepts_layer_mods`, checked at config time by `wrapper.require_layer_mods`);
another is a config error naming them.

Speed (rough, CPU, 1 thread, ML-100K, batch 4096, training steps): about 2.5x the MLP's
(4.3x with `dedup_condition: false`): three hypernetworks [80 -> 64 -> 32 -> 64] per distinct
user, against a [128 -> 64 -> 32 -> 16 -> 1] head. `share_uv: false` is tens of times slower:
it builds every sample's `(in, out)` weight, which the mechanism of that ablation needs
through this head contract.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from gprec.config import key_error
from gprec.data.schema import EncodedField
from gprec.errors import ConfigError
from gprec.layers.dedup import DistinctRows
from gprec.layers.group import BatchedGroupMLP
from gprec.layers.mlp import MLP, LayerMod
from gprec.models.base import ModelOutput, Width
from gprec.models.registry import register
from gprec.models.wrapper import (
    BackboneWrapper,
    WrapperOptions,
    field_positions,
    require_layer_mods,
    user_field_positions,
)


class APGOptions(WrapperOptions):
    condition_fields: list[str] | None = Field(
        None,
        description="fields whose embeddings form the condition z the weights are generated "
        "from (null: the personal and user fields)",
    )
    rank: int = Field(
        8,
        ge=1,
        description="rank k of each generated weight U S(z) V (at most the head's "
        "smallest hidden width)",
    )
    hypernet_units: list[Width] = Field(
        [64, 32], description="hidden widths of each layer's hypernetwork z -> S(z)"
    )
    share_uv: bool = Field(
        True,
        description="U and V shared by all samples, only S(z) generated (the paper's model); "
        "false: U and V generated per sample too (slow: builds each sample's weight)",
    )
    overparam_dim: int | None = Field(
        64,
        ge=1,
        description="over-parameterisation: U = U1 U2, V = V1 V2 through this inner width P "
        ">= rank (null: plain U, V; needs share_uv)",
    )
    output_layer: bool = Field(
        False,
        description="also generate the head's 1-wide output layer (rank 1); false: it stays shared",
    )
    # Exact: the hypernetworks see only the condition fields, so samples sharing those
    # values share every generated matrix.
    dedup_condition: bool = Field(
        True,
        description="run the hypernetworks once per distinct condition in a batch (same "
        "result, faster)",
    )

    @model_validator(mode="after")
    def _fits_the_head(self) -> APGOptions:
        require_layer_mods(
            self.backbone["name"], "APG generates the layers of the backbone's prediction head"
        )
        units = self.backbone.get("head_units") or []
        if not units:
            raise key_error(
                ("backbone", "head_units"),
                "APG generates the head's hidden layers; this head has none",
                units,
            )
        if self.rank > min(units):
            raise key_error(
                ("rank",),
                f"{self.rank} exceeds the head's smallest hidden width {min(units)} "
                f"(head_units {units}); use rank <= {min(units)}",
                self.rank,
            )
        if self.overparam_dim is not None:
            if not self.share_uv:
                raise key_error(
                    ("overparam_dim",),
                    "over-parameterises the shared U and V; with share_uv: false set it to null",
                    self.overparam_dim,
                )
            if self.overparam_dim < self.rank:
                raise key_error(
                    ("overparam_dim",),
                    f"{self.overparam_dim} is below rank {self.rank}: P must be >= rank",
                    self.overparam_dim,
                )
        return self


class SharedFactors(nn.Module):
    """The shared `U (in, k)` and `V (k, out)` of one layer, each optionally a product of two
    factors through an inner width `P` (over-parameterisation)."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, inner: int | None):
        super().__init__()
        shapes_u = [(in_dim, rank)] if inner is None else [(in_dim, inner), (inner, rank)]
        shapes_v = [(rank, out_dim)] if inner is None else [(rank, inner), (inner, out_dim)]
        self.u = nn.ParameterList(_xavier(s) for s in shapes_u)
        self.v = nn.ParameterList(_xavier(s) for s in shapes_v)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.u[0] if len(self.u) == 1 else self.u[0] @ self.u[1]
        v = self.v[0] if len(self.v) == 1 else self.v[0] @ self.v[1]
        return u, v


def _xavier(shape: tuple[int, int]) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_normal_(torch.empty(shape)))


@register("apg")
class APG(BackboneWrapper):
    """APG around a registered backbone (`options.backbone`) whose head takes layer mods.

    Inspection: `generated_weights(x)`, each generated layer's per-sample weight
    `U S(z_b) V`, `(B, in, out)`.
    """

    Options = APGOptions
    description = "APG: per-user head weights U S(z) V generated from user fields (NeurIPS 2022)"

    def __init__(self, fields: list[EncodedField], options: APGOptions):
        super().__init__(fields, options)
        o = options
        shapes = list(self.backbone.head.layer_shapes)
        d = self.embedding_dim
        key = "model.condition_fields"
        if o.condition_fields is None:
            why = "null conditions on the personal and user fields (name fields instead)"
            condition = user_field_positions(fields, key, why)
        else:
            condition = field_positions(fields, o.condition_fields, key)
        self.register_index("condition_idx", condition)
        self.distinct_conditions = DistinctRows([fields[i].cardinality for i in condition])
        if o.rank > shapes[0][0]:
            raise ConfigError(f"model.rank: {o.rank} exceeds the head's input width {shapes[0][0]}")
        # Generated layers: the hidden ones with rank k, and the 1-wide output layer (rank 1)
        # when asked; the output layer otherwise runs as it is (None in `mods`).
        self.hidden_shapes = shapes[:-1]
        self.out_shape = shapes[-1] if o.output_layer else None
        z_dim = len(condition) * d
        k = o.rank
        # One independent hypernetwork per hidden layer, batched: z -> S (k*k) each.
        self.hyper_s = BatchedGroupMLP(z_dim, len(self.hidden_shapes), o.hypernet_units, k * k)
        self.hyper_s_out = MLP(z_dim, o.hypernet_units, 1) if o.output_layer else None
        generated = [(i, j, k) for i, j in self.hidden_shapes]
        if self.out_shape is not None:
            generated.append((*self.out_shape, 1))
        self.generated = generated  # (in, out, rank) per generated layer
        # Their head weights are replaced, never read: frozen, not dead parameters.
        self.backbone.head.freeze_weights(list(range(len(generated))))
        if o.share_uv:
            self.factors = nn.ModuleList(
                SharedFactors(i, j, r, o.overparam_dim) for i, j, r in generated
            )
            self.hyper_uv = None
        else:
            self.factors = None
            self.hyper_uv = nn.ModuleList(
                MLP(z_dim, o.hypernet_units, i * r + r * j) for i, j, r in generated
            )

    def _s(self, z: torch.Tensor) -> list[torch.Tensor]:
        """`S(z)` of every generated layer, `(B, r, r)` each."""
        k = self.options.rank
        s = list(self.hyper_s(z).view(z.shape[0], -1, k, k).unbind(1))
        if self.hyper_s_out is not None:
            s.append(self.hyper_s_out(z).view(-1, 1, 1))
        return s

    def _uv(self, z: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`(U, V)` per generated layer: shared `(in, r)`, `(r, out)`, or per sample
        `(B, in, r)`, `(B, r, out)` with `share_uv: false`."""
        if self.factors is not None:
            return [f() for f in self.factors]
        out = []
        for (i, j, r), hyper in zip(self.generated, self.hyper_uv, strict=True):
            uv = hyper(z)
            out.append((uv[:, : i * r].view(-1, i, r), uv[:, i * r :].view(-1, r, j)))
        return out

    def _condition(
        self, x: torch.Tensor, emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(z, inverse)`: the condition of each distinct condition row of the batch and each
        sample's row (`inverse`; None when `z` is already per sample)."""
        rows = emb.index_select(1, self.condition_idx)
        if not self.options.dedup_condition:
            return rows.flatten(1), None
        distinct = self.distinct_conditions(x.index_select(1, self.condition_idx))
        if distinct is None:
            return rows.flatten(1), None
        first, inverse = distinct
        # The same table rows either way: their gradient sums over the samples sharing them.
        return rows.index_select(0, first).flatten(1), inverse

    def _factors(self, x: torch.Tensor, emb: torch.Tensor):
        """`(U, S, V)` per generated layer: `S` per sample `(B, r, r)`; `U`, `V` shared, or
        with `share_uv: false` the per-sample weight `U_b S_b V_b` as `(W_b, None, None)`."""
        z, inverse = self._condition(x, emb)
        out = []
        for s, (u, v) in zip(self._s(z), self._uv(z), strict=True):
            if u.dim() == 3:  # generated U_b, V_b: the head takes only a whole weight
                s, u, v = torch.bmm(torch.bmm(u, s), v), None, None
            out.append((u, s if inverse is None else s.index_select(0, inverse), v))
        return out

    def layer_mods(self, x: torch.Tensor, emb: torch.Tensor) -> list[LayerMod | None]:
        """One `LayerMod` per head layer (None: the output layer, unless generated)."""
        mods: list[LayerMod | None] = []
        for u, s, v in self._factors(x, emb):
            # shared: ((x U) S_b) V, the per-sample matrix never built
            mods.append(LayerMod(replace=(s,) if u is None else (u, s, v)))
        if self.out_shape is None:
            mods.append(None)
        return mods

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        emb = self.embedding(x)
        rep = self.backbone.represent(x, emb)
        return ModelOutput(self.backbone.predict(rep, self.layer_mods(x, emb)))

    @torch.no_grad()
    def generated_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each generated layer's per-sample weight `U S(z_b) V`, `(B, in, out)`."""
        return [s if u is None else u @ s @ v for u, s, v in self._factors(x, self.embedding(x))]
