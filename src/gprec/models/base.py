"""The contracts every model follows, so the trainer and GPRec need nothing model-specific.

- A model's `forward(x, y=None)` takes a (batch, n_fields) index tensor, and
  in training the labels, and returns a `ModelOutput`: the main logit and
  named auxiliary losses, already weighted (label-dependent ones need `y`).
- A `Backbone` is a model with three parts: the shared field embedding, a
  `represent(x, E) -> Representation(r, logit)` step (`r` is `r_b`, what the
  head reads; `logit` an optional additive term of the backbone's own, e.g.
  DeepFM's first-order + FM terms), and a prediction head `f_y` over `r_b`
  (`make_own_head()`: by default an MLP from `make_head`, FinalMLP's is its
  bilinear fusion). The head declares what it accepts (`accepts_extra_inputs`,
  `accepts_layer_mods`), the backbone which GPRec strategies apply
  (`gprec_strategies`). Wrappers (`models/wrapper.py`: GPRec, STAR, APG, PEPNet,
  DGPM) use exactly these parts and `predict(rep, mods)`, never a backbone's other
  attributes.
- Auxiliary losses are computed only in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from gprec.config import StrictModel
from gprec.data.schema import EncodedField
from gprec.layers.embedding import FieldEmbedding
from gprec.layers.mlp import ACTIVATIONS, MLP, LayerMod

# Built from the mapping the layers index, so a new activation is accepted here
# by adding it there, and a misspelt one fails validation listing the choices.
Activation = Literal[tuple(ACTIVATIONS)]
# A zero width trains, but as a constant model: every layer after it sees zeros.
Width = Annotated[int, Field(ge=1)]


@dataclass
class Representation:
    """What a backbone's `represent` gives: `r` `(B, representation_dim)`, read by the head, and
    an optional additive logit `(B,)` of the backbone's own (FM, wide parts)."""

    r: torch.Tensor
    logit: torch.Tensor | None = None


@dataclass
class ModelOutput:
    logit: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)


class ModelOptions(StrictModel):
    """Options every model has; a model's own options class extends these."""

    name: str = Field(description="the model (`gprec models` lists them)")
    embedding_dim: Width = Field(16, description="width d of each field's embedding vector")
    embedding_init_std: float = Field(
        1e-4, ge=0, description="std of the normal initialisation of the embeddings"
    )


class BackboneOptions(ModelOptions):
    head_units: list[Width] = Field(
        [64, 32, 16], description="hidden widths of the prediction head (a 1-wide output follows)"
    )
    dropout: float = Field(  # 1 would zero every hidden unit
        0.0, ge=0, lt=1, description="dropout rate after each hidden layer of the head"
    )
    batch_norm: bool = Field(
        False,
        description="BatchNorm after each hidden linear layer of the head, before its activation",
    )
    activation: Activation = Field("relu", description="activation of the head's hidden layers")


class CTRModel(nn.Module):
    """Base of every registered model: field bookkeeping plus the embedding table."""

    Options: type[ModelOptions] = ModelOptions
    # `train.task`s it can learn (training/tasks.py); its main output is that task's raw output.
    tasks: ClassVar[tuple[str, ...]] = ("binary", "regression", "implicit")

    def __init__(self, fields: list[EncodedField], options: ModelOptions):
        super().__init__()
        self.fields = fields
        self.options = options
        self.embedding = FieldEmbedding(
            [f.cardinality for f in fields], options.embedding_dim, options.embedding_init_std
        )

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> ModelOutput:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(x).logit)


class Backbone(CTRModel):
    """A feature-interaction model: `x, E -> Representation -> f_y(r_b) (+ its own logit)`.

    `with_head=False` builds it without its prediction head, for a wrapper that
    never calls it (GPRec's `input` strategy builds a wider head of its own).
    """

    Options = BackboneOptions
    description: ClassVar[str] = ""
    # GPRec strategies this backbone supports; `dynamic` needs a head that takes weight
    # modulations (`LayerMod`), `input` one whose input can be widened (the contract tests check both).
    gprec_strategies: ClassVar[tuple[str, ...]] = ("input", "dynamic", "ensemble")
    # Whether its head takes per-layer `LayerMod`s (an MLP head does): what GPRec's `dynamic`,
    # STAR, APG, PEPNet's PPNet and DGPM need, read at config time before any head is built.
    head_accepts_layer_mods: ClassVar[bool] = True

    def __init__(
        self, fields: list[EncodedField], options: BackboneOptions, with_head: bool = True
    ):
        super().__init__(fields, options)
        self.head = self.make_own_head() if with_head else None

    @property
    def representation_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def represent(
        self, x: torch.Tensor, emb: torch.Tensor
    ) -> Representation:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_head(self, in_dim: int) -> MLP:
        """A prediction head over `in_dim` inputs, built from this backbone's options."""
        o = self.options
        return MLP(in_dim, o.head_units, 1, o.dropout, o.activation, o.batch_norm)

    def make_own_head(self) -> nn.Module:
        """This backbone's own head `f_y` over `r_b`: `make_head(representation_dim)`, an MLP.

        A backbone whose `f_y` is not an MLP (FinalMLP: a bilinear fusion of its two streams)
        overrides this and keeps `make_head` for the MLP heads GPRec builds (`input`'s head,
        `ensemble`'s heads over r_G and r_P). Whatever it returns is called as
        `head(r, mods) -> (B, 1)` and declares `accepts_extra_inputs` and
        `accepts_layer_mods`. It runs inside `Backbone.__init__`, before a subclass's own
        `__init__` body, so it may read only `self.fields` and `self.options`.
        """
        return self.make_head(self.representation_dim)

    def predict(
        self, rep: Representation, mods: list[LayerMod | None] | None = None
    ) -> torch.Tensor:
        """The logit `(B,)`: the head over `rep.r` (its layers modulated by `mods`) plus
        `rep.logit`."""
        if self.head is None:
            raise RuntimeError("this backbone was built without its head (with_head=False)")
        logit = self.head(rep.r, mods).squeeze(-1)
        return logit if rep.logit is None else logit + rep.logit

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        return ModelOutput(self.predict(self.represent(x, self.embedding(x))))
