"""GDCN: the gated deep cross network (Wang et al., CIKM 2023, "Towards Deeper, Lighter and
Interpretable Cross Network for CTR Prediction").

    c_0 = flat(E)                                          (B, D), D = F * d
    c_{l+1} = c_0 * (W_c c_l + b_c) * sigmoid(W_g c_l) + c_l      `GatedCrossNet`, L layers

Two structures (option `structure`):

- `stacked` (GDCN-S, default): `y = f_y(c_L)`. **r_b = c_L**, and the prediction head f_y is
  the MLP that GDCN-S stacks on the cross network (`head_units`), as the official `GDCNS` and
  FuxiCTR's `GDCN` class do.
- `parallel` (GDCN-P): `y = w . [c_L; h]`, `h = MLP(c_0)` a deep tower (`deep_units`, its
  last hidden layer, no output layer). **r_b = [c_L; h]**, the input of GDCN-P's output
  layer, and f_y is the head over it. The paper's output is a single linear layer: set
  `head_units: []` for exactly GDCN-P; with the default `head_units` f_y is the GPRec paper's
  prediction MLP over the same input (our choice: one head shape for every backbone).

Defaults and their sources:

- `structure: stacked`, `cross_layers: 3`: FuxiCTR's `GDCN` class (the stacked form) and its
  default `num_cross_layers`, as measured in issue 17's FuxiCTR table; the official code's
  default `cn_layers` is 3 too.
- `deep_units: [64, 32, 16]` (parallel only; ignored by `stacked`, which has no deep tower):
  the MLP towers FuxiCTR ran with in issue 17 (the official `GDCNP` uses (400, 400, 400)).
  The tower uses the backbone's `dropout`, `activation` and `batch_norm`, like the head.
- embedding 16 and `head_units [64, 32, 16]` (+ 1 output): the GPRec paper (BackboneOptions).
- Initialisation (the paper's): b_c uniform(0, 1), W_c and W_g without bias (`GatedCrossNet`).

GPRec strategies: all three. The head is an MLP over r_b, so `input` widens its first layer
with r_G, r_P, `dynamic` adds low-rank deltas to its weights and `ensemble` averages it with
the group and individual heads. No additive logit of its own.

References consulted: anonctr/GDCN `models/GDCN.py` (official), FuxiCTR
`model_zoo/GDCN/src/GDCN.py`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gprec.data.schema import EncodedField
from gprec.layers.cross import GatedCrossNet
from gprec.layers.mlp import MLP
from gprec.models.base import Backbone, BackboneOptions, Representation, Width
from gprec.models.registry import register


class GDCNOptions(BackboneOptions):
    structure: Literal["stacked", "parallel"] = Field(
        "stacked",
        description="stacked (GDCN-S): the head reads the cross network's output c_L; "
        "parallel (GDCN-P): the head reads [c_L; deep tower over the embeddings]",
    )
    cross_layers: int = Field(3, ge=1, description="number of gated cross layers L")
    deep_units: list[Width] = Field(
        [64, 32, 16],
        min_length=1,
        description="structure parallel: hidden widths of the deep tower beside the cross "
        "network (its last hidden layer joins r_b); ignored by stacked",
    )


@register("gdcn")
class GDCN(Backbone):
    description = "GDCN: gated cross network, stacked (GDCN-S) or parallel with a deep tower"
    Options = GDCNOptions
    options: GDCNOptions

    def __init__(self, fields: list[EncodedField], options: GDCNOptions, with_head: bool = True):
        super().__init__(fields, options, with_head)
        o, dim = options, len(fields) * options.embedding_dim
        self.cross = GatedCrossNet(dim, o.cross_layers)
        self.deep = (
            MLP(dim, o.deep_units, None, o.dropout, o.activation, o.batch_norm)
            if o.structure == "parallel"
            else None
        )

    @property
    def representation_dim(self) -> int:  # read by the base class before the layers exist
        o = self.options
        dim = len(self.fields) * o.embedding_dim
        return dim + (o.deep_units[-1] if o.structure == "parallel" else 0)

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        """Stacked: `r_b = c_L`; parallel: `r_b = [c_L; MLP(c_0)]`."""
        c0 = emb.flatten(1)
        cross = self.cross(c0)
        if self.deep is None:
            return Representation(cross)
        return Representation(torch.cat([cross, self.deep(c0)], dim=1))
