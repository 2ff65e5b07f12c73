"""What the attention backbones (AutoInt+, DESTINE) share: a deep and a wide logit added to their
attention head's, and the check that heads divide the attention width. Registers no model.

As in both models' official code, the deep part (a DNN over the flat embeddings) and the wide part
(a first-order term over the raw indices) are separate outputs whose logits are summed with the
head's; for GPRec they are the backbone's own additive logit (`Representation.logit`), which no
strategy touches.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from gprec.config import key_error
from gprec.data.schema import EncodedField
from gprec.layers.fm import FirstOrder
from gprec.layers.mlp import MLP
from gprec.models.base import BackboneOptions, Width


class DeepWideAttentionOptions(BackboneOptions):
    """Options of an attention backbone with deep and wide logits."""

    num_heads: int
    attention_dim: int
    deep: bool = Field(
        True,
        description="add a DNN over the flattened embeddings, its logit summed with the head's "
        "(AutoInt+)",
    )
    deep_units: list[Width] = Field(
        [64, 32, 16], description="deep: true: hidden widths of the DNN (a 1-wide output follows)"
    )
    wide: bool = Field(True, description="add a first-order (logistic regression) logit")

    @model_validator(mode="after")
    def _heads_divide_attention_dim(self):
        if self.attention_dim % self.num_heads:
            raise key_error(
                ("num_heads",),
                f"attention_dim={self.attention_dim} is not divisible by num_heads="
                f"{self.num_heads}: each head takes attention_dim / num_heads channels",
                self.num_heads,
            )
        return self


class DeepWideLogit(nn.Module):
    """`DNN(flat E) + w_0 + sum_i w_{x_i}`, either part optional; None when both are off."""

    def __init__(self, fields: list[EncodedField], o: DeepWideAttentionOptions):
        super().__init__()
        flat = len(fields) * o.embedding_dim
        self.deep = (
            MLP(flat, o.deep_units, 1, o.dropout, o.activation, o.batch_norm) if o.deep else None
        )
        self.wide = (
            FirstOrder([f.cardinality for f in fields], o.embedding_init_std) if o.wide else None
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor | None:
        logit = None
        if self.deep is not None:
            logit = self.deep(emb.flatten(1)).squeeze(-1)
        if self.wide is not None:
            wide = self.wide(x)
            logit = wide if logit is None else logit + wide
        return logit
