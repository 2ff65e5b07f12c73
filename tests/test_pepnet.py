"""PEPNet (models/user_modeling/pepnet.py): shapes, training, the gates against a hand
computation (in (0, 2), 1 at a zero pre-activation: the ungated backbone), the stop-gradients,
the options and their errors, the CLI."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import field_offsets, toy_fields, train_steps
from conftest import toy_batch as batch
from gprec.config import parse_config
from gprec.data.schema import EncodedField
from gprec.errors import ConfigError
from gprec.models.registry import build_model, resolve_model_options
from gprec.models.user_modeling.pepnet import PEPNet

D = 4
ROOT = Path(__file__).resolve().parents[1]
DOMAIN, PRIOR = 4, [2, 0]  # gender; user_id (f2, personal) and the first item field (f0)


def fields_with_gender() -> list[EncodedField]:
    fields = toy_fields()
    fields[DOMAIN] = EncodedField("gender", fields[DOMAIN].role, fields[DOMAIN].cardinality)
    return fields


def make(seed=0, fields=None, **opts) -> PEPNet:
    torch.manual_seed(seed)
    cfg = resolve_model_options({"name": "pepnet", "embedding_dim": D, **opts})
    return build_model(cfg, fields or fields_with_gender())


def test_shapes_and_defaults():
    model = make()
    x, y = batch(16)
    out = model(x, y)
    assert out.logit.shape == (16,) and out.aux_losses == {}
    o = model.options
    assert (o.epnet, o.ppnet, o.epnet_granularity, o.ppnet_layers, o.gamma) == (
        True, True, "field", "all", 2.0,
    )  # fmt: skip
    assert o.backbone["head_units"] == [64, 32, 16]
    assert model.domain_col == DOMAIN and model.prior_idx.tolist() == PRIOR
    ep, pp = model.gates(x)
    assert ep.shape == (16, 5)  # one gate per field
    assert [g.shape for g in pp] == [(16, 5 * D), (16, 64), (16, 32), (16, 16)]  # every layer
    ep, pp = make(epnet_granularity="dimension", ppnet_layers="hidden").gates(x)
    assert ep.shape == (16, 5 * D) and pp[0] is None and pp[1].shape == (16, 64)
    assert type(model).description


@pytest.mark.parametrize(
    "opts",
    [{}, {"epnet_granularity": "dimension"}, {"ppnet_layers": "hidden"}, {"epnet": False},
     {"ppnet": False}, {"gate_units": 8}, {"backbone": {"name": "dcn"}},
     {"ppnet": False, "backbone": {"name": "finalmlp"}}],
)  # fmt: skip
def test_a_few_training_steps_lower_the_loss(opts):
    model = make(**opts)
    x, y = batch(256)
    losses = train_steps(model, x, y, steps=30, lr=0.01)
    assert losses[-1] < losses[0] - 0.05


# -- the mechanism, by hand ------------------------------------------------------------------


def table_rows(model: PEPNet, x: torch.Tensor) -> torch.Tensor:
    return model.embedding.table.weight[x + field_offsets(model.fields)]  # (B, F, d)


def hand_gates(model: PEPNet, x: torch.Tensor):
    """EPNet's and PPNet's gates, 2 sigmoid(W2 relu(W1 u + b1) + b2), from their parameters."""
    e = table_rows(model, x)
    lin1, lin2 = model.ep_gate.net.linears
    u = torch.cat([e[:, DOMAIN], e.flatten(1)], 1)  # [E_d ; E]
    ep = 2 * torch.sigmoid(torch.relu(u @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)
    o_ep = e * ep[:, :, None]  # one gate per field, over its d dimensions
    u = torch.cat([e[:, PRIOR].flatten(1), o_ep.flatten(1)], 1)  # [E_prior ; O_ep]
    h = torch.relu(u @ model.pp_first.weight.T + model.pp_first.bias)
    pp, start = [], 0
    for lin in model.pp_second:  # each gate's own slice of the shared first layer
        part = h[:, start : start + lin.in_features]
        pp.append(2 * torch.sigmoid(part @ lin.weight.T + lin.bias))
        start += lin.in_features
    return ep, o_ep, pp


@torch.no_grad()
def test_the_gates_and_the_logit_equal_the_formulas_by_hand_and_lie_in_0_2():
    model = make(embedding_init_std=1.0).eval()
    for p in [
        *model.ep_gate.parameters(),
        *model.pp_first.parameters(),
        *model.pp_second.parameters(),
    ]:
        p.mul_(1.5)  # wider pre-activations: the gates spread over (0, 2)
    x, _ = batch(64)
    ep, o_ep, pp = hand_gates(model, x)
    got_ep, got_pp = model.gates(x)
    assert torch.allclose(got_ep, ep, atol=1e-6)
    for got, want in zip(got_pp, pp, strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    every = torch.cat([ep.flatten(), *(g.flatten() for g in pp)])
    assert every.min() > 0 and every.max() < 2
    assert every.min() < 0.2 and every.max() > 1.8  # the range is used, not only near 1
    # the head: each layer's input multiplied by its gate, then the layer as it is
    h = o_ep.flatten(1)
    head = model.backbone.head
    for i, (lin, g) in enumerate(zip(head.linears, pp, strict=True)):
        h = (h * g) @ lin.weight.T + lin.bias
        if i < len(head.linears) - 1:
            h = torch.relu(h)
    assert torch.allclose(model(x).logit, h.squeeze(-1), atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("granularity", ["field", "dimension"])
def test_zero_pre_activations_give_gates_of_1_and_the_ungated_backbone(granularity):
    model = make(embedding_init_std=1.0, epnet_granularity=granularity).eval()
    x, _ = batch(32)
    assert not torch.allclose(model(x).logit, model.backbone(x).logit, atol=1e-4)
    for lin in [model.ep_gate.net.linears[-1], *model.pp_second]:
        lin.weight.zero_()
        lin.bias.zero_()
    ep, pp = model.gates(x)
    assert torch.equal(ep, torch.ones_like(ep)) and all(
        torch.equal(g, torch.ones_like(g)) for g in pp
    )
    assert torch.allclose(model(x).logit, model.backbone(x).logit, atol=1e-6)


def embedding_grad_by_field(model: PEPNet, x: torch.Tensor) -> list[float]:
    """|gradient| summed over the table rows each field's values in `x` use."""
    grad = model.embedding.table.weight.grad
    rows = x + field_offsets(model.fields)
    return [grad[rows[:, f].unique()].abs().sum().item() for f in range(len(model.fields))]


def test_stop_gradient_the_embeddings_get_no_gradient_through_the_gate_inputs():
    """Backpropagating EPNet's gates alone reaches only the domain field's embedding (E is
    stopped in [E_d ; sg(E)]); PPNet's gates alone reach only the prior fields' (O_ep is
    stopped in [E_prior ; sg(O_ep)]) and never EPNet."""
    model = make(embedding_init_std=0.5)
    x, y = batch(64)
    emb = model.embedding(x)
    _, delta = model._epnet(emb)
    delta.sum().backward()
    grads = embedding_grad_by_field(model, x)
    assert grads[DOMAIN] > 0 and all(g == 0 for f, g in enumerate(grads) if f != DOMAIN)

    # without the stop-gradient the same gate would reach every field: the check has teeth
    model.zero_grad(set_to_none=True)
    emb = model.embedding(x)
    model.ep_gate(torch.cat([emb[:, DOMAIN], emb.flatten(1)], 1)).sum().backward()
    assert all(g > 0 for g in embedding_grad_by_field(model, x))

    model.zero_grad(set_to_none=True)
    emb = model.embedding(x)
    o_ep, _ = model._epnet(emb)
    sum(g.sum() for g in model._ppnet(emb, o_ep)).backward()
    grads = embedding_grad_by_field(model, x)
    assert all((g > 0) == (f in PRIOR) for f, g in enumerate(grads))
    assert all(p.grad is None for p in model.ep_gate.parameters())

    # the whole model trains every field's embedding, through O_ep = delta * E
    model.zero_grad(set_to_none=True)
    F.binary_cross_entropy_with_logits(model(x, y).logit, y).backward()
    assert all(g > 0 for g in embedding_grad_by_field(model, x))


# -- options and their errors ----------------------------------------------------------------


def config_error(model: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config({"model": model}, "c.yaml")
    return str(err.value)


def test_a_backbone_whose_head_takes_no_layer_mods_is_refused_unless_ppnet_is_off():
    message = config_error({"name": "pepnet", "backbone": {"name": "finalmlp"}})
    assert "model.backbone.name" in message and "'finalmlp' does not allow" in message
    assert "supported backbones:" in message and "set ppnet: false" in message
    raw = {"name": "pepnet", "ppnet": False, "backbone": {"name": "finalmlp"}}
    assert parse_config({"model": raw}).model["ppnet"] is False


@pytest.mark.parametrize(
    "model, message",
    [
        ({"epnet": False, "ppnet": False}, "model.ppnet: with epnet and ppnet both false"),
        ({"gamma": 0}, "model.gamma"),
        ({"epnet_granularity": "row"}, "model.epnet_granularity"),
        ({"gate_unit": 8}, "model.gate_unit: unknown key"),
    ],
)
def test_bad_options_are_one_clear_config_error(model, message):
    assert message in config_error({"name": "pepnet", **model})


def test_the_domain_field_defaults_to_gender_and_its_absence_is_a_clear_error():
    with pytest.raises(ConfigError, match="no 'gender' field to default to; .*f2, f3, f4"):
        make(fields=toy_fields())
    assert make(fields=toy_fields(), partition_field="f3").domain_col == 3
    assert make(fields=toy_fields(), epnet=False).ep_gate is None  # no domain needed
    with pytest.raises(ConfigError, match="'f0' is an item field"):
        make(partition_field="f0")


def test_a_head_without_hidden_layers():
    assert make(head_units=[]).gates(batch(4)[0])[1][0].shape == (4, 5 * D)  # its one layer
    with pytest.raises(ConfigError, match="model.ppnet_layers: hidden, but the head has no"):
        make(head_units=[], ppnet_layers="hidden")


def test_prior_fields_named_or_missing():
    assert make(prior_fields=["f3"]).prior_idx.tolist() == [3]
    with pytest.raises(ConfigError, match="model.prior_fields: nope not a field"):
        make(prior_fields=["nope"])
