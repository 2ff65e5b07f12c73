"""FinalMLP (`finalmlp`): the whole model against a plain-torch reference, its options, its head
(the bilinear fusion, no weight deltas, no extra inputs), GPRec (ensemble only), the config and
CLI levels; and `gprec models` listing descriptions and strategies."""

import pytest
import torch
import torch.nn.functional as F

from conftest import toy_batch, toy_fields
from gprec.cli.main import main
from gprec.config import parse_config
from gprec.errors import ConfigError
from gprec.layers.mlp import MLP
from gprec.models.backbones.finalmlp import BilinearFusionHead, FinalMLP
from gprec.models.gprec_strategies import logit_of_mean_probability
from gprec.models.registry import build_model, resolve_model_options

D = 4
N_FIELDS = len(toy_fields())


def finalmlp(**opts) -> FinalMLP:
    torch.manual_seed(0)
    return build_model(resolve_model_options({"name": "finalmlp", "embedding_dim": D, **opts}),
                       toy_fields())  # fmt: skip


def randomised(model: FinalMLP) -> FinalMLP:
    """float64, every parameter random (the authors' init makes the gates exactly 1)."""
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def batch(n=16, seed=0):
    return toy_batch(n, seed)


# -- reference: FinalMLP written out in plain torch from the paper's equations ---------------


def ref_mlp(linears, z, relu_last=True):
    for i, lin in enumerate(linears):
        z = z @ lin.weight.T + lin.bias
        if relu_last or i < len(linears) - 1:
            z = torch.relu(z)
    return z


def ref_gate(gate: torch.nn.Sequential, ctx: torch.Tensor) -> torch.Tensor:
    """2 sigmoid(Gate(ctx)): ReLU hidden layers, then a linear layer and the sigmoid."""
    linears = [m for m in gate if isinstance(m, torch.nn.Linear)]
    return 2.0 * torch.sigmoid(ref_mlp(linears, ctx, relu_last=False))


def ref_finalmlp(model: FinalMLP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_b, logit): h_k = 2 sigmoid(Gate_k(ctx_k)) * e, o_k = MLP_k(h_k),
    logit = b + w1.o1 + w2.o2 + sum_j o1_j^T W3_j o2_j, heads as contiguous chunks."""
    e = model.embedding.table.weight[x + model.embedding.offsets].flatten(1)
    if model.selection is None:
        h1 = h2 = e
    else:
        fs = model.selection
        h1 = e * ref_gate(fs.gates[0], fs.context1)  # one context vector for every sample
        h2 = e * ref_gate(fs.gates[1], fs.context2)
    o1 = ref_mlp(list(model.stream1.linears), h1)
    o2 = ref_mlp(list(model.stream2.linears), h2)
    fusion = model.head.fusion
    logit = fusion.bias + o1 @ fusion.w1 + o2 @ fusion.w2
    H = fusion.num_heads
    d1, d2 = o1.shape[1] // H, o2.shape[1] // H
    for j in range(H):  # a loop over heads: the reference, not the model
        a, b = o1[:, j * d1 : (j + 1) * d1], o2[:, j * d2 : (j + 1) * d2]
        logit = logit + torch.einsum("bx,xy,by->b", a, fusion.W3[j], b)
    return torch.cat([o1, o2], 1), logit


@pytest.mark.parametrize(
    "opts",
    [
        {},  # defaults: [64, 32, 16] streams, gate [800], 2 heads
        {"stream1_units": [8], "stream2_units": [6, 4], "num_heads": 2, "gate_units": [5, 3]},
        {"stream1_units": [9], "stream2_units": [6], "num_heads": 3, "gate_units": []},
        {"feature_selection": False, "num_heads": 1},
    ],
)
def test_the_whole_model_equals_the_papers_equations(opts):
    model = randomised(finalmlp(**opts)).eval()
    x, _ = batch()
    rep = model.represent(x, model.embedding(x))
    r_ref, logit_ref = ref_finalmlp(model, x)
    o = model.options
    assert model.representation_dim == o.stream1_units[-1] + o.stream2_units[-1]
    torch.testing.assert_close(rep.r, r_ref, rtol=1e-10, atol=1e-10)  # r_b = [o_1; o_2]
    assert rep.logit is None  # nothing additive: the fusion is the whole head
    torch.testing.assert_close(model(x).logit, logit_ref, rtol=1e-10, atol=1e-10)
    assert (model.selection is None) == (not o.feature_selection)


def test_the_gates_differ_per_stream_and_are_shared_by_samples():
    model = randomised(finalmlp())
    x, _ = batch()
    e = model.embedding(x).flatten(1)
    h1, h2 = model.selection(e)
    g1, g2 = h1 / e, h2 / e
    assert not torch.allclose(g1, g2)
    torch.testing.assert_close(g1, g1[:1].expand_as(g1))  # empty context: one gate for all
    assert ((g1 > 0) & (g1 < 2)).all()


def test_authors_init_starts_both_streams_on_the_plain_embeddings():
    """Zero context vector, zero gate biases: 2 sigmoid(0) = 1, so h_1 = h_2 = e at init."""
    model = finalmlp().double()
    x, _ = batch()
    e = model.embedding(x).flatten(1)
    for h in model.selection(e):
        torch.testing.assert_close(h, e)
    trains = finalmlp(gate_context_std=0.1)
    assert trains.selection.context1.abs().sum() > 0


def test_defaults_and_their_sources():
    o = finalmlp().options
    assert o.stream1_units == o.stream2_units == [64, 32, 16]  # issue 17's FuxiCTR towers
    assert o.gate_units == [800] and o.num_heads == 2  # issue 17's FuxiCTR FinalMLP run
    assert o.feature_selection and o.gate_context_std == 0.0  # empty contexts, zero init
    assert o.head_units == [64, 32, 16] and o.dropout == 0.0  # GPRec paper; ensemble heads only
    model = finalmlp()
    assert model.stream1.n_hidden == 3 and model.selection.gates[0][0].out_features == 800
    assert model.head.fusion.num_heads == 2 and model.head.fusion.W3.shape == (2, 8, 8)


def test_stream_options_apply_to_both_streams():
    model = finalmlp(dropout=0.1, batch_norm=True, activation="tanh", stream2_units=[12, 6])
    for stream in (model.stream1, model.stream2):
        assert isinstance(stream.activation, torch.nn.Tanh) and stream.dropout.p == 0.1
        assert all(isinstance(n, torch.nn.BatchNorm1d) for n in stream.norms)
    assert model.stream2.out_dim == 6 and model.representation_dim == 16 + 6


def test_more_heads_drop_the_cross_head_terms():
    """Same parameters, W3 block-diagonal in 2 heads: one head with that W3 gives the same logit."""
    two = randomised(finalmlp(stream1_units=[4], stream2_units=[6], num_heads=2)).eval()
    one = finalmlp(stream1_units=[4], stream2_units=[6], num_heads=1).double().eval()
    one.load_state_dict({k: v for k, v in two.state_dict().items() if "W3" not in k}, strict=False)
    with torch.no_grad():
        one.head.fusion.W3.zero_()
        one.head.fusion.W3[0, :2, :3] = two.head.fusion.W3[0]
        one.head.fusion.W3[0, 2:, 3:] = two.head.fusion.W3[1]
    x, _ = batch()
    torch.testing.assert_close(one(x).logit, two(x).logit)
    with torch.no_grad():
        one.head.fusion.W3[0, :2, 3:] = 1.0  # a cross-head term only one head can have
    assert not torch.allclose(one(x).logit, two(x).logit)


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"num_heads": 3}, "model.num_heads: 3 heads must divide both streams' output widths, "
                           "but not stream1_units[-1]=16, stream2_units[-1]=16"),
        ({"stream2_units": [10], "num_heads": 4}, "but not stream2_units[-1]=10"),
        ({"stream1_units": []}, "model.stream1_units"),
        ({"num_heads": 0}, "model.num_heads"),
        ({"gate_context_std": -1}, "model.gate_context_std"),
    ],
)  # fmt: skip
def test_bad_options_are_config_errors(opts, message):
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"name": "finalmlp", **opts}})
    assert message in str(err.value)


# -- the head: the bilinear fusion, under the backbone contract -------------------------------


def test_the_own_head_is_the_fusion_and_make_head_an_mlp():
    model = randomised(finalmlp(stream1_units=[6], stream2_units=[4])).eval()
    head = model.head
    assert isinstance(head, BilinearFusionHead)
    assert head.accepts_extra_inputs is False and head.accepts_layer_mods is False
    x, _ = batch()
    rep = model.represent(x, model.embedding(x))
    out = head(rep.r)
    assert out.shape == (16, 1)
    torch.testing.assert_close(out[:, 0], head.fusion(rep.r[:, :6], rep.r[:, 6:]))
    torch.testing.assert_close(model.predict(rep), out[:, 0])
    with pytest.raises(ValueError, match="no MLP layers to modulate"):
        head(rep.r, [None])
    mlp = model.make_head(7)  # GPRec's heads over r_G / r_P
    assert isinstance(mlp, MLP) and mlp.in_dim == 7 and mlp.layer_shapes[-1] == (16, 1)
    assert finalmlp(stream1_units=[6], stream2_units=[4]).head.in_dim == 10
    assert [n for n, _ in finalmlp().named_parameters() if n.startswith("head.")] == [
        "head.fusion.w1", "head.fusion.w2", "head.fusion.W3", "head.fusion.bias"
    ]  # fmt: skip


def test_without_head_the_streams_still_represent():
    cfg = resolve_model_options({"name": "finalmlp", "embedding_dim": D})
    model = build_model(cfg, toy_fields(), with_head=False)
    assert model.head is None
    x, _ = batch()
    assert model.represent(x, model.embedding(x)).r.shape == (16, 32)


# -- GPRec: ensemble only ---------------------------------------------------------------------


def gprec_raw(strategy: str) -> dict:
    return {
        "data": {"synthetic": {"n_users": 100, "n_items": 40, "n_interactions": 1000}},
        "model": {"name": "gprec", "strategy": strategy, "backbone": {"name": "finalmlp"}},
    }


def test_config_level_defaults_and_gprec_ensemble():
    cfg = parse_config({"model": {"name": "finalmlp"}})
    assert cfg.model["num_heads"] == 2 and cfg.model["gate_units"] == [800]
    assert cfg.model["stream1_units"] == [64, 32, 16] and cfg.model["embedding_dim"] == 16
    assert FinalMLP.gprec_strategies == ("ensemble",)
    cfg = parse_config(gprec_raw("ensemble"))
    assert cfg.model["strategy"] == "ensemble" and cfg.model["backbone"]["num_heads"] == 2


@pytest.mark.parametrize("strategy", ["input", "dynamic"])
def test_input_and_dynamic_are_config_errors_naming_ensemble(strategy):
    with pytest.raises(ConfigError) as err:
        parse_config(gprec_raw(strategy), "c.yaml")
    assert (
        f"model.strategy: '{strategy}' is not supported by backbone 'finalmlp' "
        "(supported: ensemble)"
    ) in str(err.value)


def test_gprec_ensemble_averages_the_fusion_with_the_user_heads():
    torch.manual_seed(0)
    cfg = {"name": "gprec", "n_groups": 3, "embedding_dim": D, "strategy": "ensemble",
           "backbone": {"name": "finalmlp", "stream1_units": [8], "stream2_units": [6]}}  # fmt: skip
    model = build_model(resolve_model_options(cfg), toy_fields())
    bb, s = model.backbone, model.strategy
    assert isinstance(bb.head, BilinearFusionHead)
    assert isinstance(s.group_head, MLP) and s.group_head.in_dim == 3 * D
    x, y = batch(32)
    out = model(x, y)
    (F.binary_cross_entropy_with_logits(out.logit, y) + sum(out.aux_losses.values())).backward()
    assert bb.head.fusion.W3.grad.abs().sum() > 0 and bb.stream2.linears[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        o1, o2 = bb.represent(x, model.embedding(x)).r.split([8, 6], 1)
        expected = logit_of_mean_probability([
            bb.head.fusion(o1, o2),
            s.group_head(model.group_representation(x)).squeeze(-1),
            s.personal_head(model.individual_representation(x)).squeeze(-1),
        ])  # fmt: skip
        torch.testing.assert_close(model(x).logit, expected, rtol=1e-5, atol=1e-5)


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_trains_finalmlp_one_epoch(tmp_path, capsys):
    args = [
        "train", "--set", "model.name=finalmlp",
        "--set", "data.synthetic={n_users: 150, n_items: 60, n_interactions: 4000, n_groups: 4, seed: 1}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "train.max_epochs=1", "--set", "train.progress=false",
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    assert main(args) == 0
    assert "test auc" in capsys.readouterr().out


def test_gprec_models_lists_descriptions_and_strategies(capsys):
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["finalmlp"].split()[1:] == ["GPRec:", "ensemble", *FinalMLP.description.split()]
    assert " ".join(lines["mlp"].split()) == (
        "mlp GPRec: input, dynamic, ensemble MLP over the concatenated field embeddings (DNN)"
    )
    gprec_line = " ".join(lines["gprec"].split())  # not a backbone: no strategies of its own
    assert gprec_line == (
        "gprec GPRec: group + individual user modeling around a backbone (model.backbone)"
    )
    # aligned: every description starts in the same column
    desc = {"finalmlp": FinalMLP.description, "gprec": "GPRec: group + individual"}
    assert len({lines[m].index(d) for m, d in desc.items()}) == 1
