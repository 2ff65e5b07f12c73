"""FinalMLP: two MLP streams over feature-selection-gated embeddings, fused bilinearly.

Mao et al., "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction", AAAI 2023; the
authors' own code is FuxiCTR `model_zoo/FinalMLP/src/FinalMLP.py`. With `e` the flattened field
embeddings `(B, F*d)`::

    h_k = 2 sigmoid(Gate_k(ctx_k)) * e                      k = 1, 2  (FeatureSelection)
    o_k = MLP_k(h_k)                                        the two streams
    logit = b + w_1 . o_1 + w_2 . o_2 + sum_j o_1j^T W_3j o_2j   (MultiHeadBilinearFusion)

where `o_kj` is the j-th of `num_heads` contiguous chunks of `o_k`. The blocks are
`gprec.layers.bilinear` (each tested against a reference there).

Where GPRec joins (MODELS.md): `r_b = [o_1; o_2]`, the two stream outputs, and the backbone's
own prediction head `f_y` is the bilinear fusion over that split (`BilinearFusionHead`, built by
`make_own_head`), as the GPRec paper describes FinalMLP: "a dual stream network with bi-linear
fusion as the prediction layer". `make_head(in_dim)` still gives an MLP (`head_units`), the
heads GPRec builds over r_G and r_P.

GPRec strategies: only `ensemble`. `f_b(r_b)` is FinalMLP's own fusion, unchanged, and the
new heads `f_G(r_G)`, `f_P(r_P)` are MLPs with `head_units`; probabilities are averaged.
- `dynamic` does not apply: it adds low-rank deltas to the weights of an MLP head's layers, and
  the fusion has no such layers (the GPRec paper, Table III: DGPM, whose only strategy is
  dynamic parameters, "fails to integrate with FinalMLP"). `BilinearFusionHead` takes no
  deltas.
- `input` (y = f_y([r_b; r_G; r_P])) is refused too, by our decision. The fusion's input is
  exactly two vectors whose chunks are crossed head by head; r_G and r_P have no place in that
  form that is not an arbitrary new model (appending them to one stream's output puts parts of
  r_G in a head with parts of o_1, and which stream gets which is arbitrary). Appending them to
  the streams' inputs instead would change the backbone's own path, which GPRec keeps as it is
  (docs/gprec.md §2), and the strategy only sees r_b after the streams ran. The generic `input`
  head, an MLP over [o_1; o_2; r_G; r_P], would replace the fusion: that model is no longer
  FinalMLP. So GPRec(FinalMLP) is `strategy: ensemble`; asking for `input` or `dynamic` is a
  config error naming it.

Defaults and their sources:
- `embedding_dim` 16, `head_units` [64, 32, 16] (+ 1 output): the GPRec paper's settings; here
  `head_units` only sizes GPRec's ensemble heads f_G, f_P (FinalMLP's own head is the fusion).
- `stream1_units` = `stream2_units` = [64, 32, 16]: the FuxiCTR FinalMLP run of issue 17 ("MLP
  towers [64, 32, 16]" for every model, both FinalMLP towers included), which is also the GPRec
  paper's MLP size. The FinalMLP paper tunes the two towers per dataset (FuxiCTR's config
  template: [1024, 512] and [1024, 512, 256]; its class default: [64, 64, 64] each).
- `gate_units` [800], feature selection on, empty gate contexts: the FuxiCTR run of issue 17
  (`fs_hidden_units: [800]`, `fs1_context: []`, `fs2_context: []`). An empty context is one
  learned vector of width `embedding_dim` per gate (the authors' `fs*_ctx_bias`); the paper also
  conditions gates on user or item features, which this backbone does not expose (the block
  takes per-sample contexts; not wired here).
- `gate_context_std` 0: the authors' zero init of that vector. Then the gate's hidden layers
  never get a gradient and each gate is a learned per-coordinate scale `2 sigmoid(b)` that
  starts at 1 (see `FeatureSelection`); `> 0` (our option) lets the whole gate train.
- `num_heads` 2: issue 17's FuxiCTR run (and FuxiCTR's template); it must divide both streams'
  last widths, checked when the config is read.
- `dropout` 0, `batch_norm` false, `activation` relu: issue 17 (no dropout) and FuxiCTR's
  defaults; here they apply to both streams (FuxiCTR has one set per stream; sharing them is
  our choice) and to GPRec's ensemble heads.
- Initialisation: gates and fusion as the authors' code (in the blocks); the stream MLPs keep
  PyTorch's default `nn.Linear` init, like every MLP in gprec (FuxiCTR: Xavier-normal weights,
  zero biases). Our choice.

Cost: with empty contexts each gate runs once per batch on its (1, d) vector and broadcasts
(FuxiCTR repeats it B times through the 800-wide MLP), the fusion's heads are one einsum.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from gprec.config import key_error
from gprec.data.schema import EncodedField
from gprec.layers.bilinear import FeatureSelection, MultiHeadBilinearFusion
from gprec.layers.mlp import MLP, LayerMod
from gprec.models.base import Activation, Backbone, BackboneOptions, Representation, Width
from gprec.models.registry import register


class FinalMLPOptions(BackboneOptions):
    head_units: list[Width] = Field(
        [64, 32, 16],
        description="hidden widths of the MLP heads GPRec's ensemble builds over r_G and r_P "
        "(a 1-wide output follows); FinalMLP's own head is the bilinear fusion",
    )
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="dropout rate after each hidden layer of both streams "
        "(and of GPRec's ensemble heads)",
    )
    batch_norm: bool = Field(
        False,
        description="BatchNorm after each hidden linear layer of both streams (and of GPRec's "
        "ensemble heads), before its activation",
    )
    activation: Activation = Field(
        "relu",
        description="activation of the hidden layers of both streams (and of GPRec's "
        "ensemble heads)",
    )
    stream1_units: list[Width] = Field(
        [64, 32, 16],
        min_length=1,
        description="hidden widths of stream 1's MLP; its last width is that of o_1",
    )
    stream2_units: list[Width] = Field(
        [64, 32, 16],
        min_length=1,
        description="hidden widths of stream 2's MLP; its last width is that of o_2",
    )
    feature_selection: bool = Field(
        True,
        description="gate each stream's input with its own feature-selection gate "
        "(false: both streams read the plain embeddings, FuxiCTR's use_fs: false)",
    )
    gate_units: list[Width] = Field(
        [800], description="hidden widths of each feature-selection gate's MLP"
    )
    gate_context_std: float = Field(
        0.0,
        ge=0,
        description="std of the N(0, std) init of each gate's learned context vector; 0 (the "
        "authors' zero init) leaves the gate's hidden layers untrained, so each gate is a "
        "learned per-coordinate scale",
    )
    num_heads: int = Field(
        2,
        ge=1,
        description="heads of the bilinear fusion; must divide the last width of both streams",
    )

    @model_validator(mode="after")
    def _heads_divide_the_streams(self) -> FinalMLPOptions:
        widths = {"stream1_units": self.stream1_units[-1], "stream2_units": self.stream2_units[-1]}
        bad = [f"{k}[-1]={w}" for k, w in widths.items() if w % self.num_heads]
        if bad:
            raise key_error(
                ("num_heads",),
                f"{self.num_heads} heads must divide both streams' output widths, "
                f"but not {', '.join(bad)}",
                self.num_heads,
            )
        return self


class BilinearFusionHead(nn.Module):
    """FinalMLP's prediction head over `r_b = [o_1; o_2]`: `MultiHeadBilinearFusion(o_1, o_2)`.

    `(B, dim1 + dim2) -> (B, 1)`, called as every backbone head is (`head(r, mods)`). It takes
    neither extra inputs nor layer modulations: GPRec's `input` and `dynamic` do not apply.
    """

    accepts_extra_inputs = False
    accepts_layer_mods = False

    def __init__(self, dim1: int, dim2: int, num_heads: int):
        super().__init__()
        self.fusion = MultiHeadBilinearFusion(dim1, dim2, num_heads)
        self.in_dim, self.out_dim = dim1 + dim2, 1

    def forward(self, r: torch.Tensor, mods: list[LayerMod | None] | None = None) -> torch.Tensor:
        if mods is not None:
            raise ValueError("FinalMLP's bilinear fusion head has no MLP layers to modulate")
        o1, o2 = r.split([self.fusion.dim1, self.fusion.dim2], dim=1)
        return self.fusion(o1, o2).unsqueeze(-1)


@register("finalmlp")
class FinalMLP(Backbone):
    description = "FinalMLP: two gated MLP streams, a multi-head bilinear fusion as the head"
    gprec_strategies = ("ensemble",)
    head_accepts_layer_mods = False  # a bilinear fusion, no MLP layers
    Options = FinalMLPOptions

    def __init__(
        self, fields: list[EncodedField], options: FinalMLPOptions, with_head: bool = True
    ):
        super().__init__(fields, options, with_head)
        o = options
        flat = len(fields) * o.embedding_dim
        self.selection = (
            FeatureSelection(
                flat,
                hidden=o.gate_units,
                empty_context_dim=o.embedding_dim,
                empty_context_std=o.gate_context_std,
            )
            if o.feature_selection
            else None
        )
        self.stream1 = MLP(flat, o.stream1_units, None, o.dropout, o.activation, o.batch_norm)
        self.stream2 = MLP(flat, o.stream2_units, None, o.dropout, o.activation, o.batch_norm)

    @property
    def representation_dim(self) -> int:
        return self.options.stream1_units[-1] + self.options.stream2_units[-1]

    def make_own_head(self) -> BilinearFusionHead:
        o = self.options
        return BilinearFusionHead(o.stream1_units[-1], o.stream2_units[-1], o.num_heads)

    def represent(self, x: torch.Tensor, emb: torch.Tensor) -> Representation:
        e = emb.flatten(1)
        h1, h2 = (e, e) if self.selection is None else self.selection(e)
        return Representation(torch.cat([self.stream1(h1), self.stream2(h2)], dim=1))
