"""MMoE with user groups as its tasks (Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018).

    x = flatten(E)                       the field embeddings, the MLP's input
    f_i(x), i = 1..n_experts             shared experts (MLPs)
    w^k(x) = softmax(W_gk x)             one gate per group k (linear, the paper's; or an MLP)
    h^k(x) = sum_i w^k_i(x) f_i(x)       group k's mixture
    y_b = t^{p_b}(h^{p_b}(x_b))          each sample's own group p_b: its gate, its tower

The groups play the paper's tasks (the GPRec paper's Table II baseline): the group of a
sample is the value of `partition_field` (gender by default), and index 0 ("unseen") is a
group of its own, so there are as many groups as the field has values. A sample has one
label, its own group's task: its logit is its own group's tower over its own group's mixture,
and the loss (the trainer's BCE) is on that output only.

The unseen group is untrained unless the training data has missing values. Index 0 is what
the encoder gives a value absent from the training split's vocabulary or a missing one, so
only training samples with a missing partition value reach it. On MovieLens (every user has
a gender) group 0's gate and tower get only zero gradients and keep their initial weights: a
user whose value is unseen at test is scored by an untrained gate and tower over the trained
experts, i.e. by noise. It is kept as its own group (not mapped to a trained one) because
the papers give no rule for it.

Defaults. The GPRec paper's setting where it applies: embedding 16, towers `head_units`
[64, 32, 16] then a 1-wide output (the MLP's head), ReLU, no dropout, no BatchNorm;
`dropout`, `batch_norm` and `activation` apply to the experts, the towers and MLP gates
alike. The rest from FuxiCTR's MMoE (`model_zoo/multitask/MMoE`, embedding 64), its widths
scaled by 16/64 to our embedding: `n_experts` 8 (FuxiCTR's and MTReclib's default),
`expert_units` [128, 64, 32] (FuxiCTR's [512, 256, 128] / 4; every layer of an expert is
activated, its output the last hidden layer, as in FuxiCTR and MTReclib). `gate_units` []:
the paper's linear gates; FuxiCTR's MLP gates ([128, 64] there, [32, 16] scaled) are
`gate_units: [32, 16]`.

Computation. The experts are one `ParallelMLPs` (one GEMM for all first layers, then
`baddbmm`s), the gates one GEMM for every group's logits (G * n_experts wide, cheap) of which
each sample's own row is gathered before the softmax, and the mixture is computed for the
sample's own group only. The G towers then run batched over that mixture and each sample's
own tower output is gathered: G times a tower's cost, which for the handful of groups of a
user attribute (3 for gender) is less than gathering per-sample tower weights. No loop over
experts, groups or samples.

Speed: slower than 3x the MLP, because the mechanism is the experts. Each of the 8 is an MLP
over the MLP's own input, 2.5x the MLP's arithmetic (first layer 128 wide, not 64), so a step
costs ~20x the MLP's arithmetic; the gates, the mixture and the 3 towers add little. Measured
(`benchmarks/results/user_modeling_speed.md`, ML-100K, 1 thread, quiet): 14.9x the MLP's epoch. Fewer or narrower experts (`n_experts`, `expert_units`) are the knobs.
"""

from __future__ import annotations

import torch
from pydantic import Field

from gprec.data.schema import EncodedField
from gprec.layers.experts import ParallelMLPs, own_partition
from gprec.models.base import CTRModel, ModelOutput
from gprec.models.registry import register
from gprec.models.user_modeling.group_tasks import GroupTaskOptions
from gprec.models.wrapper import partition_field_index


class MMoEOptions(GroupTaskOptions):
    n_experts: int = Field(8, ge=1, description="number of shared experts")


@register("mmoe")
class MMoE(CTRModel):
    """MMoE over the flattened field embeddings, one gate and one tower per group.

    Inspection: `gate_weights(x)` (each sample's own group's gate), `mixture(x)`.
    """

    Options = MMoEOptions
    description = "MMoE: shared experts, a gate and a tower per user group (model.partition_field)"

    def __init__(self, fields: list[EncodedField], options: MMoEOptions):
        super().__init__(fields, options)
        o = options
        self.partition_column, self.n_partitions = partition_field_index(
            fields, o.partition_field, o.max_partitions
        )
        in_dim = len(fields) * o.embedding_dim
        common = dict(activation=o.activation, dropout=o.dropout, batch_norm=o.batch_norm)
        self.experts = ParallelMLPs(in_dim, 1, o.n_experts, o.expert_units, **common)
        self.gates = ParallelMLPs(in_dim, 1, self.n_partitions, o.gate_units, o.n_experts, **common)
        self.towers = ParallelMLPs(
            o.expert_units[-1], 1, self.n_partitions, o.head_units, 1, **common
        )

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The experts' input, feature-major `(F*d, B)`, and each sample's group `(B,)`."""
        return self.embedding(x).flatten(1).t(), x[:, self.partition_column]

    def _gate(self, e: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Each sample's own group's gate weights, `(n_experts, B)`."""
        return torch.softmax(own_partition(self.gates(e), p), dim=0)

    def _mixture(self, e: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """`h^{p_b}(x_b)` `(D, B)`: the sample's own gate over the experts."""
        w = self._gate(e, p)
        return (w.unsqueeze(1) * self.experts(e)).sum(0)

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """`w^{p_b}(x_b)`, `(B, n_experts)`."""
        return self._gate(*self._inputs(x)).t()

    def mixture(self, x: torch.Tensor) -> torch.Tensor:
        """`h^{p_b}(x_b)`, `(B, expert width)`: what the sample's own tower reads."""
        return self._mixture(*self._inputs(x)).t()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        e, p = self._inputs(x)
        towers = self.towers(self._mixture(e, p))  # (G, 1, B): every group's tower
        return ModelOutput(own_partition(towers, p).view(-1))
