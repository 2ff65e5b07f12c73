"""Factorization-machine terms (DeepFM): the first-order table and the second-order FM term.

DeepFM's logit is a sum of parts, `b + sum_i w_{x_i} + FM(E) + MLP(flat E)` (Guo et al., 2017,
"DeepFM: A Factorization-Machine based Neural Network for CTR Prediction"); these are the first
two. References consulted: FuxiCTR `model_zoo/DeepFM/DeepFM_torch/src/DeepFM.py` (its
`LogisticRegression` and `FactorizationMachine` layers) and pytorch-fm `torchfm/layer.py`
(`FeaturesLinear`, `FactorizationMachine`).

Pitfalls avoided:
- the first-order weights are their own 1-wide table, not a projection of the shared embeddings;
- that table is one table over all fields addressed through per-field offsets, so the lookup is
  one gather per batch, never one per field (`FieldEmbedding`);
- the FM term is computed by the sum-square trick, O(F d), never by a loop over field pairs.
"""

from __future__ import annotations

import torch
from torch import nn

from gprec.layers.embedding import FieldEmbedding


class FactorizationMachine(nn.Module):
    """Second-order FM term, `sum_{i<j} <e_i, e_j>`, by the sum-square trick:

        0.5 * sum_d [ (sum_i e_id)^2 - sum_i e_id^2 ]

    `(B, F, d)` embeddings -> `(B,)`. No parameters: the embeddings are the ones the deep part
    reads (DeepFM shares them).
    """

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        s = emb.sum(dim=1)  # (B, d)
        return 0.5 * (s.square().sum(dim=1) - emb.square().sum(dim=(1, 2)))


class FirstOrder(nn.Module):
    """First-order term `b + sum_i w_{x_i}`: a 1-wide table over all fields plus a global bias.

    `(B, F)` int64 indices (per-field, as `FieldEmbedding` takes them) -> `(B,)`.

    Initialisation: the table as FuxiCTR's `LogisticRegression` (normal with a small std,
    `init_std`, FuxiCTR's embedding default 1e-4), the bias zero (FuxiCTR and pytorch-fm).
    pytorch-fm's `FeaturesLinear` leaves `nn.Embedding`'s N(0, 1): not copied, it makes the
    initial logits large.
    """

    def __init__(self, cardinalities: list[int], init_std: float = 1e-4):
        super().__init__()
        self.weights = FieldEmbedding(cardinalities, 1, init_std)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights(x).sum(dim=(1, 2)) + self.bias
