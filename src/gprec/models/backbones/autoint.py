"""AutoInt / AutoInt+ (Song et al., CIKM 2019, "AutoInt: Automatic Feature Interaction Learning
via Self-Attentive Neural Networks").

    A_0 = E                                                   (B, F, d)
    A_{l+1} = FieldSelfAttention_l(A_l)                       (B, F, attention_dim)
    r_b = flat(A_L)                                           (B, F * attention_dim)
    y = f_y(r_b)  [+ DNN(flat E)]  [+ b + sum_i w_{x_i}]
         head        deep (AutoInt+)    wide (first order)

Each interacting layer (`gprec.layers.attention.FieldSelfAttention`) is multi-head
self-attention over the fields: `e'_m = ReLU(concat_h sum_k a_mk^h W_V^h e_k + W_res e_m)`, then
LayerNorm, with `a_mk^h = softmax_k(<W_Q^h e_m, W_K^h e_k> / sqrt(d_head))`, heads split over
the embedding (channel) dimension and run as one batched op.

Where GPRec joins (our choice, documented in MODELS.md's spirit): **r_b = flat(A_L)**, the
attention output, which AutoInt's output layer reads; the prediction head f_y is that output
layer. AutoInt+ keeps its deep part beside the attention with a separate output, summed into
the logit (the paper's Section 5 and the official code add the two logits; FuxiCTR too), so
the deep DNN over `flat E` and the optional wide (first-order) term are the backbone's own
**additive logit**, not part of r_b. Under GPRec the head over the attention output is what
`input` widens and `dynamic` modulates; the deep and wide logits are added unchanged. With
`head_units: []` the head is AutoInt's single linear output layer `w . flat(A_L) + b`, i.e.
exactly FuxiCTR's AutoInt+ (`deep: true, wide: true`) or plain AutoInt (`deep: false, wide:
false`); the default `head_units` is the GPRec paper's prediction MLP [64, 32, 16, 1] (our
choice: one head shape for every backbone).

Defaults and their sources:

- `attention_layers: 2`, `num_heads: 4`, `attention_dim: 128`, `residual`, `scale`,
  `layer_norm` all on, `deep: true`, `wide: true`: the AutoInt+ settings FuxiCTR ran with in
  issue 17's table (2 layers, 4 heads, dim 128, residual, scaling, LayerNorm, wide + deep).
  Scaling and LayerNorm are the official code's (FuxiCTR has both off by default).
- `deep_units: [64, 32, 16]` (+ 1 output): FuxiCTR's MLP tower in issue 17's settings. The deep
  part uses the backbone's `dropout`, `activation` and `batch_norm`, like the head.
- `relu_projections: false`: the paper's linear Q, K, V, residual projections (the official
  TF code has ReLU dense layers; set true to reproduce it).
- `attention_dropout: 0`: issue 17's "no dropout"; active in training only.
- embedding 16 and `head_units [64, 32, 16]`: the GPRec paper (BackboneOptions).
- The LayerNorm follows the ReLU as in the official code (FuxiCTR puts it before); the wide
  table is initialised like the embeddings (`embedding_init_std`), its bias zero
  (`gprec.layers.fm.FirstOrder`).

GPRec strategies: all three (the head is an MLP over r_b).

References consulted: shichence/AutoInt `model.py` (official, TF1); FuxiCTR
`model_zoo/AutoInt/src/AutoInt.py`.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from gprec.data.schema import EncodedField
from gprec.layers.attention import FieldSelfAttention
from gprec.models.backbones.deep_wide import DeepWideAttentionOptions, DeepWideLogit
from gprec.models.base import Backbone, Representation, Width
from gprec.models.registry import register


class AutoIntOptions(DeepWideAttentionOptions):
    attention_layers: int = Field(2, ge=1, description="number of interacting (attention) layers")
    num_heads: int = Field(4, ge=1, description="attention heads per layer")
    attention_dim: Width = Field(
        128,
        description="output width of each field in every attention layer (all heads together); "
        "a multiple of num_heads",
    )
    residual: bool = Field(True, description="add the projected residual W_res e_m in each layer")
    scale: bool = Field(True, description="divide attention logits by sqrt(attention_dim / heads)")
    layer_norm: bool = Field(True, description="LayerNorm on each attention layer's output")
    relu_projections: bool = Field(
        False,
        description="ReLU (and a bias) on the Q, K, V and residual projections, as the official "
        "code; false: the paper's linear projections",
    )
    attention_dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout on the attention weights (training only)"
    )


@register("autoint")
class AutoInt(Backbone):
    description = "AutoInt(+): multi-head self-attention over fields, plus deep and wide logits"
    Options = AutoIntOptions
    options: AutoIntOptions

    def __init__(self, fields: list[EncodedField], options: AutoIntOptions, with_head: bool = True):
        super().__init__(fields, options, with_head)
        o = options
        self.attention = nn.Sequential(
            *(
                FieldSelfAttention(
                    o.embedding_dim if i == 0 else o.attention_dim,
                    o.attention_dim,
                    o.num_heads,
                    residual=o.residual,
                    scale=o.scale,
                    layer_norm=o.layer_norm,
                    relu_projections=o.relu_projections,
                    dropout=o.attention_dropout,
                )
                for i in range(o.attention_layers)
            )
        )
        self.deep_wide = DeepWideLogit(fields, o)

    @property
    def representation_dim(self) -> int:
        return len(self.fields) * self.options.attention_dim

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        r = self.attention(emb).flatten(1)
        logit = self.deep_wide(x, emb)
        return Representation(r, logit)
