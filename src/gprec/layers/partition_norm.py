"""Partitioned normalisation (STAR's PN, Sheng et al., CIKM 2021): BatchNorm whose statistics
and affine parameters are kept per partition, for batches that mix partitions.

    z' = (gamma * gamma_p) (z - mu_p) / sqrt(var_p + eps) + (beta + beta_p)

`p` is each sample's partition. In training `mu_p`, `var_p` are the (biased) mean and variance
of the batch's samples of partition `p`, all partitions in one batched computation (one-hot
sums, no loop over partitions), and each partition's running statistics move towards them
with `momentum`, as BatchNorm's do (`running = (1 - momentum) running + momentum batch`, the
variance unbiased). In evaluation each sample is normalised with its partition's running
statistics. The paper's batches hold one domain each, so plain batch statistics are that
domain's; ours mix partitions, hence the masking.

Edge cases (our choices; the paper's one-domain batches never meet them):
- a partition absent from a batch keeps its running statistics unchanged;
- a partition with a single sample in a batch normalises that sample to `beta + beta_p`
  (its batch variance is 0) and updates its running mean but not its running variance,
  which one sample cannot estimate;
- a partition never seen in training is normalised at test with the initial statistics
  (mean 0, variance 1), i.e. only the affine map applies, as an untrained BatchNorm would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def partition_moments(
    z: torch.Tensor, part: torch.Tensor, n_partitions: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-partition statistics of the rows of `z` `(B, D)`, `part` `(B,)` naming each row's
    partition: `(mean (P, D), biased variance (P, D), count (P,), centered (B, D))`, where
    `centered` is each row minus its partition's mean; an absent partition gets zeros.

    Two passes (the mean, then the mean squared deviation from it), as stable as BatchNorm's;
    the sums over each partition's rows are one `(P, B) @ (B, D)` product with the one-hot
    partition matrix.
    """
    onehot = F.one_hot(part, n_partitions).to(z.dtype).t()  # (P, B)
    count = onehot.sum(1)
    n = count.clamp(min=1).unsqueeze(1)
    mean = (onehot @ z) / n
    centered = z - mean.index_select(0, part)
    var = (onehot @ centered.square()) / n
    return mean, var, count, centered


class _PartitionBatchNorm(torch.autograd.Function):
    """Training-mode PN, `z' = (z - mu_p) * a_p / sqrt(var_p + eps) + c_p`, with `a` = gamma *
    gamma_p and `c` = beta + beta_p given per partition `(P, D)`.

    Its backward is BatchNorm's closed form applied per partition, a handful of (B, D) passes
    where autograd through the forward's ops takes about three times as many (PN would
    otherwise cost several BatchNorms). `tests/test_star.py` checks it against autograd on the
    plain formula and with `gradcheck`.
    """

    @staticmethod
    def forward(ctx, z, part, a, c, n_partitions: int, eps: float):
        mean, var, count, centered = partition_moments(z, part, n_partitions)
        rstd = torch.rsqrt(var + eps)
        scale = a * rstd
        out = torch.addcmul(c.index_select(0, part), centered, scale.index_select(0, part))
        ctx.n_partitions = n_partitions
        ctx.save_for_backward(part, centered, rstd, a, count)
        ctx.mark_non_differentiable(mean, var, count)
        return out, mean, var, count

    @staticmethod
    @once_differentiable
    def backward(ctx, g, _mean, _var, _count):
        part, centered, rstd, a, count = ctx.saved_tensors
        onehot = F.one_hot(part, ctx.n_partitions).to(g.dtype).t()  # (P, B)
        n = count.clamp(min=1).unsqueeze(1)
        sum_g = onehot @ g  # (P, D): the gradient of c
        sum_gc = onehot @ (g * centered)
        grad_a = sum_gc * rstd
        grad_z = None
        if ctx.needs_input_grad[0]:
            # BatchNorm's: a rstd (g - mean_p(g)) - centered a rstd^3 mean_p(g centered)
            scale = a * rstd
            grad_z = torch.addcmul(
                (-scale * sum_g / n).index_select(0, part), g, scale.index_select(0, part)
            )
            grad_z.addcmul_(
                centered, (scale * rstd.square() * sum_gc / n).index_select(0, part), value=-1
            )
        return grad_z, None, grad_a, sum_g, None, None


class PartitionedNorm(nn.Module):
    """`(B, D)` features and `(B,)` partitions in `[0, n_partitions)` -> `(B, D)`.

    Shared `weight` (gamma, init 1) and `bias` (beta, init 0) of shape `(D,)`; per-partition
    `partition_weight` (gamma_p, init 1) and `partition_bias` (beta_p, init 0) of shape `(P, D)`,
    so at init the affine map is the identity and the layer is plain per-partition
    standardisation. Buffers `running_mean` `(P, D)` (init 0), `running_var` `(P, D)` (init 1)
    and `batches_tracked` `(P,)`, the number of training batches each partition was in.
    """

    def __init__(
        self, dim: int, n_partitions: int, eps: float = 1e-5, momentum: float = 0.1
    ) -> None:
        super().__init__()
        if n_partitions < 1:
            raise ValueError(f"n_partitions must be at least 1, got {n_partitions}")
        self.dim, self.n_partitions, self.eps, self.momentum = dim, n_partitions, eps, momentum
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.partition_weight = nn.Parameter(torch.ones(n_partitions, dim))
        self.partition_bias = nn.Parameter(torch.zeros(n_partitions, dim))
        self.register_buffer("running_mean", torch.zeros(n_partitions, dim))
        self.register_buffer("running_var", torch.ones(n_partitions, dim))
        self.register_buffer("batches_tracked", torch.zeros(n_partitions, dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"{self.dim}, n_partitions={self.n_partitions}, eps={self.eps}, "
            f"momentum={self.momentum}"
        )

    def forward(self, z: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        # The affine parameters and statistics stay per partition, (P, D); each sample gathers
        # its partition's scale and shift once, and z' is one fused (B, D) multiply-add.
        a = self.weight * self.partition_weight
        c = self.bias + self.partition_bias
        if not self.training:
            scale = a * torch.rsqrt(self.running_var + self.eps)
            shift = c - self.running_mean * scale
            return torch.addcmul(shift.index_select(0, part), z, scale.index_select(0, part))
        # Statistics in at least float32 even under autocast, as BatchNorm's are.
        dtype = torch.promote_types(z.dtype, torch.float32)
        with torch.autocast(z.device.type, enabled=False):
            out, mean, var, count = _PartitionBatchNorm.apply(
                z.to(dtype), part, a.to(dtype), c.to(dtype), self.n_partitions, self.eps
            )
        self._update_running(mean, var, count)
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        m = self.momentum
        present = (count > 0).unsqueeze(1)
        several = (count > 1).unsqueeze(1)
        unbiased = var * (count / (count - 1).clamp(min=1)).unsqueeze(1)
        self.running_mean.copy_(
            torch.where(present, (1 - m) * self.running_mean + m * mean, self.running_mean)
        )
        self.running_var.copy_(
            torch.where(several, (1 - m) * self.running_var + m * unbiased, self.running_var)
        )
        self.batches_tracked.add_((count > 0).long())
