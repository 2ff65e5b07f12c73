"""STAR: the Star Topology Adaptive Recommender (Sheng et al., CIKM 2021, "One Model to Serve
All: Star Topology Adaptive Recommender for Multi-Domain CTR Prediction"), around a backbone.

Users are split into partitions (the paper's domains) by a user field, `p = x[partition_field]`
(gender by default; index 0, unseen values, is a partition of its own, so P = the field's
cardinality: 3 for gender). With `E = embedding(x)` and `r_b = backbone.represent(E)`:

    z   = PN(r_b, p) = (gamma * gamma_p) (r_b - mu_p) / sqrt(var_p + eps) + (beta + beta_p)
    h_0 = z;  h_l = act((W_l * W_l^p)^T h_{l-1} + b_l + b_l^p)     star-topology FCN
    s_m = the head's last layer (no activation) + the backbone's own additive logit (if any)
    s_a = MLP_aux([e_p; E_aux])                                    auxiliary network
    logit = s_m + s_a

- Star-topology FCN. The shared FCN (W_l, b_l) *is* the backbone's prediction head f_y (and
  its hidden blocks' dropout, if configured); each partition has its own W_l^p,
  b_l^p for every linear layer of the head, the 1-wide output layer included (the paper
  makes every FCN layer star-shaped). Applied through `LayerMod(partition_scale=...)`:
  every sample uses its own partition's W * W_p[p], b + b_p[p]. Init W_p = 1, b_p = 0, so
  each partition starts from the shared network (MODELS.md).
- PN on the head's input r_b, as the paper places it (after the embedding / pooling layer,
  before the FCN): `gprec.layers.partition_norm.PartitionedNorm`. Statistics per partition:
  in training from the batch, masked per partition since our batches mix partitions (the
  paper's hold one domain each); per-partition running statistics (BatchNorm's momentum
  rule) at test. A partition absent from a batch keeps its running statistics. Init
  gamma = gamma_p = 1, beta = beta_p = 0. `partition_norm: false` feeds r_b as it is.
- Auxiliary network. The paper feeds the domain indicator's embedding (plus, optionally,
  features describing the domain) to a small FCN whose logit is added to the main one. The
  indicator embedding `e_p` is a table of STAR's own (P x d, normal init with the
  embedding's `embedding_init_std`), not the partition field's row of the shared table: the
  indicator is the paper's separate input. `aux_fields` (default none: on MovieLens no field
  describes a gender beyond the indicator) adds those fields' embeddings from the shared
  table. `auxiliary: false` drops it.
- No shared BatchNorm: the backbone's `batch_norm: true` is refused at config time. It would
  put one BatchNorm, its statistics over batches that mix partitions, in the head's hidden
  layers (and the backbone's other MLPs), the very thing PN keeps per partition; the paper's
  FCN normalises only through PN.

What is equal at init, exactly (`tests/test_star.py`): every sample's head is the shared
network (the backbone's head, same weights; W * 1 = W, b + 0 = b); PN is plain
per-partition standardisation (its affine map is the identity); so `s_m` equals
`backbone.predict` on the per-partition-standardised r_b. With `partition_norm: false` and
`auxiliary: false`, STAR's logit equals the bare backbone's for every input. The
auxiliary logit is not zero at init (ordinary initialisation of its MLP).

Defaults and their sources:
- backbone `mlp`, embedding 16, head [64, 32, 16] + 1: the GPRec paper's settings (the head
  is STAR's shared FCN; STAR's own paper used wider layers for its production data).
- `partition_field: null` = gender: the GPRec paper's split for STAR on ML-1M.
- `norm_momentum: 0.1`, `norm_eps: 1e-5`: BatchNorm's (the paper gives none).
- `max_partitions: 64` (our guard, shared with MMoE and PLE: `wrapper.PartitionOptions`):
  every partition adds a copy of the head's weights and its compute, so a field like user_id
  or zip is refused with a clear message instead of running out of memory; 64 admits
  ML-100K's raw ages (62 values).
- `auxiliary: true`, `aux_units: [16]`: the paper's auxiliary network is a small, two-layer
  FCN; its hidden width (16 = d) is our choice. `aux_fields: []` (above).

Backbones: STAR modulates the head's layers, so the head must take layer mods (an MLP); a
backbone whose head does not (FinalMLP's bilinear fusion) is a config error naming those that
do, read at config time from the backbone's class (`Backbone.head_accepts_layer_mods`, checked
by `wrapper.require_layer_mods`; the contract suite ties it to the built head's
`accepts_layer_mods`).

Speed (2.4x the MLP, within the 3x budget; mostly from how we compute it). The mechanism
needs only one partition's weights `W * W_p` per sample: a sample's forward costs what the
shared head's does. Our implementation instead applies all P products `W * W_p` to the whole
batch (`LayerMod.partition_scale`, one einsum per layer) and gathers each sample's: P times
the head's matrix products, chosen so that no loop over partitions (or samples) is needed;
only the partitions present in the batch count (2 for gender on MovieLens, where the unseen
partition 0 never occurs). Grouping the batch by partition and
running each group through its own weights would cost about one head, at the price of a
per-partition loop and a scatter back. PN adds per-partition statistics, about three
BatchNorms' worth of (B, D) passes even with its closed-form backward. The auxiliary network
runs on P rows, not B. On the MLP backbone, whose head is nearly all of its compute, this is
the worst case: `benchmarks/results/user_modeling_speed.md` (ML-100K, 1 thread, quiet): 2.4x
the MLP's epoch.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from gprec.config import key_error
from gprec.data.schema import EncodedField
from gprec.layers.mlp import MLP, LayerMod
from gprec.layers.partition_norm import PartitionedNorm
from gprec.models.base import ModelOutput, Representation, Width
from gprec.models.registry import register
from gprec.models.wrapper import (
    BackboneWrapper,
    PartitionOptions,
    WrapperOptions,
    field_positions,
    partition_field_index,
    require_layer_mods,
)


class STAROptions(WrapperOptions, PartitionOptions):
    partition_norm: bool = Field(
        True,
        description="partitioned normalisation of the head's input r_b, statistics per "
        "partition (false: r_b as the backbone gives it)",
    )
    norm_momentum: float = Field(
        0.1, gt=0, le=1, description="momentum of PN's per-partition running statistics"
    )
    norm_eps: float = Field(1e-5, gt=0, description="epsilon added to PN's variance")
    auxiliary: bool = Field(
        True,
        description="add the auxiliary network's logit, from the partition indicator's "
        "embedding (and aux_fields)",
    )
    aux_units: list[Width] = Field(
        [16], description="hidden widths of the auxiliary network (a 1-wide output follows)"
    )
    aux_fields: list[str] = Field(
        [],
        description="fields whose embeddings (the shared table's) join the partition "
        "indicator's as the auxiliary network's input",
    )

    @model_validator(mode="after")
    def _head_takes_layer_mods(self) -> STAROptions:
        require_layer_mods(
            self.backbone["name"],
            "STAR scales each layer of the backbone's prediction head per partition",
        )
        if self.backbone.get("batch_norm"):
            raise key_error(
                ("backbone", "batch_norm"),
                "true would give STAR's head a shared BatchNorm whose statistics mix "
                "partitions (STAR normalises per partition, partition_norm); set it false",
                True,
            )
        if self.aux_fields and not self.auxiliary:
            raise key_error(
                ("aux_fields",),
                "given, but auxiliary is false: nothing reads them",
                self.aux_fields,
            )
        return self


@register("star")
class STAR(BackboneWrapper):
    """STAR around a registered backbone (`options.backbone`); see the module docstring.

    Parameters of its own: `partition_weights[l]` `(P, in, out)` and `partition_biases[l]`
    `(P, out)` for each linear layer `l` of the head, `norm` (PN, or None) and the auxiliary
    network (`indicator` `(P, d)` and `aux`, or None).
    """

    Options = STAROptions
    static_shapes = False  # True: every partition's products (gprec.layers.dedup.static_shapes)
    description = (
        "STAR: per-partition (default gender) star-topology head, partitioned norm and an "
        "auxiliary network, around a backbone (model.backbone)"
    )

    def __init__(self, fields: list[EncodedField], options: STAROptions):
        super().__init__(fields, options)
        o = options
        head = self.backbone.head
        self.partition_column, self.n_partitions = partition_field_index(
            fields, o.partition_field, o.max_partitions
        )
        P = self.n_partitions
        # W_p = 1, b_p = 0: every partition starts as the shared network.
        shapes = head.layer_shapes
        self.partition_weights = nn.ParameterList(
            nn.Parameter(torch.ones(P, i, out)) for i, out in shapes
        )
        self.partition_biases = nn.ParameterList(
            nn.Parameter(torch.zeros(P, out)) for _, out in shapes
        )
        self.norm = (
            PartitionedNorm(shapes[0][0], P, o.norm_eps, o.norm_momentum)
            if o.partition_norm
            else None
        )
        self.indicator = self.aux = None
        if o.auxiliary:
            d = self.embedding_dim
            aux = field_positions(fields, o.aux_fields, "model.aux_fields", allow_empty=True)
            self.register_index("aux_idx", aux)
            self.indicator = nn.Embedding(P, d)
            nn.init.normal_(self.indicator.weight, std=o.embedding_init_std)
            self.aux = MLP(d * (1 + len(o.aux_fields)), o.aux_units, 1)

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """Each sample's partition `(B,)`: its value of the partition field."""
        return x[:, self.partition_column]

    def layer_mods(self, part: torch.Tensor) -> list[LayerMod]:
        """The star topology: one `LayerMod` per head layer, `W * W_p[p]`, `b + b_p[p]`, over
        the partitions present in the batch only (the products of absent ones are not used);
        with `static_shapes` (export: `gprec.layers.dedup.static_shapes`) over all of them."""
        if not self.static_shapes:
            present, local = torch.unique(part, return_inverse=True)
            if len(present) < self.n_partitions:
                return [
                    LayerMod(
                        partition_scale=(
                            w.index_select(0, present),
                            b.index_select(0, present),
                            local,
                        )
                    )
                    for w, b in zip(self.partition_weights, self.partition_biases, strict=True)
                ]
        return [
            LayerMod(partition_scale=(w, b, part))
            for w, b in zip(self.partition_weights, self.partition_biases, strict=True)
        ]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        bb = self.backbone
        part = self.partition(x)
        emb = self.embedding(x)
        rep = bb.represent(x, emb)
        r = rep.r if self.norm is None else self.norm(rep.r, part)
        logit = bb.predict(Representation(r, rep.logit), self.layer_mods(part))
        if self.aux is not None:
            logit = logit + self.auxiliary_logit(part, emb)
        return ModelOutput(logit)

    def auxiliary_logit(self, part: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """`s_a` `(B,)`. Without `aux_fields` it depends on the partition alone, so the network
        runs once per partition (P rows, not B) and each sample takes its partition's."""
        if not self.aux_idx.numel():
            return self.aux(self.indicator.weight).squeeze(-1).index_select(0, part)
        aux_in = torch.cat([self.indicator(part), emb.index_select(1, self.aux_idx).flatten(1)], 1)
        return self.aux(aux_in).squeeze(-1)
