"""APG (models/user_modeling/apg.py): shapes, training, the generated weights against a hand
computation of U S(z_b) V, the head run with them, the options and their errors, the CLI."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import field_offsets, toy_fields, train_steps
from conftest import toy_batch as batch
from gprec.config import parse_config
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.models.registry import build_model, resolve_model_options
from gprec.models.user_modeling.apg import APG
from gprec.training.run import count_parameters

D = 4
ROOT = Path(__file__).resolve().parents[1]


def make(seed=0, fields=None, **opts) -> APG:
    torch.manual_seed(seed)
    cfg = resolve_model_options({"name": "apg", "embedding_dim": D, **opts})
    return build_model(cfg, fields or toy_fields())


def users_twice(n=8) -> torch.Tensor:
    """`n` samples, then the same users (condition fields f2-f4) with other items: 2n rows,
    n distinct conditions, so the hypernetworks run once per user."""
    x, _ = batch(n)
    again = x.clone()
    again[:, :2] = batch(n, seed=1)[0][:, :2]
    return torch.cat([x, again])


def test_shapes_and_defaults():
    model = make()
    x, y = batch(16)
    out = model(x, y)
    assert out.logit.shape == (16,) and out.aux_losses == {}
    o = model.options
    assert (o.rank, o.overparam_dim, o.hypernet_units, o.share_uv) == (8, 64, [64, 32], True)
    assert o.backbone["head_units"] == [64, 32, 16] and o.embedding_dim == D
    # the condition: the personal and user fields (f2, f3, f4), in schema order
    assert model.condition_idx.tolist() == [2, 3, 4]
    in_dim = len(model.fields) * D
    shapes = [w.shape for w in model.generated_weights(x)]
    assert shapes == [(16, in_dim, 64), (16, 64, 32), (16, 32, 16)]  # hidden layers only
    assert type(model).description


@pytest.mark.parametrize(
    "opts",
    [{}, {"overparam_dim": None}, {"share_uv": False, "overparam_dim": None},
     {"output_layer": True, "overparam_dim": None}, {"backbone": {"name": "dcn"}}],
)  # fmt: skip
def test_a_few_training_steps_lower_the_loss(opts):
    model = make(**opts)
    x, y = batch(256)
    losses = train_steps(model, x, y, steps=30, lr=0.01)
    assert losses[-1] < losses[0] - 0.05


# -- the mechanism, by hand ------------------------------------------------------------------


def hand_s(model: APG, z: torch.Tensor, layer: int) -> torch.Tensor:
    """S(z) of one hidden layer from the hypernetwork's parameters: layer `layer`'s own slice of
    the batched first GEMM, then its own weights, ReLU between; (B, k*k) read row-major."""
    hyper, k = model.hyper_s, model.options.rank
    h1 = hyper.first_width
    w0 = hyper.first.weight[layer * h1 : (layer + 1) * h1]
    h = torch.relu(z @ w0.T + hyper.first.bias[layer * h1 : (layer + 1) * h1])
    n = len(hyper.weights)
    for j, (w, b) in enumerate(zip(hyper.weights, hyper.biases, strict=True)):
        h = h @ w[layer] + b[layer]
        if j < n - 1:
            h = torch.relu(h)
    return h.view(-1, k, k)


def hand_condition(model: APG, x: torch.Tensor) -> torch.Tensor:
    """z_b: the embedding rows of the sample's personal and user fields, concatenated."""
    rows = model.embedding.table.weight[x + field_offsets(model.fields)]  # (B, F, d)
    return rows[:, [2, 3, 4]].flatten(1)


@torch.no_grad()
def test_generated_weights_equal_u_s_v_by_hand_and_differ_across_users():
    model = make(embedding_init_std=0.5).eval()
    x = users_twice(8)
    z = hand_condition(model, x)
    generated = model.generated_weights(x)
    for layer, factors in enumerate(model.factors):
        u = factors.u[0] @ factors.u[1]  # over-parameterised: U = U1 U2, V = V1 V2
        v = factors.v[0] @ factors.v[1]
        s = hand_s(model, z, layer)
        for b in range(len(x)):
            assert torch.allclose(generated[layer][b], u @ s[b] @ v, atol=1e-5)
        # rank k, and not the identity-initialised delta of an additive scheme
        assert torch.linalg.matrix_rank(generated[layer][0]) == model.options.rank
        assert (s[0] - torch.eye(model.options.rank)).abs().max() > 0.05
    # the toy rows 0 and 1 are different users: their weights differ
    assert not torch.equal(x[0, 2:], x[1, 2:])
    for w in generated:
        assert (w[0] - w[1]).abs().max() > 1e-3 * w[0].abs().max()


@torch.no_grad()
def test_the_head_runs_x_times_u_s_v_plus_b_per_sample():
    """The logit is the head's forward with each hidden weight replaced by U S(z_b) V (its bias
    kept); the head's own hidden weights play no part (APG replaces, it does not add)."""
    model = make(embedding_init_std=0.5).eval()
    x = users_twice(8)
    head = model.backbone.head
    emb = model.embedding.table.weight[x + field_offsets(model.fields)]
    z = hand_condition(model, x)
    h = emb.flatten(1)
    for layer, factors in enumerate(model.factors):
        w = (factors.u[0] @ factors.u[1]) @ hand_s(model, z, layer) @ (factors.v[0] @ factors.v[1])
        h = torch.relu(torch.einsum("bi,bio->bo", h, w) + head.linears[layer].bias)
    expected = h @ head.linears[-1].weight.T + head.linears[-1].bias
    assert torch.allclose(model(x).logit, expected.squeeze(-1), atol=1e-5)
    for lin in head.linears[:-1]:
        lin.weight.normal_()  # replaced: changing them changes nothing
    assert torch.allclose(model(x).logit, expected.squeeze(-1), atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize(
    "opts", [{"share_uv": False, "overparam_dim": None}, {"output_layer": True}]
)
def test_the_other_forms_run_the_head_with_their_generated_weights(opts):
    model = make(embedding_init_std=0.5, **opts).eval()
    x = users_twice(8)
    head = model.backbone.head
    weights = model.generated_weights(x)
    h = model.embedding(x).flatten(1)
    for i, lin in enumerate(head.linears):
        w = weights[i] if i < len(weights) else lin.weight.T.expand(len(x), -1, -1)
        h = torch.einsum("bi,bio->bo", h, w) + lin.bias
        if i < len(head.linears) - 1:
            h = torch.relu(h)
    assert torch.allclose(model(x).logit, h.squeeze(-1), atol=1e-5)
    assert (weights[0][0] - weights[0][1]).abs().max() > 0
    if opts.get("output_layer"):
        assert len(weights) == 4 and weights[-1].shape == (16, 16, 1)
        assert torch.linalg.matrix_rank(weights[-1][0]) == 1
    else:  # U_b and V_b generated per sample: rank k still, and sample-specific
        assert model.factors is None and len(model.hyper_uv) == 3


def test_running_the_hypernetworks_once_per_user_changes_nothing():
    """dedup_condition: the same logits and the same gradients, with a batch in which every
    user appears twice (the hypernetworks see 8 conditions, not 16)."""
    x = users_twice(8)
    y = (torch.arange(16) % 3 == 0).float()
    results = []
    for dedup in (True, False):
        model = make(embedding_init_std=0.5, dedup_condition=dedup)
        z, inverse = model._condition(x, model.embedding(x))
        assert (inverse is not None) == dedup and len(z) == (8 if dedup else 16)
        F.binary_cross_entropy_with_logits(model(x).logit, y).backward()
        results.append((model(x).logit, [p.grad for p in model.parameters()]))
    (a, grads_a), (b, grads_b) = results
    assert torch.allclose(a, b, atol=1e-6)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        assert (ga is None) == (gb is None)
        assert ga is None or torch.allclose(ga, gb, atol=1e-6)


@pytest.mark.parametrize("output_layer", [False, True])
def test_the_replaced_head_weights_are_frozen_and_not_counted(output_layer):
    """Only the generated layers' weights: their biases and the shared output layer train."""
    model = make(output_layer=output_layer)
    head = model.backbone.head
    n = len(head.linears)
    frozen = [i for i in range(n) if not head.linears[i].weight.requires_grad]
    assert frozen == list(range(n if output_layer else n - 1))
    assert all(lin.bias.requires_grad for lin in head.linears)
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total - sum(head.linears[i].weight.numel() for i in frozen)


def test_named_condition_fields():
    model = make(condition_fields=["f2", "f0"])
    assert model.condition_idx.tolist() == [2, 0]
    x, _ = batch(4)
    assert model(x).logit.shape == (4,)


# -- options and their errors ----------------------------------------------------------------


def config_error(model: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config({"model": model}, "c.yaml")
    return str(err.value)


def test_rank_above_the_smallest_hidden_width_is_a_config_error():
    message = config_error({"name": "apg", "rank": 32})  # FuxiCTR's APG default on [64, 32, 16]
    assert "model.rank" in message and "use rank <= 16" in message
    assert parse_config({"model": {"name": "apg", "rank": 16}}).model["rank"] == 16
    message = config_error({"name": "apg", "rank": 8, "head_units": [64, 4]})
    assert "model.rank" in message and "smallest hidden width 4" in message
    with pytest.raises(ConfigError, match="model.rank: 8 exceeds the head's input width 4"):
        make(fields=toy_fields()[2:3])  # one field of width 4 feeds the head


def test_a_backbone_whose_head_takes_no_layer_mods_is_refused_naming_the_supported():
    message = config_error({"name": "apg", "backbone": {"name": "finalmlp"}})
    assert "model.backbone.name" in message and "'finalmlp' does not allow" in message
    assert "supported backbones:" in message and "mlp" in message.split("supported backbones:")[1]
    assert "finalmlp" not in message.split("supported backbones:")[1]


@pytest.mark.parametrize(
    "model, message",
    [
        ({"share_uv": False}, "with share_uv: false set it to null"),
        ({"overparam_dim": 4}, "P must be >= rank"),
        ({"rank": 0}, "model.rank"),
        ({"rnak": 4}, "model.rnak: unknown key"),
        ({"head_units": []}, "this head has none"),
    ],
)
def test_bad_options_are_one_clear_config_error(model, message):
    assert message in config_error({"name": "apg", **model})


def test_unknown_condition_fields_are_a_config_error_naming_the_fields():
    with pytest.raises(ConfigError, match="model.condition_fields: nope not a field .*f0, f1"):
        make(condition_fields=["nope"])
    with pytest.raises(ConfigError, match="named twice"):
        make(condition_fields=["f2", "f2"])
    items_only = [EncodedField("item", Role.ITEM, 5), EncodedField("genre", Role.ITEM, 3)]
    with pytest.raises(ConfigError) as err:
        make(fields=items_only)
    assert str(err.value) == (
        "model.condition_fields: null conditions on the personal and user fields (name fields "
        "instead), but this data has no personal or user field; its fields: item, genre"
    )
