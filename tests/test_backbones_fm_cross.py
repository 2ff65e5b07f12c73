"""DeepFM, DCN and DCNv2 as whole models: each one's defining computation against a hand-written
reference in plain torch (read from the model's parameters), the option variants, the config
level and a CLI smoke run. The shared contract is `test_backbone_contract.py`; the layer blocks
have their own tests (`test_interaction_layers.py`)."""

import pytest
import torch

from conftest import field_offsets, index_batch, plain_mlp, toy_fields
from gprec.config import parse_config
from gprec.errors import ConfigError
from gprec.models.registry import build_model, resolve_model_options

D = 4
F = len(toy_fields())


def build(name, **opts):
    """The model in float64, eval mode, with embeddings of std 1 (the default 1e-4 would make
    every interaction term vanish and the comparisons below vacuous)."""
    torch.manual_seed(0)
    model = build_model(
        resolve_model_options({"name": name, "embedding_dim": D, **opts}), toy_fields()
    )
    with torch.no_grad():
        model.embedding.table.weight.normal_()
    return model.double().eval()


batch = index_batch
mlp = plain_mlp


def linear(x, lin):
    return x @ lin.weight.t() + lin.bias


def flat_embeddings(model, x):
    offsets = field_offsets(model.fields)
    return model.embedding.table.weight[x + offsets], offsets  # (B, F, d)


# -- DeepFM -----------------------------------------------------------------------------------


def test_deepfm_logit_is_bias_first_order_pairwise_fm_and_mlp_of_flat_embeddings():
    model = build("deepfm")
    x = batch()
    emb, offsets = flat_embeddings(model, x)
    first = model.first_order.bias + model.first_order.weights.table.weight[x + offsets].sum((1, 2))
    fm = sum((emb[:, i] * emb[:, j]).sum(1) for i in range(F) for j in range(i + 1, F))
    assert fm.abs().mean() > 0.5  # not negligible: the check below is not vacuous
    flat = emb.reshape(len(x), -1)
    ref = first + fm + mlp(flat, model.head).squeeze(1)
    with torch.no_grad():
        rep = model.represent(x, model.embedding(x))
        assert torch.allclose(rep.r, flat)  # r_b = the deep part's input
        assert torch.allclose(rep.logit, first + fm)  # first order + FM: the additive logit
        assert torch.allclose(model(x).logit, ref)
    # the first-order table is its own, 1 wide; the deep part is the head [64, 32, 16, 1]
    assert model.first_order.weights.table.weight.shape == (
        sum(f.cardinality for f in model.fields),
        1,
    )
    assert model.head.layer_shapes == [(F * D, 64), (64, 32), (32, 16), (16, 1)]


# -- DCN ----------------------------------------------------------------------------------------


def dcn_cross(x0, weights, biases):
    x = x0
    for w, b in zip(weights, biases, strict=True):
        x = x0 * (x @ w).unsqueeze(1) + b + x
    return x


def test_dcn_r_b_is_cross_output_and_deep_tower_and_the_head_is_w_dot_r_b():
    model = build("dcn", head_units=[])  # the DCN paper's linear combination layer
    with torch.no_grad():  # non-zero cross biases, so they are checked too
        for b in model.cross.biases:
            b.normal_()
    x = batch()
    emb, _ = flat_embeddings(model, x)
    x0 = emb.reshape(len(x), -1)
    xl = dcn_cross(x0, model.cross.weights, model.cross.biases)
    h = mlp(x0, model.deep)
    r = torch.cat([xl, h], 1)
    with torch.no_grad():
        rep = model.represent(x, model.embedding(x))
        assert rep.logit is None and torch.allclose(rep.r, r)
        # logit = w . [x_L; h_L] + b: the head is one linear layer by default
        (w,) = model.head.linears
        assert torch.allclose(model(x).logit, (r @ w.weight.t()).squeeze(1) + w.bias)
    assert model.cross.n_layers == 3 and model.deep.layer_shapes == [
        (F * D, 64),
        (64, 32),
        (32, 16),
    ]
    assert model.representation_dim == F * D + 16 and model.head.layer_shapes == [(F * D + 16, 1)]


def test_dcn_options_head_mlp_and_deep_tower():
    model = build("dcn", head_units=[8], deep_units=[5, 3], cross_layers=2)
    assert model.head.layer_shapes == [(F * D + 3, 8), (8, 1)] and model.cross.n_layers == 2
    x = batch()
    with torch.no_grad():
        rep = model.represent(x, model.embedding(x))
        assert torch.allclose(model(x).logit, mlp(rep.r, model.head).squeeze(1))
    # dropout, batch_norm and activation reach the deep tower, not only the head
    tower = build("dcn", dropout=0.1, batch_norm=True, activation="tanh").deep
    assert isinstance(tower.norms[0], torch.nn.BatchNorm1d)
    assert isinstance(tower.dropout, torch.nn.Dropout) and isinstance(
        tower.activation, torch.nn.Tanh
    )
    # deep_units: [] leaves the deep tower out (FuxiCTR's dnn_hidden_units: []): r_b = x_L
    model = build("dcn", deep_units=[])
    assert model.deep is None and model.representation_dim == F * D
    with torch.no_grad():
        x0 = model.embedding(x).flatten(1)
        assert torch.allclose(model.represent(x, model.embedding(x)).r, model.cross(x0))


# -- DCNv2 ------------------------------------------------------------------------------------


def test_dcnv2_parallel_full_rank_is_x0_times_Wx_plus_b_plus_x_and_a_deep_tower():
    model = build("dcnv2", head_units=[])  # the paper's linear output layer
    x = batch()
    emb, _ = flat_embeddings(model, x)
    x0 = emb.reshape(len(x), -1)
    xl = x0
    for lin in model.cross.linears:
        with torch.no_grad():
            lin.bias.normal_()
        xl = x0 * linear(xl, lin) + xl
    r = torch.cat([xl, mlp(x0, model.parallel)], 1)
    with torch.no_grad():
        rep = model.represent(x, model.embedding(x))
        assert rep.logit is None and torch.allclose(rep.r, r)
        (w,) = model.head.linears
        assert torch.allclose(model(x).logit, linear(r, w).squeeze(1))
    assert len(model.cross.linears) == 5 and model.cross.low_rank is None
    assert model.stacked is None  # the unused tower is not built (no parameter without grad)
    assert model.representation_dim == F * D + 16


def test_dcnv2_low_rank_cross_is_x0_times_U_V_x_plus_b_plus_x():
    model = build("dcnv2", low_rank=3, structure="stacked", stacked_units=[])
    x = batch()
    emb, _ = flat_embeddings(model, x)
    x0 = emb.reshape(len(x), -1)
    xl = x0
    for down, up in zip(model.cross.down, model.cross.up, strict=True):
        assert down.weight.shape == (3, F * D) and up.weight.shape == (F * D, 3)
        xl = x0 * (xl @ down.weight.t() @ up.weight.t() + up.bias) + xl
    with torch.no_grad():
        # stacked with no tower: r_b = x_L (the cross network alone)
        assert torch.allclose(model.represent(x, model.embedding(x)).r, xl)
    assert model.parallel is None and model.representation_dim == F * D


def test_dcnv2_mixture_of_low_rank_experts():
    model = build(
        "dcnv2", low_rank=2, n_experts=3, cross_layers=1, structure="stacked", stacked_units=[]
    )
    c = model.cross
    x = batch()
    x0 = model.embedding(x).flatten(1).detach()
    # paper Eq. 3, one expert at a time: sum_k softmax_k(g_k . x) x0 * (U_k tanh(C_k tanh(V_k^T x)) + b)
    gates = torch.softmax(x0 @ c.gate[0].t(), 1)
    out = x0.clone()
    for k in range(3):
        h = torch.tanh(torch.tanh(x0 @ c.down[0][k].t()) @ c.mid[0][k].t())
        out = out + gates[:, k : k + 1] * x0 * (h @ c.up[0][k] + c.bias[0])
    with torch.no_grad():
        assert torch.allclose(model.represent(x, model.embedding(x)).r, out)


@pytest.mark.parametrize("structure", ["parallel", "stacked", "stacked_parallel"])
def test_dcnv2_structures_wire_the_towers(structure):
    model = build(
        "dcnv2", structure=structure, deep_units=[6, 5], stacked_units=[7], head_units=[4]
    )
    x = batch()
    with torch.no_grad():
        x0 = model.embedding(x).flatten(1)
        xl = model.cross(x0)
        expected = {
            "parallel": lambda: torch.cat([xl, mlp(x0, model.parallel)], 1),
            "stacked": lambda: mlp(xl, model.stacked),
            "stacked_parallel": lambda: torch.cat(
                [mlp(xl, model.stacked), mlp(x0, model.parallel)], 1
            ),
        }[structure]()
        rep = model.represent(x, model.embedding(x))
        assert rep.r.shape == (len(x), model.representation_dim)
        assert torch.allclose(rep.r, expected)
        assert torch.allclose(model(x).logit, mlp(expected, model.head).squeeze(1))
    width = {"parallel": F * D + 5, "stacked": 7, "stacked_parallel": 7 + 5}[structure]
    assert model.representation_dim == width and model.head.layer_shapes[0] == (width, 4)
    # only the towers the structure uses exist (no parameter that never gets a gradient)
    assert (model.stacked is None) == (structure == "parallel")
    assert (model.parallel is None) == (structure == "stacked")


@pytest.mark.parametrize(
    "opts, width",
    [
        ({"structure": "parallel", "deep_units": []}, F * D),  # cross network alone
        ({"structure": "stacked", "stacked_units": []}, F * D),  # cross network alone
        ({"structure": "stacked_parallel", "stacked_units": []}, F * D + 16),  # = parallel
        ({"structure": "stacked_parallel", "deep_units": [], "stacked_units": [16]}, 16),
    ],
)
def test_dcnv2_an_empty_tower_is_left_out(opts, width):
    model = build("dcnv2", **opts)
    x = batch()
    with torch.no_grad():
        x0 = model.embedding(x).flatten(1)
        xl = model.cross(x0)
        parts = [xl if model.stacked is None else mlp(xl, model.stacked)]
        parts += [] if model.parallel is None else [mlp(x0, model.parallel)]
        r = model.represent(x, model.embedding(x)).r
    assert model.representation_dim == width and r.shape == (len(x), width)
    assert torch.allclose(r, torch.cat(parts, 1))


def test_dcnv2_mixture_without_low_rank_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model\.n_experts: .*needs low_rank"):
        parse_config({"model": {"name": "dcnv2", "n_experts": 4}})
    with pytest.raises(ConfigError, match="model.structure"):
        parse_config({"model": {"name": "dcnv2", "structure": "sideways"}})


# -- config level and CLI -----------------------------------------------------------------------

NAMES = ["deepfm", "dcn", "dcnv2"]


def test_defaults_at_the_config_level():
    models = {n: parse_config({"model": {"name": n}}).model for n in NAMES}
    assert all(m["embedding_dim"] == 16 for m in models.values())
    assert models["deepfm"]["head_units"] == [64, 32, 16]
    dcn, dcnv2 = models["dcn"], models["dcnv2"]
    assert (dcn["cross_layers"], dcn["deep_units"], dcn["head_units"]) == (
        3,
        [64, 32, 16],
        [64, 32, 16],
    )
    assert (dcnv2["cross_layers"], dcnv2["structure"], dcnv2["low_rank"], dcnv2["n_experts"]) == (
        5,
        "parallel",
        None,
        None,
    )
    assert (
        dcnv2["deep_units"] == dcnv2["head_units"] == [64, 32, 16] and dcnv2["stacked_units"] == []
    )
