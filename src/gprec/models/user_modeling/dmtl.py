"""DMTL: joint group profiling and recommendation by multi-task learning (Le and Abel,
"Joint Group Profiling and Recommendation via Deep Neural Network-based Multi-Task
Learning", arXiv 2504.06274; no code is public: this follows the paper's equations, restated
below).

    h_u = towers_u(E_user)                    dense layers over the user fields' embeddings
    h_i = towers_i(E_item)                    dense layers over the item fields' embeddings
    alpha = softmax(W_a [h_u; h_i] + b_a)     attention over h_i's dimensions
    h_attn = alpha * h_i                      the item representation re-weighted by the user
    z_g = ReLU(W_s [h_u; h_attn] + b_s)       the shared layer: the group profile
    y = f_rec(z_g)                            the main output (the task's raw output)
    p = f_profile(z_g)                        G-way group logits
    L = L_rec + lambda_profile * CE(p, group) (the trainer adds L_rec; `aux_losses["profile"]`)

Why: the paper's claim is that making the shared layer z_g identify the user's group (who)
while it predicts the rating (what) regularises the recommender and gives a group profile;
`lambda_profile = 0` is the same network as a plain recommender, the control of that claim.

The group label. Each sample's group is the value of the user field `group_field` ("group"
by default: `data.user_groups` adds it, each row's KMeans cluster 1..G; KMeans assigns every
row a cluster, so 0 (a field's "unseen" index) occurs only with groups from elsewhere). The profiling head has one logit per value of that field, index 0
included (so `group_logits(x)[:, 0]` is the unseen class); class 0 is never a target
(`ignore_index=0`), and the loss is the mean over the batch's samples with a known group (0
when none has one, instead of cross_entropy's NaN). The group field is NOT an input of h_u:
a network that reads the group it must classify learns to copy it, the profiling loss goes to
0 and teaches z_g nothing. Every other user and personal field (the user id included) feeds
h_u; item and context fields feed h_i (context fields describe the interaction, not the user,
and the user side should depend on the user alone). With `train.task: implicit` the trainer's
sampled negatives are the user's row with another item, so they carry the user's group and
count in the profiling loss like the positive: z_g depends on the item too.

`lambda_profile = 0`: no profiling loss is computed and the profiling head is frozen
(`requires_grad` False), so it gets no gradient, is not counted as trained, and optimisers
and DDP never see a parameter without a gradient; `group_logits` still runs (untrained).

Defaults. The paper states the structure, not the widths: embedding 16 (the GPRec paper's,
as every gprec model), `user_units` and `item_units` [64, 32] (two ReLU layers each; h_u
and h_i 32 wide, the attention then 32-way), `shared_dim` 32 (z_g), `head_units` [16] (the
recommendation head's hidden layer before its 1-wide output), `profile_units` [] (a linear
softmax classifier over z_g, the profile read directly), ReLU (the paper's, for every hidden
layer including z_g), no dropout, no BatchNorm: ours. `lambda_profile` 1.0: the paper does
not give its value in the summary we have; 1.0 weighs both losses alike. `head_units`,
`dropout`, `batch_norm` and `activation` keep the MLP's names, so a dataset config's MLP
section switched by `--set model.name=dmtl` configures the recommendation head.

Computation: one embedding lookup, then small GEMMs (each tower's layers, the attention, z_g,
each head's layers) and one softmax per batch; no loop over samples or groups. The profiling
head runs only in training with lambda_profile > 0 (and in `group_logits`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from gprec.data.schema import EncodedField, Role, fields_of_role
from gprec.errors import ConfigError
from gprec.layers.mlp import MLP
from gprec.models.base import Activation, BackboneOptions, CTRModel, ModelOutput, Width
from gprec.models.registry import register
from gprec.models.wrapper import user_field_index


class DMTLOptions(BackboneOptions):
    group_field: str = Field(
        "group",
        description="the user field holding each sample's group (1..G, 0 unseen: never a "
        "target), the profiling head's label; it is not an input of the model",
    )
    lambda_profile: float = Field(
        1.0,
        ge=0,
        description="weight of the profiling cross-entropy in the loss (0: a plain "
        "recommender, the profiling head frozen)",
    )
    user_units: list[Width] = Field(
        [64, 32],
        min_length=1,
        description="widths of the user tower's layers, all activated (the last is h_u)",
    )
    item_units: list[Width] = Field(
        [64, 32],
        min_length=1,
        description="widths of the item tower's layers, all activated (the last is h_i, "
        "the attention's width)",
    )
    shared_dim: Width = Field(32, description="width of the shared layer z_g, the group profile")
    head_units: list[Width] = Field(
        [16],
        description="hidden widths of the recommendation head over z_g (a 1-wide output follows)",
    )
    profile_units: list[Width] = Field(
        [],
        description="hidden widths of the profiling head over z_g before its group logits "
        "([]: linear)",
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout rate after each hidden layer (towers, z_g, heads)"
    )
    batch_norm: bool = Field(
        False,
        description="BatchNorm after each hidden linear layer (towers, z_g, heads), before "
        "its activation",
    )
    activation: Activation = Field(
        "relu",
        description="activation of every hidden layer (towers, z_g, heads; the paper's ReLU)",
    )
    dot_head: bool = Field(
        False,
        description="ours, not the paper's: add <W h_u, h_i> to the recommendation output (a "
        "learned dot product of the two towers beside the MLP head)",
    )


@register("dmtl")
class DMTL(CTRModel):
    """DMTL: user and item towers, attention over the item representation, a shared group
    profile z_g, a recommendation head and a group-profiling head.

    Inspection: `profile(x)` (z_g), `attention(x)` (alpha), `group_logits(x)`.
    """

    Options = DMTLOptions
    description = (
        "DMTL: shared group profile z_g with a recommendation head and a group-profiling head "
        "(model.group_field, model.lambda_profile)"
    )
    tasks = ("binary", "regression", "implicit")

    def __init__(self, fields: list[EncodedField], options: DMTLOptions):
        super().__init__(fields, options)
        o = options
        self.group_column = user_field_index(
            fields,
            o.group_field,
            "model.group_field",
            "DMTL needs a user field holding each user's group (KMeans clusters or real groups); ",
        )
        self.n_groups = fields[self.group_column].cardinality
        users = fields_of_role(fields, Role.PERSONAL, Role.USER)
        users.remove(self.group_column)
        items = fields_of_role(fields, Role.ITEM, Role.CONTEXT)
        if not users or not items:
            side = "user field besides the group field" if not users else "item field"
            raise ConfigError(
                f"model.name: DMTL needs at least one {side} "
                f"('{o.group_field}' is its label, not an input); this data's fields: "
                f"{', '.join(f.name for f in fields)}"
            )
        self.register_buffer("user_index", torch.tensor(users), persistent=False)
        self.register_buffer("item_index", torch.tensor(items), persistent=False)
        d = o.embedding_dim
        common = dict(dropout=o.dropout, activation=o.activation, batch_norm=o.batch_norm)
        self.user_tower = MLP(len(users) * d, o.user_units, **common)
        self.item_tower = MLP(len(items) * d, o.item_units, **common)
        u_dim, i_dim = o.user_units[-1], o.item_units[-1]
        self.attention_layer = nn.Linear(u_dim + i_dim, i_dim)
        self.shared = MLP(u_dim + i_dim, [o.shared_dim], **common)
        self.rec_head = MLP(o.shared_dim, o.head_units, 1, **common)
        self.profile_head = MLP(o.shared_dim, o.profile_units, self.n_groups, **common)
        if o.lambda_profile == 0:
            self.profile_head.requires_grad_(False)
        self.dot = nn.Linear(u_dim, i_dim, bias=False) if o.dot_head else None

    def _towers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`h_u` `(B, user width)` and `h_i` `(B, item width)`, from one embedding lookup."""
        emb = self.embedding(x)
        return self._user(emb), self._item(emb)

    def _user(self, emb: torch.Tensor) -> torch.Tensor:
        return self.user_tower(emb.index_select(1, self.user_index).flatten(1))

    def _item(self, emb: torch.Tensor) -> torch.Tensor:
        return self.item_tower(emb.index_select(1, self.item_index).flatten(1))

    def _attention(self, h_u: torch.Tensor, h_i: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.attention_layer(torch.cat([h_u, h_i], 1)), dim=-1)

    def _shared(self, h_u: torch.Tensor, h_i: torch.Tensor) -> torch.Tensor:
        h_attn = self._attention(h_u, h_i) * h_i
        return self.shared(torch.cat([h_u, h_attn], 1))

    def _profile(self, x: torch.Tensor) -> torch.Tensor:
        return self._shared(*self._towers(x))

    def _dot(self, h_u: torch.Tensor, h_i: torch.Tensor) -> torch.Tensor | None:
        return None if self.dot is None else (self.dot(h_u) * h_i).sum(-1)

    def user_representation(self, x: torch.Tensor) -> torch.Tensor:
        """`h_u` `(B, user width)` from the rows' user fields only (the group field and the
        item and context fields of `x` are not read)."""
        return self._user(self.embedding(x))

    def forward_from_user(self, h_u: torch.Tensor, x: torch.Tensor) -> ModelOutput:
        """The model's output for a given user-side representation `h_u` `(B, user width)`
        paired with the item (and context) fields of `x`: how a group is scored from its
        members' mean `h_u` (its profile built from its members, `gprec.groups`). The
        profiling loss, in training, classifies into the group field of `x`."""
        h_i = self._item(self.embedding(x))
        return self._output(self._shared(h_u, h_i), x, self._dot(h_u, h_i))

    def profile(self, x: torch.Tensor) -> torch.Tensor:
        """`z_g` `(B, shared_dim)`, the group profile of each (user, item) sample."""
        return self._profile(x)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """`alpha` `(B, item width)`: each row sums to 1."""
        return self._attention(*self._towers(x))

    def group_logits(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, G)` logits over the group field's values; column 0 is the unseen class, never
        a target (a predicted group is the argmax over columns 1..G-1)."""
        return self.profile_head(self._profile(x))

    def profile_loss(self, logits: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the samples with a known group (0 when there is none)."""
        known = (group != 0).sum().clamp(min=1)
        return F.cross_entropy(logits, group, ignore_index=0, reduction="sum") / known

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        h_u, h_i = self._towers(x)
        return self._output(self._shared(h_u, h_i), x, self._dot(h_u, h_i))

    def _output(self, z: torch.Tensor, x: torch.Tensor, dot: torch.Tensor | None) -> ModelOutput:
        y = self.rec_head(z).squeeze(-1)
        out = ModelOutput(y if dot is None else y + dot)
        lam = self.options.lambda_profile
        if self.training and lam > 0:
            logits = self.profile_head(z).float()
            out.aux_losses["profile"] = lam * self.profile_loss(logits, x[:, self.group_column])
        return out
