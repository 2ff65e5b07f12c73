"""PLE with user groups as its tasks (Tang et al., "Progressive Layered Extraction (PLE): A
Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

Level j = 1..L is a CGC (customized gate control) layer over the paths of level j-1 (all
`x = flatten(E)` at level 1, the MLP's input):

    E_{k,i}^j(g^{k,j-1})                  group k's specific experts, reading group k's path
    E_{s,i}^j(g^{s,j-1})                  shared experts, reading the shared path
    g^{k,j} = softmax(W^{k,j} g^{k,j-1}) . [E_k^j; E_s^j]        group k's gate: its own + shared
    g^{s,j} = softmax(W^{s,j} g^{s,j-1}) . [E_1^j; ...; E_G^j; E_s^j]   (j < L) shared gate: ALL
    y_b = t^{p_b}(g^{p_b,L}(x_b))         each sample's own group p_b: its path, its tower

The groups play the paper's tasks (the GPRec paper's Table II baseline): the group of a
sample is the value of `partition_field` (gender by default), index 0 ("unseen") a group of
its own. A sample has one label, its own group's task; its logit is its own group's tower
over its own group's last-level path, and the loss is on that output only. The shared gate
selects among all experts, the specific ones of every group and the shared ones, as in the
paper (FuxiCTR's covers only the shared experts); shared experts read the shared path and
group k's experts group k's path (MTReclib feeds the shared experts each task's input). The
last level has no shared gate: nothing reads it.

The unseen group is untrained unless the training data has missing values. Index 0 is what
the encoder gives a value absent from the training split's vocabulary or a missing one, so
only training samples with a missing partition value reach it. On MovieLens (every user has
a gender) group 0's last-level specific experts, its last-level gate and its tower get only
zero gradients and keep their initial weights (its lower-level experts train through the
shared gate): a user whose value is unseen at test is scored by an untrained gate and
tower, i.e. by noise. It is kept as its own group (not mapped to a trained one) because the
papers give no rule for it.

Routing. Below level L every group's path is computed for every sample, because the shared
gate mixes every group's specific experts, each over that group's own path. At level L only
the sample's own group matters: its gate row is gathered before the softmax and its own
specific experts' outputs before the mixture. So a group's specific experts at level L, its
gates and its tower get no gradient from a batch without that group; its specific experts
below level L do, through the shared gate, by the paper's design.

Defaults. The GPRec paper's setting where it applies: embedding 16, towers `head_units`
[64, 32, 16] then a 1-wide output, ReLU, no dropout, no BatchNorm; `dropout`, `batch_norm`
and `activation` apply to experts, towers and MLP gates alike. The rest from FuxiCTR's PLE
(`model_zoo/multitask/PLE`, its `model_config.yaml`, embedding 64), widths scaled by 16/64:
`n_levels` 1, `n_shared_experts` 8, `n_specific_experts` 1 per group, `expert_units`
[128, 64, 32] (FuxiCTR's [512, 256, 128] / 4; every layer activated, its output the last
hidden layer; levels above the first read the 32-wide paths). `gate_units` []: the paper's
linear gates (FuxiCTR's MLP gates, [128, 64] there, are `[32, 16]` scaled).

One level is the paper's CGC; `n_levels: 2` is its progressive extraction (DeepCTR's PLE and
FuxiCTR's README default to 2). Why 1: with these experts two levels stack 10 ReLU layers over
embeddings initialised at std 1e-4, and on MovieLens-100K (the ml-100k MLP config, measured)
that did not start learning in 6 epochs (validation AUC about 0.51, loss flat) while one level
reached 0.766 and two levels of `expert_units: [64, 32]` 0.758. Take two levels with
narrower experts (MTReclib's PLE has two levels of one-layer experts).

Computation. Per level one `ParallelMLPs` for all groups' specific experts (over one shared
input at level 1, over the per-group paths above it: one `baddbmm`), one for the shared
experts, one for every group's gate and one for the shared gate; the towers run batched over
each sample's own path and its own tower output is gathered (G times a tower's cost, G the
handful of values of a user attribute). No loop over experts, groups or samples; the loop
is over the L levels.

Speed: slower than 3x the MLP, because the mechanism is the experts: G * S + H = 11 per level
for gender, at the first level each an MLP over the MLP's own input with 2.5x its
arithmetic: ~27x the MLP's arithmetic. At the last level every group's specific experts run
over every sample and only its own group's are kept (G - 1 = 2 of the 11 wasted for gender,
less than gathering per-sample expert weights would cost). Measured (`benchmarks/results/user_modeling_speed.md`,
ML-100K, 1 thread, quiet): 20.4x the MLP's epoch with one level.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from gprec.data.schema import EncodedField
from gprec.layers.experts import ParallelMLPs, own_partition
from gprec.models.base import CTRModel, ModelOutput
from gprec.models.registry import register
from gprec.models.user_modeling.group_tasks import GroupTaskOptions
from gprec.models.wrapper import partition_field_index


class PLEOptions(GroupTaskOptions):
    n_levels: int = Field(
        1, ge=1, description="number of extraction (CGC) levels L (1: CGC, the single level)"
    )
    n_specific_experts: int = Field(1, ge=1, description="specific experts per group and level")
    n_shared_experts: int = Field(8, ge=1, description="shared experts per level")


class _Level(nn.Module):
    """One extraction level: every group's specific experts, the shared experts, every
    group's gate, and (below the last level) the shared gate."""

    def __init__(self, in_dim: int, n_groups: int, o: PLEOptions, last: bool):
        super().__init__()
        common = dict(activation=o.activation, dropout=o.dropout, batch_norm=o.batch_norm)
        s, h = o.n_specific_experts, o.n_shared_experts
        self.specific = ParallelMLPs(in_dim, n_groups, s, o.expert_units, **common)
        self.shared = ParallelMLPs(in_dim, 1, h, o.expert_units, **common)
        self.gates = ParallelMLPs(in_dim, n_groups, 1, o.gate_units, s + h, **common)
        self.shared_gate = (
            None if last else ParallelMLPs(in_dim, 1, 1, o.gate_units, n_groups * s + h, **common)
        )


@register("ple")
class PLE(CTRModel):
    """PLE over the flattened field embeddings, per-group specific experts, gates and towers.

    Inspection: `gate_weights(x)` (per level: every group's gates and the shared gate, and at
    the last level each sample's own group's gate), `path(x)`.
    """

    Options = PLEOptions
    description = (
        "PLE: per-group and shared experts in extraction levels, a tower per user group "
        "(model.partition_field)"
    )

    def __init__(self, fields: list[EncodedField], options: PLEOptions):
        super().__init__(fields, options)
        o = options
        self.partition_column, self.n_partitions = partition_field_index(
            fields, o.partition_field, o.max_partitions
        )
        G, width = self.n_partitions, o.expert_units[-1]
        in_dims = [len(fields) * o.embedding_dim] + [width] * (o.n_levels - 1)
        self.levels = nn.ModuleList(
            _Level(d, G, o, last=j == o.n_levels - 1) for j, d in enumerate(in_dims)
        )
        common = dict(activation=o.activation, dropout=o.dropout, batch_norm=o.batch_norm)
        self.towers = ParallelMLPs(width, 1, G, o.head_units, 1, **common)
        self.n_specific = o.n_specific_experts

    def _run(self, x: torch.Tensor, gates: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's own last-level path `(D, B)` and its group `(B,)`; the gate weights
        of each level appended to `gates` when given."""
        p = x[:, self.partition_column]
        e = self.embedding(x).flatten(1).t()  # (F*d, B), feature-major
        groups, shared = e, e  # level 1: every path is x
        G, S, B = self.n_partitions, self.n_specific, x.shape[0]
        for level in self.levels[:-1]:
            spec = level.specific(groups)  # (G*S, D, B), group k's experts over group k's path
            common = level.shared(shared)  # (H, D, B)
            w = torch.softmax(level.gates(groups), dim=1)  # (G, S+H, B)
            ws = torch.softmax(level.shared_gate(shared).squeeze(0), dim=0)  # (G*S+H, B)
            # g^{k,j}: group k's gate over its own experts and the shared ones.
            # (Broadcast products and sums: an einsum here becomes a bmm batched over
            # groups x samples of tiny matrices, ten times slower on CPU.)
            spec_k = spec.view(G, S, -1, B)
            groups = (w[:, :S].unsqueeze(2) * spec_k).sum(1) + (w[:, S:].unsqueeze(2) * common).sum(
                1
            )
            # g^{s,j}: the shared gate over ALL experts, every group's and the shared.
            shared = (ws[: G * S].unsqueeze(1) * spec).sum(0) + (
                ws[G * S :].unsqueeze(1) * common
            ).sum(0)
            if gates is not None:
                gates.append({"groups": w, "shared": ws})
        last = self.levels[-1]
        # Only the sample's own group from here: its gate row, its specific experts.
        own_spec = own_partition(last.specific(groups).view(G, S, -1, B), p)  # (S, D, B)
        common = last.shared(shared)
        w = torch.softmax(own_partition(last.gates(groups), p), dim=0)  # (S+H, B)
        if gates is not None:
            gates.append({"own": w})
        path = (w[:S].unsqueeze(1) * own_spec).sum(0) + (w[S:].unsqueeze(1) * common).sum(0)
        return path, p

    def gate_weights(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per level, feature-major: below the last, `groups` `(G, S+H, B)` (every group's
        gate) and `shared` `(G*S+H, B)` (over group 0's S experts, ..., group G-1's, then
        the shared ones); at the last, `own` `(S+H, B)`, each sample's own group's gate."""
        gates: list = []
        self._run(x, gates)
        return gates

    def path(self, x: torch.Tensor) -> torch.Tensor:
        """`g^{p_b,L}(x_b)`, `(B, expert width)`: what the sample's own tower reads."""
        return self._run(x)[0].t()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        path, p = self._run(x)
        return ModelOutput(own_partition(self.towers(path), p).view(-1))
