"""PEPNet: gates on the field embeddings (EPNet) and on the prediction head's layers (PPNet).

Chang et al., "PEPNet: Parameter and Embedding Personalized Network for Infusing with
Personalized Prior Information", KDD 2023 (arXiv 2302.01115). Details checked against
TorchEasyRec's `tzrec/modules/personalized_net.py`, the most complete public port.

    Gate NU:  g(u) = gamma * sigmoid(W2 relu(W1 u + b1) + b2)          in (0, gamma); gamma = 2
    EPNet:    delta = g_ep([E_d ; sg(E)]),   O_ep = delta (x) E           before represent()
    PPNet:    delta^l = g_pp^l([E_prior ; sg(O_ep)]),   h^(l+1) = f((delta^l (x) h^l) W^l + b^l)

`E` is every field's embedding, `E_d` the domain-side field's (the partition field: gender
where the data has it, as for STAR), `E_prior` the prior fields' (user_id and item_id on
MovieLens; the paper adds the author, which MovieLens lacks), `sg` stop-gradient. With
gamma = 2 every gate is exactly 1 at a zero pre-activation, so the gated model starts near
the bare backbone (gates within about 0.9-1.1 at initialisation: the embeddings start near
zero and the Gate NUs as `nn.Linear` is initialised, as in TorchEasyRec). The backbone sees `O_ep` (`represent(x, O_ep)`) and its head runs with one
`LayerMod(gate=delta^l)` per layer (`predict(rep, mods)`).

Stop-gradient, where the paper puts it: the main embedding `E` inside EPNet's gate input (the
gate adapts to E but cannot reshape it; `E` is trained only through `O_ep = delta (x) E`), and
`O_ep` inside PPNet's gate input (PPNet's updates do not reach EPNet or the embeddings through
it). The domain and prior embeddings in the gate inputs are not stopped: they learn to steer
the gates.

Defaults and choices:
- `epnet_granularity: field` (our reading): one gate per field, broadcast over its d
  dimensions; the paper presents EPNet as a personalised selection of features "with
  different importance" (the full text was not at hand to confirm the shape of delta).
  TorchEasyRec gates every dimension of the concatenated embedding: `dimension`.
- `ppnet_layers: all`: a gate on the input of every linear layer of the head, the paper's
  `l = 1..L` (the first gates the backbone's representation r_b, on top of EPNet's gates);
  `hidden` gates only the hidden layers' outputs (the inputs of layers 2..L), as TorchEasyRec.
- `prior_fields: null`: the personal fields (user_id) and the item's ID field, taken as the
  first item field in schema order (item_id on MovieLens and the synthetic data).
- `partition_field: null`: the domain-side field is gender where the data has it.
- `gate_units: 16` (our choice; the paper gives no width): every Gate NU's hidden layer is 16
  wide, the embedding width. `null` is TorchEasyRec's PPNet choice, each Gate NU as wide as
  what it gates (the layer's width; for EPNet the flattened embeddings' F*d), which makes PEPNet
  about 6x the MLP's epoch instead of about 3x (Speed, below).
- `gamma: 2` (the paper).
- `epnet`, `ppnet`: either half alone (the paper's ablations); both off is a config error (the
  bare backbone).
PPNet's gates all read the same input: their
first layers are one GEMM, their second layers one small GEMM each (a loop over the head's
layers, never over samples or fields).

Backbones: those whose head takes per-layer modulations (`Backbone.head_accepts_layer_mods`,
checked at config time by `wrapper.require_layer_mods`); with `ppnet: false` any backbone
works.

Speed (`benchmarks/results/user_modeling_speed.md`, ML-100K, 1 thread): the mechanism is five
gate networks per sample, each reading the whole embedding (`sg(E)` or `sg(O_ep)` plus the
domain or prior embeddings), none shareable across samples (the gate inputs hold the item),
against a head of four layers. At the default `gate_units: 16` that costs 2.6x the MLP's
epoch; with `gate_units: null` (TorchEasyRec's widths: EPNet's gate F*d = 128 wide over a
144-wide input, each PPNet gate as wide as its layer's input) about 6x.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from gprec.config import key_error
from gprec.data.schema import EncodedField, Role, fields_of_role
from gprec.errors import ConfigError
from gprec.layers.mlp import MLP, LayerMod
from gprec.models.base import ModelOutput, Width
from gprec.models.registry import register
from gprec.models.wrapper import (
    BackboneWrapper,
    PartitionFieldOptions,
    WrapperOptions,
    field_positions,
    partition_field_index,
    require_layer_mods,
)


class PEPNetOptions(WrapperOptions, PartitionFieldOptions):
    epnet: bool = Field(True, description="gate the field embeddings from the domain field (EPNet)")
    ppnet: bool = Field(
        True, description="gate the prediction head's layers from the prior fields (PPNet)"
    )
    epnet_granularity: Literal["field", "dimension"] = Field(
        "field",
        description="EPNet's gates: one per field (broadcast over its dimensions) or one per "
        "embedding dimension",
    )
    ppnet_layers: Literal["all", "hidden"] = Field(
        "all",
        description="PPNet gates the input of every head layer (all) or only the hidden "
        "layers' outputs (hidden)",
    )
    prior_fields: list[str] | None = Field(
        None,
        description="fields whose embeddings drive PPNet's gates (null: the personal fields "
        "and the first item field)",
    )
    gate_units: Width | None = Field(
        16,
        description="hidden width of every gate network (null: the width of what it gates, "
        "TorchEasyRec's choice, about twice the cost)",
    )
    gamma: float = Field(2.0, gt=0, description="gate scale: each gate is gamma * sigmoid(.)")

    @model_validator(mode="after")
    def _something_is_gated(self) -> PEPNetOptions:
        if not (self.epnet or self.ppnet):
            raise key_error(
                ("ppnet",),
                "with epnet and ppnet both false PEPNet is the bare backbone; "
                f"train model.name={self.backbone['name']} instead",
                self.ppnet,
            )
        if self.ppnet:
            require_layer_mods(
                self.backbone["name"],
                "PEPNet's PPNet gates the layers of the backbone's prediction head",
                "; or set ppnet: false (EPNet alone)",
            )
        return self


class GateNU(nn.Module):
    """`gamma * sigmoid(MLP(u))`, a two-layer gate network: `(B, in) -> (B, out)` in (0, gamma)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, gamma: float):
        super().__init__()
        self.net = MLP(in_dim, [hidden], out_dim)
        self.gamma = gamma

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.net(u))


@register("pepnet")
class PEPNet(BackboneWrapper):
    """PEPNet around a registered backbone (`options.backbone`).

    Inspection: `gates(x) -> (EPNet's gates or None, [PPNet's gate per head layer or None])`.
    """

    Options = PEPNetOptions
    description = (
        "PEPNet: embedding gates (domain) + head-layer gates (user/item priors) (KDD 2023)"
    )

    def __init__(self, fields: list[EncodedField], options: PEPNetOptions):
        super().__init__(fields, options)
        o = options
        d, n = self.embedding_dim, len(fields)
        self.gamma = o.gamma
        self.ep_gate: GateNU | None = None
        if o.epnet:
            self.domain_col, _ = partition_field_index(fields, o.partition_field)
            out = n if o.epnet_granularity == "field" else n * d
            self.ep_gate = GateNU(d + n * d, o.gate_units or n * d, out, o.gamma)
        self.pp_first: nn.Linear | None = None
        self.pp_second = nn.ModuleList()
        self.pp_layers: list[int] = []
        if o.ppnet:
            shapes = list(self.backbone.head.layer_shapes)
            prior = self._prior_positions(fields, o.prior_fields)
            self.register_index("prior_idx", prior)
            first = 0 if o.ppnet_layers == "all" else 1
            self.pp_layers = list(range(first, len(shapes)))
            if not self.pp_layers:
                raise ConfigError(
                    "model.ppnet_layers: hidden, but the head has no hidden layer to gate"
                )
            self.n_head_layers = len(shapes)
            widths = [shapes[i][0] for i in self.pp_layers]  # each gated layer's input
            hidden = [o.gate_units or w for w in widths]
            # All of PPNet's gate networks read one input: their first layers are one GEMM.
            self.pp_first = nn.Linear(len(prior) * d + n * d, sum(hidden))
            self.pp_second = nn.ModuleList(
                nn.Linear(h, w) for h, w in zip(hidden, widths, strict=True)
            )
            self.pp_hidden = hidden

    @staticmethod
    def _prior_positions(fields: list[EncodedField], names: list[str] | None) -> list[int]:
        if names is not None:
            return field_positions(fields, names, "model.prior_fields")
        items = fields_of_role(fields, Role.ITEM)
        prior = fields_of_role(fields, Role.PERSONAL) + items[:1]
        if not prior:
            raise ConfigError(
                "model.prior_fields: this data has no personal or item field to default to; "
                "name fields: " + ", ".join(f.name for f in fields)
            )
        return prior

    def _epnet(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(O_ep, delta)`: the gated embeddings `(B, F, d)` and the gates (None: no EPNet)."""
        if self.ep_gate is None:
            return emb, None
        # E stopped: the gate reads the embeddings but its gradient does not reshape them.
        u = torch.cat([emb[:, self.domain_col], emb.detach().flatten(1)], 1)
        delta = self.ep_gate(u)
        return emb * delta.view(emb.shape[0], emb.shape[1], -1), delta

    def _ppnet(self, emb: torch.Tensor, o_ep: torch.Tensor) -> list[torch.Tensor]:
        """PPNet's gate of each gated head layer's input, `(B, in_l)` each."""
        prior = emb.index_select(1, self.prior_idx).flatten(1)
        # O_ep stopped: PPNet's training does not reach EPNet or the embeddings through it.
        h = torch.relu(self.pp_first(torch.cat([prior, o_ep.detach().flatten(1)], 1)))
        return [
            self.gamma * torch.sigmoid(lin(part))
            for lin, part in zip(self.pp_second, h.split(self.pp_hidden, 1), strict=True)
        ]

    def _mods(self, gates: list[torch.Tensor]) -> list[LayerMod | None]:
        mods: list[LayerMod | None] = [None] * self.n_head_layers
        for i, g in zip(self.pp_layers, gates, strict=True):
            mods[i] = LayerMod(gate=g)
        return mods

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        emb = self.embedding(x)
        o_ep, _ = self._epnet(emb)
        rep = self.backbone.represent(x, o_ep)
        mods = self._mods(self._ppnet(emb, o_ep)) if self.pp_first is not None else None
        return ModelOutput(self.backbone.predict(rep, mods))

    @torch.no_grad()
    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        """EPNet's gates (`(B, F)` or `(B, F*d)`; None without EPNet) and PPNet's gate of each
        head layer's input (None where that layer is not gated)."""
        emb = self.embedding(x)
        o_ep, delta = self._epnet(emb)
        if self.pp_first is None:
            return delta, []
        return delta, [m if m is None else m.gate for m in self._mods(self._ppnet(emb, o_ep))]
