"""DESTINE (Xu et al., CIKM 2021, "Disentangled Self-Attentive Neural Networks for
Click-Through Rate Prediction").

    A_0 = E                                                        (B, F, d)
    A_{l+1} = DisentangledSelfAttention_l(A_l)                     (B, F, attention_dim)
    w_ij = softmax_j((q_i - mu_q) . (k_j - mu_k)) + softmax_j(u_j)  pairwise + unary, per head
    out_i = sum_j w_ij v_j  (+ W_res r_i)
    r_b = flat(ReLU(A_L))                                          (B, F * attention_dim)
    y = f_y(r_b)  [+ DNN(flat E)]  [+ b + sum_i w_{x_i}]
         head        deep              wide (first order)

Where GPRec joins (our choice): **r_b = flat(ReLU(A_L))**, what DESTINE's output layer reads
(the official model applies a ReLU to the attention output before that layer); the prediction
head f_y is that output layer. The official model's deep part (`deep=True`: an MLP over
`flat E`) and its linear (first-order) part each have their own output and are summed into the
logit, so here they are the backbone's own **additive logit**, not part of r_b. Under GPRec the
head over the attention output is what `input` widens and `dynamic` modulates; the deep and
wide logits are added unchanged. With `head_units: []` the head is DESTINE's single linear
`attn_fc`, so the model is exactly the official DESTINE (with `residual: last_layer`, `unary:
official`) or FuxiCTR's (with `residual: each_layer`, `unary: official`, `relu_output: false`);
the default `head_units` is the GPRec paper's prediction MLP [64, 32, 16, 1] (our choice: one
head shape for every backbone).

Defaults and their sources:

- `attention_dim: 64`, `attention_layers: 3`, `num_heads: 1`, `residual: each_layer`,
  `deep: true` with `deep_units: [64, 32, 16]`, `wide: true`: the settings FuxiCTR ran with in
  issue 17's table (attention dim 64, 3 layers, 1 head, residual each layer, MLP towers
  [64, 32, 16], its default `use_wide`). The official code defaults to `last_layer` (one
  `W_res e` added after the last layer): an option.
- `relu_output: true`: the official ReLU before the output layer (FuxiCTR omits it).
- `unary: paper` (`u_j = mu_q . k_j`, the j-dependent part of `q_i . k_j`; no extra
  parameters); `official` is the code's learned `w_u . x_j + b_u` per head
  (`gprec.layers.attention.DisentangledSelfAttention` has both).
- `scale: false`, `relu_before_attention: false`: the official defaults (`scale_att`,
  `relu_before_att`). As in the official code, `relu_before_attention` applies to the first
  layer only (FuxiCTR applies it to every layer).
- `attention_dropout: 0`: issue 17's "no dropout". It is active in training only (the
  official code also drops attention weights at inference: a bug, not copied).
- embedding 16 and `head_units [64, 32, 16]`: the GPRec paper (BackboneOptions). The deep part
  uses the backbone's `dropout`, `activation` and `batch_norm`, like the head; the wide table
  is initialised like the embeddings, its bias zero (`gprec.layers.fm.FirstOrder`).

Heads split the embedding dimension (FuxiCTR's `view` mixes fields across heads when
`num_heads > 1`; the official code and ours do not).

GPRec strategies: all three (the head is an MLP over r_b).

References consulted: CRIPAC-DIG/DESTINE `models/DESTINE.py`, `layers/activation.py`
(official); FuxiCTR `model_zoo/DESTINE/src/DESTINE.py`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from gprec.data.schema import EncodedField
from gprec.layers.attention import DisentangledSelfAttention
from gprec.models.backbones.deep_wide import DeepWideAttentionOptions, DeepWideLogit
from gprec.models.base import Backbone, Representation, Width
from gprec.models.registry import register


class DESTINEOptions(DeepWideAttentionOptions):
    attention_layers: int = Field(3, ge=1, description="number of disentangled attention layers")
    num_heads: int = Field(
        1, ge=1, description="attention heads per layer (they split the embedding dimension)"
    )
    attention_dim: Width = Field(
        64,
        description="output width of each field in every attention layer (all heads together); "
        "a multiple of num_heads",
    )
    residual: Literal["each_layer", "last_layer", "none"] = Field(
        "each_layer",
        description="each_layer: every layer adds W_res of its input; last_layer (official "
        "default): W_res of the embeddings added after the last layer; none",
    )
    unary: Literal["paper", "official"] = Field(
        "paper",
        description="unary attention term: paper (mu_q . k_j, no parameters) or official "
        "(a learned linear score per field and head)",
    )
    scale: bool = Field(False, description="divide attention logits by sqrt(attention_dim / heads)")
    relu_before_attention: bool = Field(
        False, description="ReLU on the first layer's Q, K, V (official relu_before_att)"
    )
    relu_output: bool = Field(
        True, description="ReLU on the last attention output, before the head (official)"
    )
    attention_dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout on the attention weights (training only)"
    )


@register("destine")
class DESTINE(Backbone):
    description = "DESTINE: disentangled (pairwise + unary) self-attention, plus deep and wide"
    Options = DESTINEOptions
    options: DESTINEOptions

    def __init__(self, fields: list[EncodedField], options: DESTINEOptions, with_head: bool = True):
        super().__init__(fields, options, with_head)
        o = options
        n = o.attention_layers
        self.last_layer_residual = o.residual == "last_layer"

        def layer(i: int) -> DisentangledSelfAttention:
            last = i == n - 1
            return DisentangledSelfAttention(
                o.embedding_dim if i == 0 else o.attention_dim,
                o.attention_dim,
                o.num_heads,
                unary=o.unary,
                residual=o.residual == "each_layer" or (last and self.last_layer_residual),
                # last_layer: W_res projects the original embeddings, passed to the last layer
                residual_dim=o.embedding_dim if last and self.last_layer_residual else None,
                relu=last and o.relu_output,
                scale=o.scale,
                relu_qkv=i == 0 and o.relu_before_attention,
                dropout=o.attention_dropout,
            )

        self.attention = nn.ModuleList(layer(i) for i in range(n))
        self.deep_wide = DeepWideLogit(fields, o)

    @property
    def representation_dim(self) -> int:
        return len(self.fields) * self.options.attention_dim

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        a = emb
        *first, last = self.attention
        for layer in first:
            a = layer(a)
        a = last(a, emb if self.last_layer_residual else None)
        logit = self.deep_wide(x, emb)
        return Representation(a.flatten(1), logit)
