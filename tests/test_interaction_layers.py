"""FM, first-order, DCN, DCNv2 and GDCN blocks against references written the slow obvious way:
explicit Python loops over samples, field pairs, layers and experts, in float64."""

import math

import pytest
import torch

from gprec.layers.cross import CrossNet, CrossNetV2, GatedCrossNet
from gprec.layers.fm import FactorizationMachine, FirstOrder

B, D = 4, 6


def _x(batch=B, dim=D, seed=0):
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed)).double()


def _randomise(module, seed=1):
    """Non-trivial parameter values (zero biases would hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _dot(u, v):
    return sum(u[i] * v[i] for i in range(len(u)))


def _matvec(m, v):
    return torch.stack([_dot(m[i], v) for i in range(m.shape[0])])


# ---- FM ----------------------------------------------------------------------------------------


def test_fm_term_equals_explicit_pairwise_sum():
    emb = torch.randn(3, 5, 4, dtype=torch.float64)
    out = FactorizationMachine()(emb)
    assert out.shape == (3,)
    for b in range(3):
        ref = sum(_dot(emb[b, i], emb[b, j]) for i in range(5) for j in range(i + 1, 5))
        torch.testing.assert_close(out[b], ref)


def test_fm_term_batch_of_one_and_gradient():
    emb = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    out = FactorizationMachine()(emb)
    assert out.shape == (1,)
    out.sum().backward()
    # d/d e_i of sum_{i<j} <e_i, e_j> = sum_{j != i} e_j
    expected = emb.detach().sum(dim=1, keepdim=True) - emb.detach()
    torch.testing.assert_close(emb.grad, expected)


def test_first_order_equals_manual_lookup():
    cards = [3, 5, 2]
    fo = _randomise(FirstOrder(cards).double())
    assert sum(p.numel() for p in fo.parameters()) == sum(cards) + 1  # one table + bias
    x = torch.tensor([[0, 4, 1], [2, 0, 0], [1, 3, 1]])
    out = fo(x)
    assert out.shape == (3,) and out.dtype == torch.float64
    table = fo.weights.table.weight[:, 0]
    for b in range(3):
        ref = fo.bias.clone()
        offset = 0
        for f, card in enumerate(cards):
            ref = ref + table[offset + x[b, f]]
            offset += card
        torch.testing.assert_close(out[b], ref)
    out.sum().backward()
    assert fo.bias.grad is not None and fo.weights.table.weight.grad.abs().sum() > 0
    assert fo(x[:1]).shape == (1,)


def test_first_order_initialisation():
    fo = FirstOrder([1000, 1000], init_std=1e-4)
    assert fo.bias.item() == 0.0
    assert fo.weights.table.weight.std().item() < 2e-4


# ---- DCN ---------------------------------------------------------------------------------------


def _ref_cross(net, x0):
    out = []
    for b in range(x0.shape[0]):
        x = x0[b]
        for w, bias in zip(net.weights, net.biases, strict=True):
            s = _dot(x, w)  # scalar x_l . w_l
            x = x0[b] * s + bias + x
        out.append(x)
    return torch.stack(out)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_cross_net_matches_formula(n_layers):
    net = _randomise(CrossNet(D, n_layers).double())
    x0 = _x()
    out = net(x0)
    assert out.shape == (B, D)
    torch.testing.assert_close(out, _ref_cross(net, x0))


def test_cross_net_one_layer_closed_form():
    net = _randomise(CrossNet(D, 1).double())
    x0 = _x()
    w, b = net.weights[0], net.biases[0]
    expected = x0 * (x0 @ w).unsqueeze(1) + b + x0
    torch.testing.assert_close(net(x0), expected)


def test_cross_net_initialisation():
    net = CrossNet(100, 3)
    for w, b in zip(net.weights, net.biases, strict=True):
        assert torch.all(b == 0)
        assert w.abs().max() <= 1 / math.sqrt(100)


# ---- DCNv2 -------------------------------------------------------------------------------------


def _ref_cross_v2_full(net, x0):
    out = []
    for b in range(x0.shape[0]):
        x = x0[b]
        for lin in net.linears:
            x = x0[b] * (_matvec(lin.weight, x) + lin.bias) + x
        out.append(x)
    return torch.stack(out)


def _ref_cross_v2_low_rank(net, x0):
    out = []
    for b in range(x0.shape[0]):
        x = x0[b]
        for down, up in zip(net.down, net.up, strict=True):
            w = up.weight @ down.weight  # W = U V^T, (D, D)
            x = x0[b] * (_matvec(w, x) + up.bias) + x
        out.append(x)
    return torch.stack(out)


def _ref_cross_v2_mixture(net, x0):
    out = []
    for b in range(x0.shape[0]):
        x = x0[b]
        for layer in range(net.n_layers):
            experts, logits = [], []
            for k in range(net.n_experts):
                v_t = net.down[layer][k]  # V^T, (r, D)
                c = net.mid[layer][k]  # C, (r, r)
                u = net.up[layer][k].t()  # U, (D, r)
                h = torch.tanh(_matvec(v_t, x))
                h = torch.tanh(_matvec(c, h))
                experts.append(x0[b] * (_matvec(u, h) + net.bias[layer]))
                logits.append(_dot(net.gate[layer][k], x))  # the gate reads x_l
            logits = torch.stack(logits)
            weights = torch.exp(logits) / torch.exp(logits).sum()
            x = sum(weights[k] * experts[k] for k in range(net.n_experts)) + x
        out.append(x)
    return torch.stack(out)


def test_cross_v2_full_rank_matches_formula():
    net = _randomise(CrossNetV2(D, 1).double())
    x0 = _x()
    torch.testing.assert_close(net(x0), _ref_cross_v2_full(net, x0))
    net = _randomise(CrossNetV2(D, 3).double())
    torch.testing.assert_close(net(x0), _ref_cross_v2_full(net, x0))


def test_cross_v2_low_rank_matches_formula():
    net = _randomise(CrossNetV2(D, 3, low_rank=2).double())
    x0 = _x()
    torch.testing.assert_close(net(x0), _ref_cross_v2_low_rank(net, x0))


@pytest.mark.parametrize("n_experts", [1, 3])
def test_cross_v2_mixture_matches_per_expert_loops(n_experts):
    net = _randomise(CrossNetV2(D, 2, low_rank=3, n_experts=n_experts).double())
    x0 = _x()
    torch.testing.assert_close(net(x0), _ref_cross_v2_mixture(net, x0))


def test_cross_v2_options_are_validated():
    with pytest.raises(ValueError, match="needs low_rank"):
        CrossNetV2(D, 2, n_experts=4)
    with pytest.raises(ValueError, match="low_rank"):
        CrossNetV2(D, 2, low_rank=0)
    with pytest.raises(ValueError, match="n_layers"):
        CrossNetV2(D, 0)


def test_cross_v2_initialisation():
    net = CrossNetV2(64, 2)
    for lin in net.linears:
        assert torch.all(lin.bias == 0) and lin.weight.abs().max() <= 0.1
    mix = CrossNetV2(64, 2, low_rank=8, n_experts=4)
    for layer in range(2):
        assert torch.all(mix.bias[layer] == 0)
        assert abs(mix.down[layer].std().item() - math.sqrt(2 / 72)) < 0.03


# ---- GDCN --------------------------------------------------------------------------------------


def _ref_gated_cross(net, c0):
    out = []
    for b in range(c0.shape[0]):
        c = c0[b]
        for layer in range(net.n_layers):
            w_c, w_g = net.cross_weight(layer), net.gate_weight(layer)
            cross = _matvec(w_c, c) + net.biases[layer]
            gate = torch.stack([1 / (1 + torch.exp(-_dot(w_g[i], c))) for i in range(D)])
            c = c0[b] * cross * gate + c
        out.append(c)
    return torch.stack(out)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_gated_cross_matches_formula(n_layers):
    net = _randomise(GatedCrossNet(D, n_layers).double())
    c0 = _x()
    out = net(c0)
    assert out.shape == (B, D)
    torch.testing.assert_close(out, _ref_gated_cross(net, c0))


def test_gated_cross_gate_reads_c_l_not_c_0():
    net = _randomise(GatedCrossNet(D, 2).double())
    c0 = _x()
    c1 = _one_layer(net, 0)(c0)  # the first layer alone
    w_c, w_g, b = net.cross_weight(1), net.gate_weight(1), net.biases[1]
    expected = c0 * (c1 @ w_c.t() + b) * torch.sigmoid(c1 @ w_g.t()) + c1
    wrong = c0 * (c1 @ w_c.t() + b) * torch.sigmoid(c0 @ w_g.t()) + c1
    torch.testing.assert_close(net(c0), expected)
    assert not torch.allclose(net(c0), wrong)


def _one_layer(net, layer):
    one = GatedCrossNet(net.dim, 1).double()
    with torch.no_grad():
        one.weights[0].copy_(net.weights[layer])
        one.biases[0].copy_(net.biases[layer])
    return one


def test_gated_cross_initialisation():
    net = GatedCrossNet(50, 3)
    assert [n for n, _ in net.named_parameters()] == [
        *(f"weights.{i}" for i in range(3)),
        *(f"biases.{i}" for i in range(3)),
    ]  # W_c and W_g have no bias: b_c is the only bias
    for layer in range(3):
        b = net.biases[layer]
        assert b.min() >= 0 and b.max() <= 1 and b.std() > 0.1  # uniform(0, 1), not zero
        assert net.weights[layer].shape == (100, 50)
        assert net.weights[layer].abs().max() <= 1 / math.sqrt(50)


# ---- all cross nets ----------------------------------------------------------------------------

CROSS_NETS = {
    "dcn": lambda: CrossNet(D, 3),
    "dcnv2": lambda: CrossNetV2(D, 3),
    "dcnv2_low_rank": lambda: CrossNetV2(D, 3, low_rank=2),
    "dcnv2_mixture": lambda: CrossNetV2(D, 3, low_rank=2, n_experts=4),
    "gdcn": lambda: GatedCrossNet(D, 3),
}


@pytest.mark.parametrize("name", CROSS_NETS)
def test_cross_nets_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    net = _randomise(CROSS_NETS[name]())
    x0 = _x().float().requires_grad_()
    net(x0).square().sum().backward()
    assert x0.grad is not None and x0.grad.abs().sum() > 0
    for pname, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", CROSS_NETS)
def test_cross_nets_batch_of_one(name):
    torch.manual_seed(0)
    net = _randomise(CROSS_NETS[name]())
    x0 = _x().float()
    one = net(x0[:1])
    assert one.shape == (1, D)
    torch.testing.assert_close(one, net(x0)[:1])
