"""GDCN, AutoInt and DESTINE as whole models: each one's defining computation against a
hand-written reference in plain torch (read from the model's parameters, heads looped over
explicitly), the option variants, the config level and a CLI smoke run. The shared contract is
`test_backbone_contract.py`; the layer blocks have their own tests (`test_interaction_layers.py`,
`test_attention_layers.py`)."""

import math

import pytest
import torch

from conftest import field_offsets, index_batch, plain_mlp, toy_fields
from gprec.config import parse_config
from gprec.errors import ConfigError
from gprec.models.registry import build_model, resolve_model_options

D = 4
F = len(toy_fields())


def build(name, **opts):
    """The model in float64, eval mode, every parameter moved off its initial value (std-1e-4
    embeddings would make every interaction vanish; LayerNorm's 1 and 0 would hide it)."""
    torch.manual_seed(0)
    model = build_model(
        resolve_model_options({"name": name, "embedding_dim": D, **opts}), toy_fields()
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        model.embedding.table.weight.normal_(generator=g)
    return model.double().eval()


batch = index_batch
mlp = plain_mlp


def linear(x, lin):
    return x @ lin.weight.t() + lin.bias


def embeddings(model, x):
    """`E` `(B, F, d)` and the first-order term `b + sum_i w_{x_i}` (if the model has one)."""
    offsets = field_offsets(model.fields)
    emb = model.embedding.table.weight[x + offsets]
    wide = model.deep_wide.wide if hasattr(model, "deep_wide") else None
    first = None if wide is None else wide.bias + wide.weights.table.weight[x + offsets].sum((1, 2))
    return emb, first


def check(model, x, r_ref, own_ref, logit_ref):
    with torch.no_grad():
        rep = model.represent(x, model.embedding(x))
        assert torch.allclose(rep.r, r_ref)
        if own_ref is None:
            assert rep.logit is None
        else:
            assert torch.allclose(rep.logit, own_ref)
        assert torch.allclose(model(x).logit, logit_ref)


# -- GDCN ---------------------------------------------------------------------------------------


def gated_step(c0, c, net, layer, gate_input=None):
    """c_0 * (W_c c_l + b_c) * sigmoid(W_g g) + c_l, the gate reading g (c_l unless given)."""
    g = c if gate_input is None else gate_input
    w_c, w_g, b_c = net.cross_weight(layer), net.gate_weight(layer), net.biases[layer]
    return c0 * (c @ w_c.t() + b_c) * torch.sigmoid(g @ w_g.t()) + c


def gated_cross(c0, net):
    """c_{l+1} = c_0 * (W_c c_l + b_c) * sigmoid(W_g c_l) + c_l."""
    c = c0
    for layer in range(net.n_layers):
        c = gated_step(c0, c, net, layer)
    return c


def test_gdcn_stacked_is_the_head_mlp_over_the_gated_cross_output():
    model = build("gdcn")
    x = batch()
    emb, _ = embeddings(model, x)
    c0 = emb.reshape(len(x), -1)
    c_l = gated_cross(c0, model.cross)
    assert (c_l - c0).abs().mean() > 0.1  # the cross layers do something: not vacuous
    check(model, x, c_l, None, mlp(c_l, model.head).squeeze(1))  # r_b = c_L; GDCN-S: MLP(c_L)
    assert model.cross.n_layers == 3 and model.deep is None
    assert model.head.layer_shapes == [(F * D, 64), (64, 32), (32, 16), (16, 1)]


def test_gdcn_parallel_is_a_linear_layer_over_cross_output_and_deep_tower():
    model = build("gdcn", structure="parallel", head_units=[], deep_units=[8, 6], cross_layers=2)
    x = batch()
    emb, _ = embeddings(model, x)
    c0 = emb.reshape(len(x), -1)
    h = mlp(c0, model.deep)  # no output layer: the tower's last hidden layer, after ReLU
    r = torch.cat([gated_cross(c0, model.cross), h], 1)
    w, b = model.head.output_layer.weight, model.head.output_layer.bias
    check(model, x, r, None, (r @ w.t() + b).squeeze(1))  # GDCN-P: w . [c_L; MLP(c_0)]
    assert model.representation_dim == F * D + 6 and model.cross.n_layers == 2
    # the default head over the same r_b is the GPRec paper's prediction MLP
    default = build("gdcn", structure="parallel")
    assert default.head.layer_shapes[0] == (F * D + 16, 64)


def test_gdcn_bias_starts_uniform_in_0_1_and_the_gate_reads_c_l():
    torch.manual_seed(0)
    model = build_model(resolve_model_options({"name": "gdcn"}), toy_fields())
    b = torch.cat(list(model.cross.biases))
    assert b.min() >= 0 and b.max() <= 1 and b.mean() > 0.3
    # with c_l != c_0 (layer 2 on), a gate on c_0 would give another output
    model = build("gdcn", cross_layers=2, head_units=[])
    x = batch(8)
    emb, _ = embeddings(model, x)
    c0 = emb.reshape(len(x), -1)
    net = model.cross
    c1 = gated_step(c0, c0, net, 0)
    wrong = gated_step(c0, c1, net, 1, gate_input=c0)
    with torch.no_grad():
        r = model.represent(x, model.embedding(x)).r
    assert torch.allclose(r, gated_cross(c0, net)) and not torch.allclose(r, wrong)


# -- AutoInt ------------------------------------------------------------------------------------


def layer_norm(v, norm):
    mean, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
    return (v - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def autoint_layer(layer, e, scale=True):
    """One interacting layer, head by head: ReLU(concat_h sum_k a_mk^h W_V^h e_k + W_res e_m)."""
    q, k, v = e @ layer.W_Q.t(), e @ layer.W_K.t(), e @ layer.W_V.t()
    heads = []
    for h in range(layer.num_heads):
        s = slice(h * layer.head_dim, (h + 1) * layer.head_dim)  # channels, not fields
        logits = q[..., s] @ k[..., s].transpose(1, 2)
        a = torch.softmax(logits / math.sqrt(layer.head_dim) if scale else logits, dim=-1)
        heads.append(a @ v[..., s])
    out = torch.cat(heads, -1)
    if layer.W_res is not None:
        out = out + e @ layer.W_res.t()
    out = torch.relu(out)
    return out if layer.norm is None else layer_norm(out, layer.norm)


def test_autoint_plus_is_linear_over_attention_plus_dnn_plus_first_order():
    """With `head_units: []`: FuxiCTR's AutoInt+ (wide + deep), w . flat(A_L) + DNN + LR."""
    model = build("autoint", head_units=[], attention_dim=8, num_heads=2)
    x = batch()
    emb, first = embeddings(model, x)
    a = emb
    for layer in model.attention:
        a = autoint_layer(layer, a)
    r = a.reshape(len(x), -1)
    own = mlp(emb.reshape(len(x), -1), model.deep_wide.deep).squeeze(1) + first
    lin = model.head.output_layer
    check(model, x, r, own, (r @ lin.weight.t() + lin.bias).squeeze(1) + own)
    assert len(model.attention) == 2 and model.representation_dim == F * 8


def test_autoint_defaults_and_the_head_mlp_over_the_attention_output():
    model = build("autoint")
    layers = list(model.attention)
    assert [(m.in_dim, m.attention_dim, m.num_heads) for m in layers] == [
        (D, 128, 4),
        (128, 128, 4),
    ]
    assert all(m.residual and m.scale and m.norm is not None for m in layers)
    assert model.deep_wide.deep.layer_shapes == [(F * D, 64), (64, 32), (32, 16), (16, 1)]
    assert model.head.layer_shapes[0] == (F * 128, 64) and model.deep_wide.wide is not None
    x = batch()
    emb, first = embeddings(model, x)
    a = autoint_layer(layers[1], autoint_layer(layers[0], emb))
    r = a.reshape(len(x), -1)
    own = mlp(emb.reshape(len(x), -1), model.deep_wide.deep).squeeze(1) + first
    check(model, x, r, own, mlp(r, model.head).squeeze(1) + own)


def test_autoint_plain_without_deep_wide_residual_scale_or_layer_norm():
    model = build(
        "autoint", deep=False, wide=False, residual=False, scale=False, layer_norm=False,
        attention_layers=3, attention_dim=6, num_heads=3,
    )  # fmt: skip
    assert model.deep_wide.deep is None and model.deep_wide.wide is None and len(model.attention) == 3
    x = batch()
    emb, _ = embeddings(model, x)
    a = emb
    for layer in model.attention:
        assert layer.W_res is None and layer.norm is None
        a = autoint_layer(layer, a, scale=False)
    r = a.reshape(len(x), -1)
    check(model, x, r, None, mlp(r, model.head).squeeze(1))


# -- DESTINE ------------------------------------------------------------------------------------


def destine_layer(layer, x, residual_input=None):
    """One disentangled layer, head by head: softmax_j((q_i - mu_q).(k_j - mu_k)) + softmax_j(u_j)
    over v_j, plus W_res r_i, then ReLU if the layer has it."""
    q, k, v = (
        x @ w.t() + b
        for w, b in zip(
            layer.qkv.weight.split(layer.attention_dim),
            layer.qkv.bias.split(layer.attention_dim),
            strict=True,
        )
    )
    if layer.relu_qkv:
        q, k, v = q.relu(), k.relu(), v.relu()
    heads = []
    for h in range(layer.num_heads):
        s = slice(h * layer.head_dim, (h + 1) * layer.head_dim)  # channels, not fields
        qh, kh, vh = q[..., s], k[..., s], v[..., s]
        mu_q, mu_k = qh.mean(1, keepdim=True), kh.mean(1, keepdim=True)
        pairwise = torch.softmax((qh - mu_q) @ (kh - mu_k).transpose(1, 2), dim=-1)
        if layer.W_unary is None:  # paper: mu_q . k_j
            u = (mu_q * kh).sum(-1)
        else:  # official: a learned score per field and head
            u = x @ layer.W_unary.weight[h] + layer.W_unary.bias[h]
        heads.append((pairwise + torch.softmax(u, -1).unsqueeze(1)) @ vh)
    out = torch.cat(heads, -1)
    if layer.W_res is not None:
        out = out + linear(x if residual_input is None else residual_input, layer.W_res)
    return out.relu() if layer.relu else out


def destine_reference(model, x, residual_input_last=False):
    emb, first = embeddings(model, x)
    a = emb
    for i, layer in enumerate(model.attention):
        last = i == len(model.attention) - 1
        a = destine_layer(layer, a, emb if last and residual_input_last else None)
    own = None
    if model.deep_wide.deep is not None:
        own = mlp(emb.reshape(len(x), -1), model.deep_wide.deep).squeeze(1)
    if first is not None:
        own = first if own is None else own + first
    return a.reshape(len(x), -1), own


def test_destine_defaults_residual_each_layer_relu_before_the_head_plus_deep_and_wide():
    model = build("destine")
    layers = list(model.attention)
    assert [(m.in_dim, m.attention_dim, m.num_heads) for m in layers] == [
        (D, 64, 1),
        (64, 64, 1),
        (64, 64, 1),
    ]
    assert all(m.W_res is not None and m.W_unary is None for m in layers)  # each layer; paper unary
    assert [m.relu for m in layers] == [False, False, True]  # ReLU only before the output layer
    x = batch()
    r, own = destine_reference(model, x)
    assert (r == 0).any() and (r > 0).any()  # the ReLU is exercised
    check(model, x, r, own, mlp(r, model.head).squeeze(1) + own)


def test_destine_official_last_layer_residual_and_unary_with_a_linear_head():
    """The official model: `linear(x) + attn_fc(ReLU(A_L + W_res E)) + mlp(flat E)`."""
    model = build(
        "destine", head_units=[], residual="last_layer", unary="official", attention_dim=6,
        num_heads=2, attention_layers=2, relu_before_attention=True,
    )  # fmt: skip
    first_layer, last_layer = model.attention
    assert first_layer.W_res is None and last_layer.residual_dim == D  # W_res reads E
    assert first_layer.relu_qkv and not last_layer.relu_qkv  # official: first layer only
    x = batch()
    r, own = destine_reference(model, x, residual_input_last=True)
    lin = model.head.output_layer
    check(model, x, r, own, (r @ lin.weight.t() + lin.bias).squeeze(1) + own)


def test_destine_two_heads_split_the_embedding_dimension_and_variants_without_extras():
    model = build(
        "destine",
        num_heads=2,
        attention_dim=8,
        residual="none",
        relu_output=False,
        deep=False,
        wide=False,
        scale=False,
    )
    assert model.deep_wide.deep is None and model.deep_wide.wide is None
    assert all(m.W_res is None and not m.relu for m in model.attention)
    x = batch()
    r, own = destine_reference(model, x)
    assert own is None
    check(model, x, r, None, mlp(r, model.head).squeeze(1))


@pytest.mark.parametrize("name", ["autoint", "destine"])
def test_attention_dropout_runs_in_training_only(name):
    model = build(name, attention_dropout=0.5)
    x = batch(16)
    with torch.no_grad():
        assert torch.equal(model(x).logit, model(x).logit)  # eval: deterministic
        model.train()
        assert not torch.equal(model(x).logit, model(x).logit)


@pytest.mark.parametrize("name", ["autoint", "destine"])
def test_heads_must_divide_the_attention_dim(name):
    with pytest.raises(ConfigError, match="model.num_heads.*not divisible"):
        parse_config({"model": {"name": name, "attention_dim": 10, "num_heads": 3}})


# -- config level and CLI -----------------------------------------------------------------------

NAMES = ["gdcn", "autoint", "destine"]


def test_defaults_at_the_config_level():
    models = {n: parse_config({"model": {"name": n}}).model for n in NAMES}
    assert all(
        m["embedding_dim"] == 16 and m["head_units"] == [64, 32, 16] for m in models.values()
    )
    gdcn, autoint, destine = models["gdcn"], models["autoint"], models["destine"]
    assert (gdcn["structure"], gdcn["cross_layers"]) == ("stacked", 3)
    assert (autoint["attention_layers"], autoint["num_heads"], autoint["attention_dim"]) == (
        2,
        4,
        128,
    )
    assert autoint["residual"] and autoint["scale"] and autoint["layer_norm"]
    assert autoint["deep"] and autoint["wide"] and autoint["deep_units"] == [64, 32, 16]
    assert (destine["attention_layers"], destine["num_heads"], destine["attention_dim"]) == (
        3,
        1,
        64,
    )
    assert destine["residual"] == "each_layer" and destine["relu_output"] and destine["deep"]
    with pytest.raises(ConfigError, match="model.structure"):
        parse_config({"model": {"name": "gdcn", "structure": "sideways"}})
    with pytest.raises(ConfigError, match="model.residual"):
        parse_config({"model": {"name": "destine", "residual": "first_layer"}})
