"""GPRec's three ways of joining the backbone (docs/gprec.md §5), one small object each.

A strategy gets the backbone's `Representation` and the user-level parts
(`r_G`, and `r_P` unless ablated, possibly factored) and returns the logit,
plus the backbone's own logit when it computed it anyway (the ensemble does;
`backbone_aux_loss` reuses it). It talks to the backbone only through the
backbone contract: `make_head`, `predict`, its head's `layer_shapes`.

- `input`: a head of its own over `[r_b, r_G, r_P]` (the backbone's head is unused);
- `dynamic`: f_DP maps `[r_G, r_P]` to low-rank per-sample deltas of the backbone head's
  weights;
- `ensemble`: the backbone's prediction averaged, as a probability, with heads over r_G and r_P.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gprec.errors import ConfigError
from gprec.layers.factored import Part
from gprec.layers.mlp import MLP, LayerMod
from gprec.models.base import Backbone, Representation


def logit_of_mean_probability(logits: list[torch.Tensor]) -> torch.Tensor:
    """`logit(mean_k sigmoid(z_k))`, computed in log space (no clamping, no dead gradients)."""
    z = torch.stack(logits, 0)
    return torch.logsumexp(F.logsigmoid(z), 0) - torch.logsumexp(F.logsigmoid(-z), 0)


class Strategy(nn.Module):
    # Whether the backbone's own head is called; when not, GPRec builds the backbone without it
    # (parameters that never get a gradient would be counted and would break DDP).
    uses_backbone_head: ClassVar[bool] = True

    def forward(
        self, backbone: Backbone, rep: Representation, user: list[Part]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start_from_backbone(self, head_state: dict[str, torch.Tensor]) -> None:
        """Make the strategy predict exactly what the trained backbone does (`init_from`), given
        the state of the backbone's own trained head; the backbone itself is loaded already."""
        raise ConfigError(
            f"strategy '{self.name}' cannot start from a trained backbone (init_from): its "
            "prediction is not the backbone's at any setting of its new weights; use input or "
            "dynamic"
        )


def zero_extended(
    head: nn.Module, trained: dict[str, torch.Tensor], first_weight: str
) -> dict[str, torch.Tensor]:
    """`trained` (a head's state over `r_b`) as a state for `head`, whose first layer
    `first_weight` takes extra input columns after r_b's: those columns are 0, so `head` over
    `[r_b, anything]` computes the trained head over `r_b`. Every other tensor must match."""
    own = head.state_dict()
    if set(own) != set(trained):
        raise ConfigError(
            "init_from: the backbone's own head is not the MLP this strategy builds "
            f"(parameters {sorted(set(trained) ^ set(own))[:3]} differ); use strategy dynamic"
        )
    out = {}
    for k, mine in own.items():
        t = trained[k]
        if k == first_weight and mine.shape[0] == t.shape[0] and mine.shape[1] >= t.shape[1]:
            w = torch.zeros_like(mine)
            w[:, : t.shape[1]] = t
            out[k] = w
        elif mine.shape == t.shape:
            out[k] = t.clone()
        else:
            raise ConfigError(
                f"init_from: the backbone head's {k} is {tuple(t.shape)}, this strategy's head "
                f"takes {tuple(mine.shape)}"
            )
    return out


class InputStrategy(Strategy):
    uses_backbone_head = False
    name = "input"

    def __init__(self, backbone: Backbone, group_dim: int, personal_dim: int, options):
        super().__init__()
        self.head = backbone.make_head(backbone.representation_dim + group_dim + personal_dim)

    def forward(self, backbone, rep, user):
        logit = self.head.forward_parts([rep.r, *user]).squeeze(-1)
        return (logit if rep.logit is None else logit + rep.logit), None

    def start_from_backbone(self, head_state):
        # The head reads [r_b, r_G, r_P]: the trained head's weights on r_b, zeros on the rest.
        self.head.load_state_dict(zero_extended(self.head, head_state, "linears.0.weight"))


class DynamicStrategy(Strategy):
    name = "dynamic"

    def __init__(self, backbone: Backbone, group_dim: int, personal_dim: int, options):
        super().__init__()
        r = self.rank = options.dynamic_rank
        self.shapes: list[tuple[int, int]] = list(backbone.head.layer_shapes)
        self.sizes = [n for a, b in self.shapes for n in (a * r, r * b)]
        self.f_dp = MLP(group_dim + personal_dim, options.dynamic_units, sum(self.sizes))
        # Deltas are U V per layer. Zero the rows that emit V, so every delta starts at 0 (the
        # model starts as the backbone) while U stays random: zeroing both factors would also
        # zero both their gradients forever.
        last = self.f_dp.output_layer
        with torch.no_grad():
            start = 0
            for k, n in enumerate(self.sizes):
                if k % 2 == 1:
                    last.weight[start : start + n].zero_()
                    last.bias[start : start + n].zero_()
                start += n

    def deltas(self, z: torch.Tensor) -> list[LayerMod | None]:
        """f_DP's output `(B, sum sizes)` as one low-rank delta `(U, V)` per head layer."""
        r, b = self.rank, z.shape[0]
        parts = torch.split(z, self.sizes, dim=1)
        return [
            LayerMod(delta=(parts[2 * k].view(b, a, r), parts[2 * k + 1].view(b, r, o)))
            for k, (a, o) in enumerate(self.shapes)
        ]

    def forward(self, backbone, rep, user):
        return backbone.predict(rep, self.deltas(self.f_dp.forward_parts(user))), None

    def start_from_backbone(self, head_state):
        # The backbone's head is the trained one, loaded with the backbone; every delta U V
        # starts at 0 (V's rows of f_DP are zeroed at construction), so nothing else to do.
        return None


class EnsembleStrategy(Strategy):
    name = "ensemble"

    def __init__(self, backbone: Backbone, group_dim: int, personal_dim: int, options):
        super().__init__()
        self.group_head = backbone.make_head(group_dim)
        self.personal_head = backbone.make_head(personal_dim) if personal_dim else None

    def forward(self, backbone, rep, user):
        backbone_logit = backbone.predict(rep)
        logits = [backbone_logit, self.group_head.forward_parts(user[:1]).squeeze(-1)]
        if self.personal_head is not None:  # user = [r_G, r_P]
            logits.append(self.personal_head.forward_parts(user[1:]).squeeze(-1))
        return logit_of_mean_probability(logits), backbone_logit


STRATEGIES: dict[str, type[Strategy]] = {
    "input": InputStrategy,
    "dynamic": DynamicStrategy,
    "ensemble": EnsembleStrategy,
}
