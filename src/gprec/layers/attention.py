"""Self-attention over feature fields: AutoInt's multi-head attention and DESTINE's disentangled one.

Both blocks map field embeddings `(B, F, d_in)` to `(B, F, d_att)`. Heads always split the
*embedding* (channel) dimension: head `h` owns channels `h * d_head : (h + 1) * d_head` of every
field, and attends over all `F` fields. All heads run in one batched op on `(B, H, F, d_head)`
tensors; there is no Python loop over heads or fields.

References consulted:

* AutoInt: Song et al., CIKM 2019; official TF1 code shichence/AutoInt `model.py`
  (`multihead_attention`); FuxiCTR `model_zoo/AutoInt/src/AutoInt.py`.
* DESTINE: Xu et al., CIKM 2021; official code CRIPAC-DIG/DESTINE `models/DESTINE.py` and
  `layers/activation.py` (`DisentangledSelfAttention`); FuxiCTR `model_zoo/DESTINE/src/DESTINE.py`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """`(B, F, H * d_head)` -> `(B, H, F, d_head)`: head h takes channels h*d_head..(h+1)*d_head."""
    b, f, d = x.shape
    return x.view(b, f, num_heads, d // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """`(B, H, F, d_head)` -> `(B, F, H * d_head)`, the inverse of `_split_heads`."""
    b, h, f, dh = x.shape
    return x.transpose(1, 2).reshape(b, f, h * dh)


def _check_attention_args(attention_dim: int, num_heads: int, dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if num_heads < 1 or attention_dim < 1:
        raise ValueError(
            f"attention_dim and num_heads must be positive, got {attention_dim} and {num_heads}"
        )
    if attention_dim % num_heads:
        raise ValueError(
            f"attention_dim={attention_dim} is not divisible by num_heads={num_heads}: "
            "each head takes attention_dim / num_heads channels of every field"
        )


class FieldSelfAttention(nn.Module):
    """One AutoInt interacting layer: multi-head self-attention over fields.

    For field `m`, head `h`::

        a_mk^h = softmax_k(<W_Q^h e_m, W_K^h e_k> / sqrt(d_head))
        e'_m   = ReLU(concat_h sum_k a_mk^h W_V^h e_k + W_res e_m)
        e'_m   = LayerNorm(e'_m)                         (layer_norm=True)

    Input `(B, F, in_dim)`, output `(B, F, attention_dim)`; `d_head = attention_dim / num_heads`.

    Options and where they come from:

    * `scale` (default on): divide the logits by `sqrt(d_head)`, as the official TF code does.
      FuxiCTR's `use_scale` is off by default.
    * `layer_norm` (default on): the official code normalises every layer's output, *after* the
      ReLU (`normalize(relu(out))`); FuxiCTR (off by default) puts its LayerNorm before the ReLU.
      We follow the official order. Its epsilon is 1e-8; we keep torch's 1e-5, which bounds the
      gradient of a field vector the ReLU zeroed (our choice).
    * `residual` (default on): `W_res e_m` is always a learned projection, as in the paper and the
      official code, also when `in_dim == attention_dim` (FuxiCTR then adds `e_m` unprojected).
    * `relu_projections` (default off, the paper's linear projections): the official code builds
      Q, K, V and the residual with `tf.layers.dense(..., activation=relu)`, i.e. with a bias and a
      ReLU; set this to reproduce it.
    * `dropout` on the attention weights (official: `dropout_keep_prob[0]`), active only in
      training mode.

    Initialisation as the official code: `tf.layers.dense` defaults, i.e. Glorot-uniform weights
    per projection (fan-out `attention_dim`, not the fused width) and zero biases; LayerNorm
    gamma 1, beta 0.

    The projections run as one fused matmul (Q, K, V and residual stacked); `W_Q`, `W_K`, `W_V`,
    `W_res` are views of its weight. The attention itself is one
    `F.scaled_dot_product_attention` call over `(B, H, F, d_head)`.
    """

    def __init__(
        self,
        in_dim: int,
        attention_dim: int = 64,
        num_heads: int = 2,
        *,
        residual: bool = True,
        scale: bool = True,
        layer_norm: bool = True,
        relu_projections: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_attention_args(attention_dim, num_heads, dropout)
        self.in_dim = in_dim
        self.attention_dim = attention_dim
        self.num_heads = num_heads
        self.head_dim = attention_dim // num_heads
        self.residual = residual
        self.scale = scale
        self.relu_projections = relu_projections
        self.dropout = dropout
        n_proj = 4 if residual else 3
        # Q, K, V[, residual] stacked along the output: one matmul for all four projections.
        self.proj = nn.Linear(in_dim, n_proj * attention_dim, bias=relu_projections)
        self.norm = nn.LayerNorm(attention_dim) if layer_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Official init (tf.layers.dense): Glorot-uniform per projection, zero bias.
        with torch.no_grad():
            for w in self.proj.weight.split(self.attention_dim, dim=0):
                nn.init.xavier_uniform_(w)
            if self.proj.bias is not None:
                self.proj.bias.zero_()
        if self.norm is not None:
            self.norm.reset_parameters()

    def _weight(self, i: int) -> torch.Tensor:
        return self.proj.weight[i * self.attention_dim : (i + 1) * self.attention_dim]

    @property
    def W_Q(self) -> torch.Tensor:  # noqa: N802  (the paper's name)
        """`(attention_dim, in_dim)`; rows `h*d_head:(h+1)*d_head` are head h's W_Q^h."""
        return self._weight(0)

    @property
    def W_K(self) -> torch.Tensor:  # noqa: N802
        return self._weight(1)

    @property
    def W_V(self) -> torch.Tensor:  # noqa: N802
        return self._weight(2)

    @property
    def W_res(self) -> torch.Tensor | None:  # noqa: N802
        return self._weight(3) if self.residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: `(B, F, in_dim)` field embeddings -> `(B, F, attention_dim)`."""
        projected = self.proj(x)
        if self.relu_projections:
            projected = F.relu(projected)
        parts = projected.split(self.attention_dim, dim=-1)
        q, k, v = (_split_heads(p, self.num_heads) for p in parts[:3])
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            dropout_p=self.dropout if self.training else 0.0,
            scale=None if self.scale else 1.0,  # None: 1 / sqrt(d_head)
        )
        out = _merge_heads(out)
        if self.residual:
            out = out + parts[3]
        out = F.relu(out)
        if self.norm is not None:
            out = self.norm(out)
        return out


class DisentangledSelfAttention(nn.Module):
    """One DESTINE layer: disentangled self-attention over fields.

    With `q_i = W_Q x_i`, `k_j = W_K x_j`, `v_j = W_V x_j` split into heads over the embedding
    dimension, `mu_q = mean_i q_i` and `mu_k = mean_j k_j` (means over the F fields, per sample
    and head)::

        w_ij = softmax_j((q_i - mu_q) . (k_j - mu_k))  +  softmax_j(u_j)      (pairwise + unary)
        out_i = concat_h sum_j w_ij^h v_j^h  [+ W_res r_i]  [then ReLU]

    Input `(B, F, in_dim)`, output `(B, F, attention_dim)`.

    Both terms are computed, with exact algebra, from the raw scores `S_ij = q_i . k_j` (per
    sample and head) alone. Expanding,
    `(q_i - mu_q) . (k_j - mu_k) = S_ij - mu_q . k_j - q_i . mu_k + mu_q . mu_k`, where
    `mu_q . k_j = mean_i S_ij` (the mean of column j) and the last two terms do not depend on
    j, so the softmax over j ignores them (centring k only shifts each row by a constant)::

        softmax_j((q_i - mu_q) . (k_j - mu_k)) = softmax_j(S_ij - mean_i S_ij)

    and the paper's unary score `mu_q . k_j` is that same column mean `mean_i S_ij`. One
    `(F, F)` score matmul thus serves both terms, without centred copies of Q and K or a second
    matmul for the unary term. Scaling multiplies `S` first, so it applies to both alike.

    The unary term `u_j` (option `unary`):

    * `"paper"` (default): `u_j = mu_q . k_j`, the paper's unary term (after Disentangled
      Non-Local networks, Yin et al. 2020), the part of `q_i . k_j` that depends on `j` alone:
      `q_i . k_j = (q_i - mu_q).(k_j - mu_k) + mu_q . k_j + (terms constant in j)`. It reuses
      W_Q and W_K (no extra parameters) and depends on the sample through `mu_q`.
    * `"official"`: `u_j = w_u . x_j + b_u`, one learned vector per head applied to the layer's
      *input* (`W_unary = Linear(in_dim, num_heads)` in CRIPAC-DIG/DESTINE and FuxiCTR).

    `scale` divides the dot-product logits (pairwise, and the paper's unary) by `sqrt(d_head)`;
    the official code has it off by default and never scales its linear unary score.

    Residual: with `residual=True` the layer adds `W_res r_i`, where `r` is the `residual_input`
    passed to `forward` (default: this layer's own input `x`; width `residual_dim`, default
    `in_dim`). This covers both official modes: `'each_layer'` (every layer, `r = x`) and
    `'last_layer'` (the official default and our reading of the paper's residual: only the last
    layer, with `r` = the original field embeddings `e`, followed by ReLU before the output
    layer — pass `relu=True` there). `relu` applies ReLU to the layer's output.

    Pitfalls avoided:

    * Heads split the embedding dimension (`(B, F, H*d_head)` -> `(B, H, F, d_head)`). FuxiCTR's
      `view(batch * heads, -1, head_dim)` instead cuts the flattened `F * attention_dim` vector
      into chunks that mix fields across heads; it equals the official code only with 1 head.
    * Attention dropout runs in training mode only; the official `F.dropout(..., self.dropout)`
      (default `training=True`) also drops attention weights at inference.

    `relu_qkv` reproduces the official `relu_before_att` (ReLU on Q, K and V; default off).
    Initialisation as the official code: PyTorch's `nn.Linear` defaults (Kaiming-uniform with
    a=sqrt(5), uniform bias in +-1/sqrt(fan_in)), every projection with a bias. Q, K and V are
    stored stacked in one `qkv` Linear (`(3 * attention_dim, in_dim)`), initialised slice by slice
    exactly as three separate `nn.Linear`, and run as three matmuls on views of its weight and
    bias: one fused matmul split into Q, K, V measured slower, its backward concatenating a
    `(B, F, 3 * attention_dim)` gradient.
    """

    def __init__(
        self,
        in_dim: int,
        attention_dim: int = 64,
        num_heads: int = 1,
        *,
        unary: Literal["paper", "official"] = "paper",
        residual: bool = True,
        residual_dim: int | None = None,
        relu: bool = False,
        scale: bool = False,
        relu_qkv: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_attention_args(attention_dim, num_heads, dropout)
        if unary not in ("paper", "official"):
            raise ValueError(f"unary must be 'paper' or 'official', got {unary!r}")
        self.in_dim = in_dim
        self.attention_dim = attention_dim
        self.num_heads = num_heads
        self.head_dim = attention_dim // num_heads
        self.unary = unary
        self.residual = residual
        self.residual_dim = in_dim if residual_dim is None else residual_dim
        self.relu = relu
        self.scale = scale
        self.relu_qkv = relu_qkv
        self.attn_dropout = nn.Dropout(dropout) if dropout > 0 else None
        # Q, K, V stacked along the output in one parameter (run as three matmuls on its views).
        self.qkv = nn.Linear(in_dim, 3 * attention_dim)
        self.W_unary = nn.Linear(in_dim, num_heads) if unary == "official" else None
        self.W_res = nn.Linear(self.residual_dim, attention_dim) if residual else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Official init: torch.nn.Linear's defaults, applied per projection (fan-in = in_dim).
        with torch.no_grad():
            for w in self.qkv.weight.split(self.attention_dim, dim=0):
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(self.in_dim)
            nn.init.uniform_(self.qkv.bias, -bound, bound)
        for lin in (self.W_unary, self.W_res):
            if lin is not None:
                lin.reset_parameters()

    def _logit_scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim) if self.scale else 1.0

    def attention_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairwise `(B, H, F, F)` and unary `(B, H, 1, F)` weights (each a softmax over j)."""
        q, k, _ = self._qkv(x)
        return self._weights(x, q, k)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Three matmuls on views of the stacked weight: contiguous Q, K, V, and a backward that
        # sums three input gradients instead of concatenating one (B, F, 3 * A) output gradient.
        weights = self.qkv.weight.split(self.attention_dim)
        biases = self.qkv.bias.split(self.attention_dim)
        out = []
        for w, b in zip(weights, biases, strict=True):
            p = F.linear(x, w, b)
            if self.relu_qkv:
                p = F.relu(p)
            out.append(_split_heads(p, self.num_heads))
        q, k, v = out
        return q, k, v

    def _weights(
        self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.matmul(q, k.transpose(-1, -2))  # (B, H, F, F): S_ij = q_i . k_j
        s = self._logit_scale()
        if s != 1.0:
            scores = scores * s
        # mean_i S_ij = mu_q . k_j (B, H, 1, F). (q_i - mu_q).(k_j - mu_k) = S_ij - mean_i S_ij
        # plus terms constant in j, which the softmax over j ignores (see the class docstring).
        col_mean = scores.mean(dim=-2, keepdim=True)
        pairwise = torch.softmax(scores - col_mean, dim=-1)
        if self.W_unary is None:  # paper: u_j = mu_q . k_j = mean_i S_ij (already scaled)
            u = col_mean
        else:  # official: u_j = w_u . x_j + b_u, per head
            u = self.W_unary(x).transpose(1, 2).unsqueeze(2)  # (B, F, H) -> (B, H, 1, F)
        return pairwise, torch.softmax(u, dim=-1)

    def forward(self, x: torch.Tensor, residual_input: torch.Tensor | None = None) -> torch.Tensor:
        """`x`: `(B, F, in_dim)` -> `(B, F, attention_dim)`.

        `residual_input` (`(B, F, residual_dim)`, default `x`) is what `W_res` projects; pass
        the original field embeddings for the official `'last_layer'` residual.
        """
        if residual_input is not None and self.W_res is None:
            raise ValueError("residual_input given to a DisentangledSelfAttention without residual")
        q, k, v = self._qkv(x)
        pairwise, unary = self._weights(x, q, k)
        w = pairwise + unary  # (B, H, F, F): the unary row broadcasts over i
        if self.attn_dropout is not None:
            w = self.attn_dropout(w)  # nn.Dropout: identity in eval mode
        out = _merge_heads(torch.matmul(w, v))
        if self.W_res is not None:
            out = out + self.W_res(x if residual_input is None else residual_input)
        if self.relu:
            out = F.relu(out)
        return out
