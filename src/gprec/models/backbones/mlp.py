"""The plain MLP backbone: flattened field embeddings are the representation `r_b`.

Defaults (the GPRec paper): embedding 16, prediction MLP [64, 32, 16, 1], ReLU, no dropout.
"""

from __future__ import annotations

import torch

from gprec.models.base import Backbone, Representation
from gprec.models.registry import register


@register("mlp")
class MLPBackbone(Backbone):
    description = "MLP over the concatenated field embeddings (DNN)"

    @property
    def representation_dim(self) -> int:
        return len(self.fields) * self.options.embedding_dim

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        return Representation(emb.flatten(1))
