"""Options shared by the models that treat user groups as tasks (MMoE, PLE): experts over the
flattened field embeddings, a gate and a tower per group of the partition field."""

from __future__ import annotations

from pydantic import Field

from gprec.models.base import Activation, BackboneOptions, Width
from gprec.models.wrapper import PartitionOptions


class GroupTaskOptions(BackboneOptions, PartitionOptions):
    partition_field: str | None = Field(
        None,
        description="the user field whose value is each sample's group, with its own gate "
        "and tower (null: gender where the data has it); group 0 (unseen or missing values) "
        "trains only on training rows missing the value (none on MovieLens), so a value unseen "
        "in training is scored by an untrained tower",
    )
    # BackboneOptions' head settings keep their names, so a dataset config's MLP section
    # switched by `--set model.name=mmoe` configures the towers.
    head_units: list[Width] = Field(
        [64, 32, 16],
        description="hidden widths of each group's tower (a 1-wide output follows)",
    )
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="dropout rate after each hidden layer of experts, gates, towers",
    )
    batch_norm: bool = Field(
        False,
        description="BatchNorm after each hidden linear layer of experts, gates and towers, "
        "before its activation",
    )
    activation: Activation = Field(
        "relu", description="activation of the hidden layers of experts, gates and towers"
    )
    expert_units: list[Width] = Field(
        [128, 64, 32],
        min_length=1,
        description="widths of each expert's layers, all activated (the last is its output)",
    )
    gate_units: list[Width] = Field(
        [],
        description="hidden widths of each gate before its logits ([]: linear, the papers'; "
        "FuxiCTR's gates are MLPs)",
    )
