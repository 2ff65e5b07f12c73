"""The plain MLP backbone: flattened field embeddings are the representation `r_b`."""

from __future__ import annotations

import torch

from gprec.models.base import Backbone
from gprec.models.registry import register


@register("mlp")
class MLPBackbone(Backbone):
    @property
    def representation_dim(self) -> int:
        return len(self.fields) * self.options.embedding_dim

    def represent(self, emb: torch.Tensor) -> torch.Tensor:
        return emb.flatten(1)
