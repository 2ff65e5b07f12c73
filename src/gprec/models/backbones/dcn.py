"""DCN (Wang et al., 2017, "Deep & Cross Network for Ad Click Predictions"): a rank-1 cross
network and a deep tower in parallel over the flat embeddings, joined by one combination layer.

    x_0 = flat E                                     (B, D),  D = F d
    x_{l+1} = x_0 (x_l . w_l) + b_l + x_l            L = cross_layers (`gprec.layers.CrossNet`)
    h_L = DNN(x_0)                                   deep tower, `deep_units`
    logit = w . [x_L; h_L] + b                       combination layer (paper Eq. 5)

Where GPRec joins (MODELS.md): `r_b = [x_L; h_L]` `(B, D + deep_units[-1])`, and the prediction
head is what reads it. The paper's combination layer `w . [x_L; h_L] + b` *is* our head: with
the default `head_units: []` the head is `MLP(D + deep_units[-1], [], 1)`, one linear layer,
exactly `w` and `b` (as in FuxiCTR's `fc` and pytorch-fm's `linear`). The default
`head_units: [64, 32, 16]` is the GPRec paper's prediction MLP, the same head every backbone of
the zoo gets (our choice: it keeps GPRec's strategies meaningful, and equal across backbones);
`head_units: []` gives the DCN paper's model exactly. GPRec's strategies then work on that head: `input`
widens its input to `[x_L; h_L; r_G; r_P]`, `dynamic` adds per-user low-rank deltas to its
weights (to `w` itself with the default), `ensemble` averages it with heads over r_G / r_P
built from the same `head_units`. All three apply, the head being a plain `MLP`. With
`head_units: []` the heads GPRec builds are linear too.

Defaults and sources:
- embedding 16 (GPRec paper); 3 cross layers, parallel (FuxiCTR's DCN as run in issue 17;
  the GPRec authors also used 3);
- deep tower `deep_units: [64, 32, 16]` (FuxiCTR's DCN as run in issue 17, its towers equal
  to the GPRec paper's prediction MLP widths; the GPRec authors ran pytorch-fm's DCN with
  (16, 16) and dropout 0.2);
- `head_units: [64, 32, 16]` (GPRec paper); `[]` is the DCN paper's linear combination layer;
- `dropout`, `activation`, `batch_norm` apply to every hidden layer of the deep tower (and of
  the head, if it has any): FuxiCTR's `net_dropout`, `hidden_activations`, `batch_norm`.

The deep tower is an `MLP` without output layer (`Linear -> [BatchNorm] -> act -> [dropout]`
per width, as FuxiCTR's `MLP_Block`). `deep_units: []` leaves the deep tower out, `r_b = x_L`
(the cross network alone, as FuxiCTR's `dnn_hidden_units: []`).
Initialisation: the cross network as its layer says; towers and head as `MLP` (torch's
`nn.Linear` default), as for the MLP backbone. FuxiCTR's `BaseModel.reset_parameters`
re-initialises every `nn.Linear` xavier-normal with zero bias: not copied.
References consulted: FuxiCTR `model_zoo/DCN/DCN_torch/src/DCN.py` and
`fuxictr/pytorch/layers/interactions/cross_net.py`; pytorch-fm `torchfm/model/dcn.py`.
"""

from __future__ import annotations

import torch
from pydantic import Field

from gprec.data.schema import EncodedField
from gprec.layers.cross import CrossNet
from gprec.layers.mlp import MLP
from gprec.models.base import Activation, Backbone, BackboneOptions, Representation, Width
from gprec.models.registry import register


class TowerOptions(BackboneOptions):
    """Options of a model whose deep towers live in `represent` and whose head is, by default,
    the paper's linear output layer over `r_b` (DCN, DCNv2)."""

    head_units: list[Width] = Field(
        [64, 32, 16],
        description="hidden widths of the head over r_b (a 1-wide output follows); "
        "[]: the paper's linear output layer w . r_b + b",
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout rate after each hidden layer of the towers and head"
    )
    batch_norm: bool = Field(
        False,
        description="BatchNorm after each hidden linear layer of the towers and head, before "
        "its activation",
    )
    activation: Activation = Field(
        "relu", description="activation of the hidden layers of the towers and head"
    )


class DCNOptions(TowerOptions):
    cross_layers: int = Field(3, ge=1, description="number L of cross layers")
    deep_units: list[Width] = Field(
        [64, 32, 16],
        description="hidden widths of the deep tower h_L = DNN(x_0), parallel to "
        "the cross network ([]: no deep tower, r_b = x_L)",
    )


@register("dcn")
class DCN(Backbone):
    description = "DCN: rank-1 cross network and a deep tower in parallel, r_b = [x_L; h_L]"
    gprec_strategies = ("input", "dynamic", "ensemble")
    Options = DCNOptions

    def __init__(self, fields: list[EncodedField], options: DCNOptions, with_head: bool = True):
        super().__init__(fields, options, with_head)
        o, dim = options, len(fields) * options.embedding_dim
        self.cross = CrossNet(dim, o.cross_layers)
        self.deep = (
            MLP(dim, o.deep_units, None, o.dropout, o.activation, o.batch_norm)
            if o.deep_units
            else None
        )

    @property
    def representation_dim(self) -> int:  # read by the base class before the layers exist
        o, dim = self.options, len(self.fields) * self.options.embedding_dim
        return dim + (o.deep_units[-1] if o.deep_units else 0)

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        """`r_b = [x_L; h_L]`."""
        x0 = emb.flatten(1)
        if self.deep is None:
            return Representation(self.cross(x0))
        return Representation(torch.cat([self.cross(x0), self.deep(x0)], dim=1))
