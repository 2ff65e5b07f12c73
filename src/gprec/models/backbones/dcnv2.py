"""DCNv2 (Wang et al., 2021, "DCN V2: Improved Deep & Cross Network and Practical Lessons for
Web-scale Learning to Rank Systems"): a matrix cross network and deep towers, stacked, in
parallel, or both (FuxiCTR's `stacked_parallel`).

    x_0 = flat E                                           (B, D),  D = F d
    x_{l+1} = x_0 * (W_l x_l + b_l) + x_l                  L = cross_layers
        W_l full rank (`low_rank: null`), or U_l V_l^T (`low_rank: r`), or a gated mixture of
        `n_experts` low-rank experts with tanh (`low_rank: r, n_experts: K`; paper Eq. 3)
    parallel:          r_b = [x_L; DNN_p(x_0)]             (paper Fig. 2 right)
    stacked:           r_b = DNN_s(x_L)                    (paper Fig. 2 left)
    stacked_parallel:  r_b = [DNN_s(x_L); DNN_p(x_0)]      (FuxiCTR's third structure)
    logit = head(r_b)

The cross network is `gprec.layers.CrossNetV2` (all three forms, no loop over experts).
`DNN_p` has widths `deep_units`, `DNN_s` `stacked_units`; only the towers a structure uses are
built, and an empty one (`[]`) is left out: `stacked` with `stacked_units: []` or `parallel`
with `deep_units: []` is the cross network alone, `r_b = x_L` (FuxiCTR's `crossnet_only`).

Where GPRec joins: `r_b` is what the model's final layer reads (for DCN, MODELS.md's
`r_b = [x_L; h_L]`), and that final layer is the prediction head. The paper's final layer is
linear, `logit = w . r_b + b`: `head_units: []` makes the head exactly that one linear layer
(FuxiCTR's `fc`); the default `[64, 32, 16]` is the GPRec paper's prediction MLP, the head every
backbone of the zoo gets (our choice, as for DCN). All three GPRec strategies apply, the head
being a plain `MLP`.

Defaults and sources:
- embedding 16 (GPRec paper); 5 full-rank cross layers, parallel (FuxiCTR's DCNv2 as run in
  issue 17);
- tower `deep_units` [64, 32, 16] (FuxiCTR's towers as run in issue 17, equal to the GPRec
  paper's prediction MLP widths); `stacked_units: []`: with `stacked`, the head [64, 32, 16]
  over `x_L` is the paper's one stacked tower (as GDCN-S), not a second tower under it;
- `head_units: [64, 32, 16]` (GPRec paper); `[]` is the DCNv2 paper's linear output layer;
- `low_rank`, `n_experts` off (full rank, the paper's and FuxiCTR's default; FuxiCTR's mixture
  defaults are `low_rank: 32, n_experts: 4`);
- `dropout`, `activation`, `batch_norm` apply to every hidden layer of the towers (and of the
  head, if it has any), as FuxiCTR's `net_dropout`, `hidden_activations`, `batch_norm`.

Initialisation: the cross network as its layer says; towers and head as `MLP` (torch's
`nn.Linear` default), as for the MLP backbone. FuxiCTR's `BaseModel.reset_parameters`
re-initialises every `nn.Linear` xavier-normal with zero bias: not copied.
References consulted: tensorflow/recommenders `layers/feature_interaction/dcn.py` (official
cross layer), FuxiCTR `model_zoo/DCNv2/src/DCNv2.py` (structures, mixture).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from gprec.config import key_error
from gprec.data.schema import EncodedField
from gprec.layers.cross import CrossNetV2
from gprec.layers.mlp import MLP
from gprec.models.backbones.dcn import TowerOptions
from gprec.models.base import Backbone, Representation, Width
from gprec.models.registry import register

Structure = Literal["parallel", "stacked", "stacked_parallel"]


class DCNv2Options(TowerOptions):
    cross_layers: int = Field(5, ge=1, description="number L of cross layers")
    low_rank: int | None = Field(
        None, ge=1, description="rank r of each cross matrix W = U V^T (null: full rank)"
    )
    n_experts: int | None = Field(
        None,
        ge=1,
        description="number K of low-rank experts mixed by gates in each cross layer (needs "
        "low_rank; null: no mixture)",
    )
    structure: Structure = Field(
        "parallel",
        description="parallel: r_b = [x_L; DNN_p(x_0)]; stacked: r_b = DNN_s(x_L); "
        "stacked_parallel: r_b = [DNN_s(x_L); DNN_p(x_0)]",
    )
    deep_units: list[Width] = Field(
        [64, 32, 16],
        description="hidden widths of the parallel tower DNN_p over x_0 (parallel, "
        "stacked_parallel; []: no such tower)",
    )
    stacked_units: list[Width] = Field(
        [],
        description="hidden widths of a tower DNN_s over x_L before the head (stacked, "
        "stacked_parallel; []: none, the head itself is the stacked tower)",
    )

    @model_validator(mode="after")
    def _mixture_needs_low_rank(self) -> DCNv2Options:
        if self.n_experts is not None and self.low_rank is None:
            raise key_error(
                ("n_experts",),
                "a mixture of low-rank experts needs low_rank (e.g. low_rank: 32)",
                self.n_experts,
            )
        return self


@register("dcnv2")
class DCNv2(Backbone):
    description = "DCNv2: matrix cross network (full, low-rank or mixture), parallel or stacked"
    gprec_strategies = ("input", "dynamic", "ensemble")
    Options = DCNv2Options

    def __init__(self, fields: list[EncodedField], options: DCNv2Options, with_head: bool = True):
        super().__init__(fields, options, with_head)
        o, dim = options, len(fields) * options.embedding_dim
        self.cross = CrossNetV2(dim, o.cross_layers, o.low_rank, o.n_experts)

        def tower(units: list[int], used: bool) -> MLP | None:
            if not (used and units):
                return None
            return MLP(dim, units, None, o.dropout, o.activation, o.batch_norm)

        self.stacked = tower(o.stacked_units, o.structure != "parallel")
        self.parallel = tower(o.deep_units, o.structure != "stacked")

    @property
    def representation_dim(self) -> int:  # read by the base class before the layers exist
        o, dim = self.options, len(self.fields) * self.options.embedding_dim
        stacked = o.structure != "parallel" and o.stacked_units
        parallel = o.structure != "stacked" and o.deep_units
        return (o.stacked_units[-1] if stacked else dim) + (o.deep_units[-1] if parallel else 0)

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        x0 = emb.flatten(1)
        xl = self.cross(x0)
        first = xl if self.stacked is None else self.stacked(xl)
        if self.parallel is None:
            return Representation(first)
        return Representation(torch.cat([first, self.parallel(x0)], dim=1))
