"""GPRec: bi-level (group + individual) user modeling around any backbone (docs/gprec.md §3-§7).

    E = embedding(x)                       the backbone's own table, shared
    r_b = backbone.represent(E)            the backbone's path, untouched
    S = g(E_u)                             G classifiers, (B, G, 2)
    m1 = gumbel_pair_masks(S, tau)         noise only while training; m0 = 1 - m1
    r_G = [m1_i p_i + m0_i n_i]_i          concat (G*d) or sum (d)
    r_P = f_2(E_p)                         width of r_G
    y = strategy(r_b, r_G, r_P)            input | dynamic | ensemble
    L = L_major + l1 L_G - l2 L_con + l3 L_O

`forward(x, y)` returns the weighted auxiliary losses as
`{"group": l1 L_G, "contrastive": -l2 L_con, "orthogonal": l3 L_O}` (plus
`"backbone"`, the backbone head's own BCE, when `backbone_aux_loss`); a loss
whose weight is 0 is neither computed nor returned, and the label-dependent
ones need `y`.

Efficiency. `r_G` (G*d = 960 wide) and `r_P` are kept factored
(`gprec.layers.factored`) and never materialised in training; the strategies
(`gprec.models.gprec_strategies`) read them through `MLP.forward_parts`.
`group_representation(x)` / `individual_representation(x)` give the dense ones.

Ablations (docs/gprec.md §7) are options: `group_embedding: single` (GPRec-1),
`individual: false` (GPRec-2), `lambda_group / lambda_contrastive /
lambda_orthogonal: 0` (GPRec-3 / 4 / 5).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from gprec.config import key_error
from gprec.data.schema import EncodedField, Role, fields_of_role
from gprec.errors import ConfigError
from gprec.layers.dedup import DistinctRows
from gprec.layers.factored import GroupRep, Part, PersonalRep, ScaledPart, reduce_cosine
from gprec.layers.group import BatchedGroupMLP, SharedGroupClassifier, gumbel_pair_masks
from gprec.layers.mlp import MLP
from gprec.models.base import ModelOutput, Width
from gprec.models.gprec_strategies import STRATEGIES
from gprec.models.registry import model_class, register
from gprec.models.warm_start import read_backbone_run
from gprec.models.wrapper import BackboneWrapper, WrapperOptions


class GPRecOptions(WrapperOptions):
    n_groups: int = Field(60, ge=1, description="number of user groups G")
    tau: float = Field(
        0.5, gt=0, description="Gumbel-softmax temperature of the group-membership masks"
    )
    group_reduce: Literal["concat", "sum"] = Field(
        "concat",
        description="how the G group embeddings form r_G: concat (G*d wide) or sum (d wide)",
    )
    group_init_std: float = Field(  # (choice) N(0, std) init of p_i, n_i
        0.1, gt=0, description="std of the normal initialisation of the group embeddings p_i, n_i"
    )
    classifier_units: list[Width] = Field(  # per group, then 2 outputs
        [64, 32], description="hidden widths of each group's membership classifier g"
    )
    aux_units: list[Width] = Field(  # f_1, then 1 output
        [64, 32, 16], description="hidden widths of f_1, the group-level predictor of L_G and L_con"
    )
    personal_units: list[Width] = Field(  # f_2, then r_G's width
        [64, 32], description="hidden widths of f_2, which maps personal fields to r_P"
    )
    strategy: Literal["input", "dynamic", "ensemble"] = Field(
        "input",
        description="how r_G and r_P reach the prediction: input (concatenated to the head's "
        "input), dynamic (per-user low-rank head weights), ensemble (averaged heads)",
    )
    dynamic_rank: int = Field(
        4, ge=1, description="strategy dynamic: rank of the per-user weight deltas"
    )
    dynamic_units: list[Width] = Field(  # f_DP's hidden layers (choice)
        [64], description="strategy dynamic: hidden widths of f_DP, which emits the deltas"
    )
    lambda_group: float = Field(1.0, ge=0, description="weight of the group loss L_G (0: off)")
    lambda_contrastive: float = Field(
        0.001, ge=0, description="weight of the contrastive loss L_con (0: off)"
    )
    lambda_orthogonal: float = Field(
        0.0001,
        ge=0,
        description="weight of the orthogonality loss L_O between r_G and r_P (0: off)",
    )
    orthogonal: Literal["abs", "signed"] = Field(
        "abs", description="L_O as the mean |cos(r_G, r_P)| (abs) or the mean cosine (signed)"
    )
    backbone_aux_loss: bool = Field(
        False, description="also train the backbone's own head on the labels (its BCE is added)"
    )
    # single: GPRec-1, softmax over groups; it has no 1 - M branch, so no L_con, and tau is unused
    group_embedding: Literal["dual", "single"] = Field(
        "dual",
        description="dual: in- and out-of-group embeddings per group; single: one, weighted "
        "by a softmax over groups (ablation GPRec-1)",
    )
    individual: bool = Field(  # False: GPRec-2
        True, description="model individual taste r_P from personal fields (false: GPRec-2)"
    )
    # Run the classifier once per distinct user-field row of the batch, then
    # gather: exact (g sees only user fields; noise is drawn per sample after).
    dedup_users: bool = Field(
        True,
        description="run the group classifier once per distinct user in a batch (same result, faster)",
    )
    # -- variants beyond the paper (issue 22; all off by default, docs/gprec.md §10) --------
    classifier: Literal["per_group", "shared"] = Field(
        "per_group",
        description="per_group: G independent MLPs over E_u (the paper); shared: one first "
        "block shared by all groups (classifier_shared_units), then small per-group layers "
        "(classifier_group_units): a fraction of the cost",
    )
    classifier_shared_units: list[Width] = Field(
        [64], description="classifier shared: widths of the block all groups share"
    )
    classifier_group_units: list[Width] = Field(
        [8], description="classifier shared: hidden widths of each group's own layers"
    )
    input_scale: Literal["none", "zero"] = Field(
        "none",
        description="none: r_G and r_P enter the strategy as they are (the paper); zero: each "
        "through a learnable scalar that starts at 0, so training starts on the backbone's own "
        "path and the user level joins as it earns its place",
    )
    backbone_lr_scale: float = Field(
        1.0,
        ge=0,
        description="the backbone's learning rate as a multiple of train.lr (0: frozen), e.g. "
        "to keep a backbone started from init_from close to the trained one",
    )
    init_from: str | None = Field(
        None,
        description="a finished run directory of the bare backbone (same data, split and "
        "options) to start from: GPRec's new inputs start at zero, so at step 0 it predicts "
        "exactly what that run does (strategy input or dynamic); '{seed}' is replaced by "
        "train.seed",
    )

    @model_validator(mode="after")
    def _strategy_is_supported(self) -> GPRecOptions:
        """The backbone declares which strategies apply (e.g. no `dynamic` on a bilinear head);
        another is a config error naming those, checked before any data is read."""
        name = self.backbone["name"]
        supported = model_class(name).gprec_strategies
        if self.strategy not in supported:
            raise key_error(
                ("strategy",),
                f"'{self.strategy}' is not supported by backbone '{name}' "
                f"(supported: {', '.join(supported)})",
                self.strategy,
            )
        return self

    @model_validator(mode="after")
    def _init_from_has_a_zero_start(self) -> GPRecOptions:
        if self.init_from is not None and self.strategy == "ensemble":
            raise key_error(
                ("init_from",),
                "strategy ensemble averages heads, so it cannot start as the trained backbone; "
                "use strategy input or dynamic",
                self.init_from,
            )
        if self.init_from is None and self.backbone_lr_scale == 0:
            # A frozen random backbone: the embeddings the classifier reads would never learn.
            raise key_error(
                ("backbone_lr_scale",),
                "0 freezes the backbone, which only makes sense for one trained already: set "
                "init_from, or a scale above 0",
                self.backbone_lr_scale,
            )
        if self.init_from is not None and self.input_scale == "zero":
            # The head's new columns start at 0 already; a zero scale on them too would leave
            # both with a zero gradient for ever.
            raise key_error(
                ("input_scale",),
                "zero with init_from would never train (the new inputs start at zero already): "
                "use input_scale none",
                self.input_scale,
            )
        return self


@register("gprec")
class GPRec(BackboneWrapper):
    """GPRec around a registered backbone (`options.backbone`).

    The backbone (`self.backbone`) keeps its embedding table, `represent` and
    head; `self.embedding` *is* the backbone's table (GPRec owns no other).
    Inspection: `group_masks(x)` (full rows), `user_group_masks(u)` (user columns alone),
    `group_embeddings()`, `individual_representation(x)`, `group_representation(x)`.
    """

    Options = GPRecOptions
    # L_G and L_con are BCEs of f_1's predictions against the click label (implicit's sampled
    # negatives are labelled 0 like non-clicks); a rating target has no such BCE.
    tasks = ("binary", "implicit")
    description = "GPRec: group + individual user modeling around a backbone (model.backbone)"

    def __init__(self, fields: list[EncodedField], options: GPRecOptions):
        o = options
        strategy_cls = STRATEGIES[o.strategy]
        # The backbone's head only where something calls it (not with `input`, unless its own
        # BCE is trained too): unused parameters would be counted and would break DDP.
        super().__init__(
            fields, o, with_head=strategy_cls.uses_backbone_head or o.backbone_aux_loss
        )
        bb = self.backbone
        d = bb.options.embedding_dim
        personal = fields_of_role(fields, Role.PERSONAL)
        users = personal + fields_of_role(fields, Role.USER)  # E_u = [E_p, E_o]
        items = fields_of_role(fields, Role.ITEM)
        if not users:
            raise ConfigError("GPRec needs at least one personal or user field (E_u)")
        if o.individual and not personal:
            raise ConfigError(
                "GPRec with individual: true needs a personal field (E_p); "
                "mark one with role 'personal' or set individual: false"
            )
        self.register_buffer("user_idx", torch.tensor(users, dtype=torch.long), persistent=False)
        self.register_buffer("item_idx", torch.tensor(items, dtype=torch.long), persistent=False)
        self.register_buffer(
            "personal_idx", torch.tensor(personal, dtype=torch.long), persistent=False
        )
        self.distinct_users = DistinctRows([fields[i].cardinality for i in users])

        self.n_groups = G = o.n_groups
        self.dual = o.group_embedding == "dual"
        # Group level.
        n_out = 2 if self.dual else 1
        if o.classifier == "shared":
            self.classifier = SharedGroupClassifier(
                len(users) * d, G, o.classifier_shared_units, o.classifier_group_units, n_out
            )
        else:
            self.classifier = BatchedGroupMLP(len(users) * d, G, o.classifier_units, n_out)
        self.pos = nn.Parameter(torch.randn(G, d) * o.group_init_std)
        self.neg = nn.Parameter(torch.randn(G, d) * o.group_init_std) if self.dual else None
        self.group_dim = G * d if o.group_reduce == "concat" else d
        self.use_group_loss = o.lambda_group > 0
        self.use_contrastive = self.dual and o.lambda_contrastive > 0
        self.f1 = (
            MLP(self.group_dim + len(items) * d, o.aux_units, 1)
            if self.use_group_loss or self.use_contrastive
            else None
        )
        if self.f1 is not None and not self.use_group_loss:
            # GPRec-3: L_con reads f_1 with its parameters fixed and no L_G trains them, so f_1
            # stays as initialised; frozen, it is neither counted as trained nor left without
            # a gradient (which DDP refuses).
            self.f1.requires_grad_(False)
        # Individual level.
        self.personal_dim = self.group_dim if o.individual else 0
        self.f2 = MLP(len(personal) * d, o.personal_units, self.group_dim) if o.individual else None
        self.use_orthogonal = o.individual and o.lambda_orthogonal > 0
        # Model construction.
        self.strategy = strategy_cls(bb, self.group_dim, self.personal_dim, o)
        # input_scale zero: one scalar per user-level part (r_G, r_P), at 0.
        n_parts = 2 if o.individual else 1
        self.input_scale = nn.Parameter(torch.zeros(n_parts)) if o.input_scale == "zero" else None

    def parameter_groups(self, lr: float) -> list[dict]:
        """The optimizer's parameter groups: the backbone's at `backbone_lr_scale * lr` (when not
        1), the rest at `lr`; frozen (scale 0) backbone weights are left out."""
        scale = self.options.backbone_lr_scale
        if scale == 1.0:
            return [{"params": list(self.parameters())}]
        ours = [p for n, p in self.named_parameters() if not n.startswith("backbone.")]
        backbone = list(self.backbone.parameters())
        if scale == 0:
            for p in backbone:
                p.requires_grad_(False)  # no gradient computed, none expected (DDP)
            return [{"params": ours}]
        return [{"params": ours}, {"params": backbone, "lr": scale * lr}]

    def start_from_run(self, path: str) -> None:
        """Start from the finished bare-backbone run at `path` (`init_from`), checked to be one
        of this backbone on these fields (`models.warm_start`)."""
        self.start_from_backbone(read_backbone_run(path, self.backbone, self.fields))

    def start_from_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load a trained bare backbone's `state_dict` so that this model predicts exactly what
        it does: the backbone's weights as they are, every new input of its head at zero."""
        head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        if self.backbone.head is None:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        self.backbone.load_state_dict(state)
        self.strategy.start_from_backbone(head)

    # -- group level -----------------------------------------------------------
    def _scores(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Classifier scores S, `(B, G, 2)` (dual) or `(B, G, 1)` (single), of full rows."""
        e_u = emb.index_select(1, self.user_idx)
        if not self.options.dedup_users:
            return self.classifier(e_u.flatten(1))
        return self._user_scores(x.index_select(1, self.user_idx), e_u)

    def _user_scores(self, u: torch.Tensor, e_u: torch.Tensor) -> torch.Tensor:
        """Classifier scores of the user columns `u` `(B, n_user)` and their embeddings `E_u`:
        the classifier reads nothing else (docs/gprec.md §3.1)."""
        if not self.options.dedup_users:
            return self.classifier(e_u.flatten(1))
        distinct = self.distinct_users(u)
        if distinct is None:
            return self.classifier(e_u.flatten(1))
        first, inverse = distinct
        return self.classifier(e_u[first].flatten(1))[inverse]

    def _memberships(self, scores: torch.Tensor, noisy: bool) -> torch.Tensor:
        """`m1` (dual, Gumbel pair masks) or softmax weights over groups (single), `(B, G)`."""
        if self.dual:
            return gumbel_pair_masks(scores, self.options.tau, noisy)
        return torch.softmax(scores[..., 0], dim=-1)

    def _group_rep(self, m: torch.Tensor, swapped: bool = False) -> GroupRep:
        """`r_G = m1 p + m0 n` per group; `swapped`: `r_G^con = m0 p + m1 n` (dual only)."""
        concat = self.options.group_reduce == "concat"
        if not self.dual:
            return GroupRep(m, None, self.pos, concat)
        if swapped:  # m0 p + m1 n = p + m1 (n - p)
            return GroupRep(m, self.pos, self.neg - self.pos, concat)
        return GroupRep(m, self.neg, self.pos - self.neg, concat)  # n + m1 (p - n)

    def _personal_rep(self, emb: torch.Tensor) -> PersonalRep:
        e_p = emb.index_select(1, self.personal_idx).flatten(1)
        return PersonalRep(self.f2.hidden(e_p), self.f2.output_layer)

    # -- the model -------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        o, bb = self.options, self.backbone
        emb = self.embedding(x)
        rep = bb.represent(x, emb)
        m = self._memberships(self._scores(x, emb), noisy=self.training)
        r_g = self._group_rep(m)
        r_p = self._personal_rep(emb) if self.f2 is not None else None
        user: list[Part] = [r_g] if r_p is None else [r_g, r_p]
        if self.input_scale is not None:
            user = [ScaledPart(p, self.input_scale[i]) for i, p in enumerate(user)]
        logit, backbone_logit = self.strategy(bb, rep, user)
        # Auxiliary losses train the model; evaluation and inference never need them.
        if not self.training:
            return ModelOutput(logit)
        aux: dict[str, torch.Tensor] = {}
        if y is not None:
            if self.f1 is not None:
                e_v = emb.index_select(1, self.item_idx).flatten(1)
            if self.use_group_loss:
                y1 = self.f1.forward_parts([r_g, e_v]).squeeze(-1)
                aux["group"] = o.lambda_group * F.binary_cross_entropy_with_logits(y1, y)
            if self.use_contrastive:
                # theta_1 fixed: f_1 with detached parameters, so L_con's gradient reaches p, n,
                # the classifier and the item embeddings, never f_1's parameters.
                frozen = {k: v.detach() for k, v in self.f1.named_parameters()}
                parts = [self._group_rep(m, swapped=True), e_v]
                y2 = torch.func.functional_call(self.f1, frozen, (parts,)).squeeze(-1)
                aux["contrastive"] = -o.lambda_contrastive * F.binary_cross_entropy_with_logits(
                    y2, y
                )
            if o.backbone_aux_loss:
                if backbone_logit is None:
                    backbone_logit = bb.predict(rep)
                aux["backbone"] = F.binary_cross_entropy_with_logits(backbone_logit, y)
        if self.use_orthogonal:
            cos = r_g.cosine(r_p)
            aux["orthogonal"] = o.lambda_orthogonal * reduce_cosine(cos, o.orthogonal)
        return ModelOutput(logit, aux)

    # -- inspection ------------------------------------------------------------
    @property
    def user_columns(self) -> list[int]:
        """Positions in a full row of the fields the group classifier reads (`E_u`): the
        personal fields, then the other user fields; `user_group_masks` takes these columns."""
        return self.user_idx.tolist()

    @torch.no_grad()
    def group_masks(self, x: torch.Tensor) -> torch.Tensor:
        """Membership probabilities `(B, G)` of full encoded rows `(B, n_fields)`, without noise:
        `m1` (dual) or softmax weights (single). Only the user columns are read, so this equals
        `user_group_masks(x[:, user_columns])`."""
        return self.user_group_masks(x.index_select(1, self.user_idx))

    @torch.no_grad()
    def user_group_masks(self, u: torch.Tensor) -> torch.Tensor:
        """Membership probabilities `(B, G)` from user fields alone: `u` is `(B, n_user)`, the
        encoded values of the fields at `user_columns` in that order (personal fields first, then
        the other user fields), e.g. one row per distinct user; no item fields are needed."""
        if u.dim() != 2 or u.shape[1] != len(self.user_idx):
            names = ", ".join(self.fields[i].name for i in self.user_columns)
            raise ValueError(
                f"user_group_masks takes (batch, {len(self.user_idx)}) user columns ({names}); "
                f"got shape {tuple(u.shape)}"
            )
        u = u.to(self.user_idx.device, torch.long)
        e_u = self.embedding.select(u, self.user_idx)
        return self._memberships(self._user_scores(u, e_u), noisy=False)

    @torch.no_grad()
    def group_embeddings(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(P, N)`, each `(G, d)`; `N` is None with single group embeddings."""
        return self.pos.detach().clone(), None if self.neg is None else self.neg.detach().clone()

    @torch.no_grad()
    def group_representation(self, x: torch.Tensor) -> torch.Tensor:
        """`r_G` without noise, dense: `(B, G*d)` (concat) or `(B, d)` (sum)."""
        return self._group_rep(self.group_masks(x)).dense()

    @torch.no_grad()
    def individual_representation(self, x: torch.Tensor) -> torch.Tensor:
        """`r_P = f_2(E_p)`, dense, `(B, width of r_G)`."""
        if self.f2 is None:
            raise ValueError("this GPRec has no individual representation (individual: false)")
        return self._personal_rep(self.embedding(x)).dense()
