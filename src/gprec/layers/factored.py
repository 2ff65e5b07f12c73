"""Factored representations: wide vectors that are only ever read by linear layers and a cosine.

GPRec's `r_G` (G*d = 960 wide) and `r_P` (the same width) are only read by the
first linear layer of some MLP and by the cosine of the orthogonal loss, so they
are kept *factored* and never materialised in training:

- `r_G = flat(A + m (x) D)` (`GroupRep`), so `r_G W^T = (flat(A) W^T) + m @ Q` with
  `Q_g = W_g D_g`: a (B, G) x (G, h) product instead of (B, G*d) x (G*d, h), 16x
  fewer FLOPs at d = 16;
- `r_P = W_2 h + b_2` (`PersonalRep`, the last layer of an MLP), so
  `r_P W^T = h (W W_2)^T + W b_2`;
- the cosine of the two uses the same expansions.

`factored_linear(weight, bias, parts)` is `F.linear(cat(dense parts), weight, bias)` with one
column block of `weight` per part; `MLP.forward_parts` uses it for its first layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise cosine; written out: F.cosine_similarity's backward is ~3x the passes."""
    dot = (a * b).sum(1)
    return dot / (
        torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    ).clamp_min(eps)


def orthogonal_loss(r_g: torch.Tensor, r_p: torch.Tensor, mode: str = "abs") -> torch.Tensor:
    """docs/gprec.md §4.2: mean over the batch of `|cos(r_G, r_P)|` (`abs`) or `cos(r_G, r_P)` (`signed`)."""
    return reduce_cosine(cosine(r_g, r_p), mode)


def reduce_cosine(cos: torch.Tensor, mode: str) -> torch.Tensor:
    return (cos.abs() if mode == "abs" else cos).mean()


@dataclass
class GroupRep:
    """`r_G` kept factored: `flat_i(A_i + m_i D_i)` (concat) or `sum_i (A_i + m_i D_i)` (sum).

    `m` is `(B, G)`; `A` (None: zero) and `D` are `(G, d)`. Dual embeddings:
    `A = n, D = p - n`; swapped masks (`r_G^con`): `A = p, D = n - p`;
    single embeddings: `A = None, D = p`, `m` the softmax weights.
    """

    m: torch.Tensor
    A: torch.Tensor | None
    D: torch.Tensor
    concat: bool

    @property
    def width(self) -> int:
        return self.D.numel() if self.concat else self.D.shape[1]

    def dense(self) -> torch.Tensor:
        if self.concat:
            mD = self.m.unsqueeze(-1) * self.D
            return (mD if self.A is None else mD + self.A).flatten(1)
        r = self.m @ self.D
        return r if self.A is None else r + self.A.sum(0)

    def linear(self, weight: torch.Tensor) -> torch.Tensor:
        """`dense() @ weight.T` for `weight` `(h, width)`, without building `dense()`."""
        if self.concat:
            w3 = weight.unflatten(1, self.D.shape)  # (h, G, d); a view even of a column slice
            q = torch.einsum("hgd,gd->gh", w3, self.D)
            const = None if self.A is None else torch.einsum("hgd,gd->h", w3, self.A)
        else:
            q = self.D @ weight.t()
            const = None if self.A is None else self.A.sum(0) @ weight.t()
        return self.m @ q if const is None else torch.addmm(const, self.m, q)

    def cosine(self, r_p: torch.Tensor | PersonalRep, eps: float = 1e-8) -> torch.Tensor:
        """Row-wise `cos(dense(), r_p)`, building neither `dense()` nor a factored `r_p`.

        With concat, `dense() . r_p = sum_i m_i (D_i . r_p,i) + A . r_p` and
        `|dense()|^2 = sum_i |A_i + m_i D_i|^2` expand into (B, G) products.
        """
        if not self.concat:  # d wide: nothing to save
            dense_p = r_p if isinstance(r_p, torch.Tensor) else r_p.dense()
            return cosine(self.dense(), dense_p, eps)
        m, A, D = self.m, self.A, self.D
        if isinstance(r_p, PersonalRep):
            dot = (m * r_p.block_dots(D)).sum(1)
            if A is not None:
                dot = dot + r_p.dot(A.flatten())
            norm_p = r_p.squared_norm().clamp_min(0).sqrt()
        else:
            dot = (m * (r_p.unflatten(1, D.shape) * D).sum(-1)).sum(1)
            if A is not None:
                dot = dot + r_p @ A.flatten()
            norm_p = torch.linalg.vector_norm(r_p, dim=1)
        sq = m.square() @ D.square().sum(1)  # sum_i |A_i + m_i D_i|^2, expanded
        if A is not None:
            sq = sq + 2 * (m @ (A * D).sum(1)) + A.square().sum()
        norm_g = sq.clamp_min(eps * eps).sqrt()
        return dot / (norm_g * norm_p).clamp_min(eps)


@dataclass
class PersonalRep:
    """`r_P = layer(hidden)`, kept factored through f_2's last linear layer."""

    hidden: torch.Tensor
    layer: nn.Linear

    @property
    def width(self) -> int:
        return self.layer.out_features

    def dense(self) -> torch.Tensor:
        return self.layer(self.hidden)

    def linear(self, weight: torch.Tensor) -> torch.Tensor:
        """`dense() @ weight.T` as `hidden @ (weight W_2)^T + weight b_2`."""
        return F.linear(self.hidden, weight @ self.layer.weight, weight @ self.layer.bias)

    def block_dots(self, blocks: torch.Tensor) -> torch.Tensor:
        """`(B, G)`: `r_P`'s i-th d-wide block dotted with `blocks[i]` (`(G, d)`)."""
        w3 = self.layer.weight.unflatten(0, blocks.shape)  # (G, d, hidden)
        u = torch.einsum("gdk,gd->gk", w3, blocks)
        c = (self.layer.bias.view(blocks.shape) * blocks).sum(1)
        return torch.addmm(c, self.hidden, u.t())

    def dot(self, v: torch.Tensor) -> torch.Tensor:
        """`(B,)`: `r_P . v`."""
        return self.hidden @ (self.layer.weight.t() @ v) + self.layer.bias @ v

    def squared_norm(self) -> torch.Tensor:
        """`(B,)`: `|r_P|^2 = h W^T W h + 2 b W h + |b|^2`, from the hidden layer."""
        w, b, h = self.layer.weight, self.layer.bias, self.hidden
        quad = ((h @ (w.t() @ w)) * h).sum(1)
        return quad + 2 * (h @ (w.t() @ b)) + b.square().sum()


@dataclass
class ScaledPart:
    """`scale * part` for a linear layer: `linear(w) = scale * (part w^T)`, `part` dense or
    factored (nothing is built). GPRec's `input_scale: zero` feeds r_G and r_P through a learnable
    scale that starts at 0, so the head first trains exactly as the bare backbone would."""

    part: torch.Tensor | GroupRep | PersonalRep
    scale: torch.Tensor  # 0-d

    @property
    def width(self) -> int:
        return self.part.shape[1] if isinstance(self.part, torch.Tensor) else self.part.width

    def linear(self, weight: torch.Tensor) -> torch.Tensor:
        part = self.part
        z = F.linear(part, weight) if isinstance(part, torch.Tensor) else part.linear(weight)
        return self.scale * z

    def dense(self) -> torch.Tensor:
        part = self.part
        return self.scale * (part if isinstance(part, torch.Tensor) else part.dense())


Part = torch.Tensor | GroupRep | PersonalRep | ScaledPart


def factored_linear(
    weight: torch.Tensor, bias: torch.Tensor | None, parts: list[Part]
) -> torch.Tensor:
    """`F.linear(cat(dense parts), weight, bias)`, one column block per part, nothing concatenated."""
    out, col = None, 0
    for part in parts:
        width = part.shape[1] if isinstance(part, torch.Tensor) else part.width
        w = weight[:, col : col + width]
        z = F.linear(part, w) if isinstance(part, torch.Tensor) else part.linear(w)
        out, col = (z if out is None else out + z), col + width
    if col != weight.shape[1]:
        raise ValueError(f"parts are {col} wide, the layer takes {weight.shape[1]}")
    return out if bias is None else out + bias
