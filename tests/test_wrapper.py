"""The wrapper contract (models/wrapper.py): the backbone section, options routed to it from the
top level, the shared embedding table, and the partition field of the user-modeling baselines."""

import pytest
import torch

from conftest import toy_fields
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.layers.embedding import FieldEmbedding
from gprec.models.registry import build_model, resolve_model_options
from gprec.models.wrapper import (
    BackboneWrapper,
    field_positions,
    partition_field_index,
    user_field_positions,
)


def test_backbone_options_at_the_top_level_go_to_the_backbone():
    """A dataset config's MLP section switched to a wrapper by name keeps its head."""
    opts = resolve_model_options(
        {"name": "gprec", "embedding_dim": 8, "head_units": [12, 6], "dropout": 0.1}
    )
    bb = opts["backbone"]
    assert bb["name"] == "mlp" and bb["head_units"] == [12, 6] and bb["dropout"] == 0.1
    assert bb["embedding_dim"] == 8 and "head_units" not in opts
    # another backbone's own options too
    opts = resolve_model_options({"name": "gprec", "backbone": {"name": "dcn"}, "cross_layers": 2})
    assert opts["backbone"]["cross_layers"] == 2


def test_an_option_written_at_both_levels_must_agree():
    with pytest.raises(ConfigError, match="head_units is \\[8\\] here and \\[4\\] in backbone"):
        resolve_model_options(
            {"name": "gprec", "head_units": [8], "backbone": {"name": "mlp", "head_units": [4]}}
        )
    same = resolve_model_options(
        {"name": "gprec", "head_units": [8], "backbone": {"name": "mlp", "head_units": [8]}}
    )
    assert same["backbone"]["head_units"] == [8]


def test_a_key_neither_level_knows_is_still_refused():
    with pytest.raises(ConfigError, match="cross_layers: unknown key"):
        resolve_model_options({"name": "gprec", "cross_layers": 2})  # the MLP has none


@pytest.mark.parametrize(
    "name, opts",
    [("gprec", {}), ("star", {"partition_field": "f4"}), ("apg", {}),
     ("pepnet", {"partition_field": "f4"}), ("dgpm", {})],
)  # fmt: skip
def test_the_wrapper_shares_the_backbones_embedding_table(fields, name, opts):
    """One table of field embeddings, the backbone's. STAR alone has a second `nn.Embedding`
    by design: its partition indicator's table (the paper's separate input), not a field one."""
    model = build_model(resolve_model_options({"name": name, **opts}), fields)
    assert isinstance(model, BackboneWrapper)
    assert model.embedding is model.backbone.embedding
    field_tables = [m for m in model.modules() if isinstance(m, FieldEmbedding)]
    assert len(field_tables) == 1 and field_tables[0] is model.backbone.embedding
    tables = {id(m) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    own = [model.indicator] if name == "star" else []
    assert tables == {id(model.embedding.table), *(id(t) for t in own)}


def test_partition_field_defaults_to_gender_and_is_checked():
    fields = [
        EncodedField("item_id", Role.ITEM, 9),
        EncodedField("user_id", Role.PERSONAL, 7),
        EncodedField("gender", Role.USER, 3),
        EncodedField("age", Role.USER, 8),
    ]
    assert partition_field_index(fields, None) == (2, 3)
    assert partition_field_index(fields, "age") == (3, 8)
    with pytest.raises(ConfigError) as err:
        partition_field_index(fields, "item_id")
    assert str(err.value) == (
        "model.partition_field: 'item_id' is an item field; user fields: user_id, gender, age"
    )
    with pytest.raises(ConfigError, match="'sex' is not a field of this data; user fields"):
        partition_field_index(fields, "sex")
    with pytest.raises(ConfigError, match="no 'gender' field to default to; name one of its"):
        partition_field_index(toy_fields(), None)
    assert partition_field_index(fields, "age", max_partitions=8) == (3, 8)
    with pytest.raises(ConfigError) as err:
        partition_field_index(fields, "age", max_partitions=7)
    assert str(err.value) == (
        "model.partition_field: 'age' has 8 values (partitions, unseen included), over "
        "model.max_partitions=7: each partition has its own parameters and compute; pick a "
        "coarser field or raise max_partitions"
    )


@pytest.mark.parametrize("name", ["mmoe", "ple", "star"])
def test_max_partitions_is_one_shared_option(name):
    assert resolve_model_options({"name": name})["max_partitions"] == 64
    with pytest.raises(ConfigError, match="max_partitions"):
        resolve_model_options({"name": name, "max_partitions": 0})
    # PEPNet's domain field costs the same whatever its count: no limit there
    with pytest.raises(ConfigError, match="model.max_partitions: unknown key"):
        resolve_model_options({"name": "pepnet", "max_partitions": 8})


def test_field_positions_and_user_field_positions():
    fields = toy_fields()  # f0, f1 items; f2 personal; f3, f4 user
    assert field_positions(fields, ["f3", "f0"], "model.k") == [3, 0]
    assert field_positions(fields, [], "model.k", allow_empty=True) == []
    with pytest.raises(ConfigError, match="^model.k: empty; fields: f0, f1, f2, f3, f4$"):
        field_positions(fields, [], "model.k")
    with pytest.raises(ConfigError, match="^model.k: x not a field of this data; fields: f0"):
        field_positions(fields, ["x"], "model.k", allow_empty=True)
    assert user_field_positions(fields, "model.k", "why") == [2, 3, 4]
    with pytest.raises(ConfigError) as err:
        user_field_positions(fields[:2], "model.k", "it reads them")
    assert str(err.value) == (
        "model.k: it reads them, but this data has no personal or user field; its fields: f0, f1"
    )
