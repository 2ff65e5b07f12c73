"""DeepFM (Guo et al., 2017, "DeepFM: A Factorization-Machine based Neural Network for CTR
Prediction"): a factorization machine and a deep MLP side by side, sharing the embeddings.

    logit = b + sum_i w_{x_i}                                  first order (its own 1-d table)
          + 1/2 sum_d [(sum_i e_id)^2 - sum_i e_id^2]          FM: sum_{i<j} <e_i, e_j>
          + MLP(flat E)                                        deep part

Where GPRec joins (MODELS.md): the logit is a sum of parts, so GPRec joins the deep part.
`r_b` = the deep MLP's input, `flat E` `(B, F d)`, and the deep MLP is the prediction head
(`head_units`, then 1); the first-order and FM terms are `Representation.logit`, added to
whatever head reads `r_b`. All three GPRec strategies apply: the head is a plain `MLP`.

Defaults: embedding 16 and deep MLP / head [64, 32, 16, 1] (the GPRec paper's prediction MLP;
also FuxiCTR's DeepFM as run in issue 17), ReLU, no dropout, no BatchNorm. The first-order
table is initialised like the embeddings, N(0, `embedding_init_std`) (FuxiCTR's
`LogisticRegression`), its bias zero. DeepFM has no options of its own.

References consulted: FuxiCTR `model_zoo/DeepFM/DeepFM_torch/src/DeepFM.py` (its FM layer
holds the first order with a bias, and its MLP adds a second output bias: we keep both, as
there), pytorch-fm `torchfm/model/dfm.py`. The blocks are `gprec.layers.fm`.
"""

from __future__ import annotations

import torch

from gprec.data.schema import EncodedField
from gprec.layers.fm import FactorizationMachine, FirstOrder
from gprec.models.base import Backbone, BackboneOptions, Representation
from gprec.models.registry import register


@register("deepfm")
class DeepFM(Backbone):
    description = "DeepFM: first-order + FM terms plus an MLP over the shared embeddings"
    gprec_strategies = ("input", "dynamic", "ensemble")

    def __init__(
        self, fields: list[EncodedField], options: BackboneOptions, with_head: bool = True
    ):
        super().__init__(fields, options, with_head)
        self.first_order = FirstOrder([f.cardinality for f in fields], options.embedding_init_std)
        self.fm = FactorizationMachine()

    @property
    def representation_dim(self) -> int:
        return len(self.fields) * self.options.embedding_dim

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        """`r_b` = flat E (the deep part's input); logit = first order + FM."""
        return Representation(emb.flatten(1), self.first_order(x) + self.fm(emb))
