"""AutoInt / DESTINE attention and FinalMLP's blocks against slow hand-written references.

The references loop explicitly over samples, heads and field pairs on small float64 tensors,
using only scalar/vector arithmetic, so they share nothing with the batched implementations
but the parameters.
"""

import math

import pytest
import torch

from gprec.layers.attention import DisentangledSelfAttention, FieldSelfAttention
from gprec.layers.bilinear import FeatureSelection, MultiHeadBilinearFusion

B, NF, D_IN = 3, 4, 5  # batch, fields, input embedding width


def _x(b=B, f=NF, d=D_IN, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, f, d, generator=g, dtype=torch.float64)


def _softmax(values):
    m = max(values)
    ex = [math.exp(v - m) for v in values]
    s = sum(ex)
    return [e / s for e in ex]


def _dot(a, b):
    return sum(float(u) * float(v) for u, v in zip(a, b, strict=True))


def _matvec(w, x, bias=None):
    """w: (out, in) rows, x: (in,) -> list of out floats."""
    out = [_dot(row, x) for row in w]
    if bias is not None:
        out = [o + float(b) for o, b in zip(out, bias, strict=True)]
    return out


def _relu(v):
    return [max(0.0, a) for a in v]


def _randomise(module, seed=1):
    """Move every parameter off its initial value (so LayerNorm/zero biases are exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


def _weighted_loss(out, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()


def _assert_all_grads(module):
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------- AutoInt


@torch.no_grad()
def ref_autoint(layer: FieldSelfAttention, x: torch.Tensor) -> torch.Tensor:
    H, dh, A = layer.num_heads, layer.head_dim, layer.attention_dim
    bias = layer.proj.bias
    W = [layer.W_Q, layer.W_K, layer.W_V, layer.W_res]
    biases = [None if bias is None else bias[i * A : (i + 1) * A] for i in range(4)]

    def project(i, vec):
        out = _matvec(W[i], vec, biases[i])
        return _relu(out) if layer.relu_projections else out

    out = torch.zeros(x.shape[0], x.shape[1], A, dtype=torch.float64)
    for b in range(x.shape[0]):
        q = [project(0, x[b, m]) for m in range(x.shape[1])]
        k = [project(1, x[b, m]) for m in range(x.shape[1])]
        v = [project(2, x[b, m]) for m in range(x.shape[1])]
        for m in range(x.shape[1]):
            row = [0.0] * A
            for h in range(H):
                sl = slice(h * dh, (h + 1) * dh)
                logits = []
                for kk in range(x.shape[1]):
                    s = _dot(q[m][sl], k[kk][sl])
                    logits.append(s / math.sqrt(dh) if layer.scale else s)
                a = _softmax(logits)
                for c in range(h * dh, (h + 1) * dh):
                    row[c] = sum(a[kk] * v[kk][c] for kk in range(x.shape[1]))
            if layer.residual:
                res = project(3, x[b, m])
                row = [r + s for r, s in zip(row, res, strict=True)]
            row = _relu(row)
            if layer.norm is not None:
                mean = sum(row) / A
                var = sum((r - mean) ** 2 for r in row) / A
                g, beta, eps = layer.norm.weight, layer.norm.bias, layer.norm.eps
                row = [
                    float(g[c]) * (row[c] - mean) / math.sqrt(var + eps) + float(beta[c])
                    for c in range(A)
                ]
            out[b, m] = torch.tensor(row, dtype=torch.float64)
    return out


@pytest.mark.parametrize(
    "scale,residual,layer_norm,relu_projections,heads",
    [
        (True, True, True, False, 2),  # the defaults (official scaling + LayerNorm)
        (False, False, False, False, 2),  # FuxiCTR-like: no scaling, no LayerNorm, no residual
        (True, False, True, True, 3),  # official dense+ReLU projections
        (False, True, False, True, 1),
    ],
)
def test_autoint_attention_matches_reference(scale, residual, layer_norm, relu_projections, heads):
    torch.manual_seed(0)
    layer = FieldSelfAttention(
        D_IN,
        attention_dim=6,
        num_heads=heads,
        scale=scale,
        residual=residual,
        layer_norm=layer_norm,
        relu_projections=relu_projections,
    ).double()
    _randomise(layer)
    x = _x()
    out = layer(x)
    assert out.shape == (B, NF, 6)
    torch.testing.assert_close(out, ref_autoint(layer, x), rtol=1e-10, atol=1e-10)


def test_autoint_scaling_changes_the_logits():
    torch.manual_seed(0)
    a = _randomise(FieldSelfAttention(D_IN, 4, 2, scale=True, layer_norm=False).double())
    b = FieldSelfAttention(D_IN, 4, 2, scale=False, layer_norm=False).double()
    b.load_state_dict(a.state_dict())
    assert not torch.allclose(a(_x()), b(_x()))


def test_autoint_init_is_glorot_uniform_per_projection():
    torch.manual_seed(0)
    layer = FieldSelfAttention(10, attention_dim=40, num_heads=2)
    bound = math.sqrt(6.0 / (10 + 40))  # per projection, not of the fused (160, 10) weight
    for w in (layer.W_Q, layer.W_K, layer.W_V, layer.W_res):
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert layer.proj.bias is None  # the paper's linear maps have no bias


# ----------------------------------------------------------------------------- DESTINE


@torch.no_grad()
def ref_destine(layer: DisentangledSelfAttention, x, residual_input=None):
    H, dh, A = layer.num_heads, layer.head_dim, layer.attention_dim
    W, bias = layer.qkv.weight, layer.qkv.bias
    s = 1.0 / math.sqrt(dh) if layer.scale else 1.0
    nf = x.shape[1]

    def project(i, vec):
        out = _matvec(W[i * A : (i + 1) * A], vec, bias[i * A : (i + 1) * A])
        return _relu(out) if layer.relu_qkv else out

    out = torch.zeros(x.shape[0], nf, A, dtype=torch.float64)
    for b in range(x.shape[0]):
        q = [project(0, x[b, j]) for j in range(nf)]
        k = [project(1, x[b, j]) for j in range(nf)]
        v = [project(2, x[b, j]) for j in range(nf)]
        for h in range(H):
            cs = range(h * dh, (h + 1) * dh)  # head h: these channels of EVERY field
            mu_q = [sum(q[j][c] for j in range(nf)) / nf for c in cs]
            mu_k = [sum(k[j][c] for j in range(nf)) / nf for c in cs]
            if layer.unary == "paper":  # u_j = mu_q . k_j
                u = [s * _dot(mu_q, [k[j][c] for c in cs]) for j in range(nf)]
            else:  # u_j = w_u^h . x_j + b_u^h
                wu, bu = layer.W_unary.weight[h], layer.W_unary.bias[h]
                u = [_dot(wu, x[b, j]) + float(bu) for j in range(nf)]
            unary = _softmax(u)
            for i in range(nf):
                qi = [q[i][c] - m for c, m in zip(cs, mu_q, strict=True)]
                logits = []
                for j in range(nf):
                    kj = [k[j][c] - m for c, m in zip(cs, mu_k, strict=True)]
                    logits.append(s * _dot(qi, kj))
                pair = _softmax(logits)
                for c in cs:
                    out[b, i, c] = sum((pair[j] + unary[j]) * v[j][c] for j in range(nf))
        if layer.residual:
            r = x if residual_input is None else residual_input
            for i in range(nf):
                res = _matvec(layer.W_res.weight, r[b, i], layer.W_res.bias)
                out[b, i] += torch.tensor(res, dtype=torch.float64)
    if layer.relu:
        out = out.clamp_min(0.0)
    return out


@pytest.mark.parametrize(
    "unary,heads,scale,relu_qkv,residual,relu",
    [
        ("paper", 1, False, False, True, False),
        ("paper", 2, True, False, False, True),
        ("official", 2, False, False, True, False),
        ("official", 3, True, True, True, True),
    ],
)
def test_destine_attention_matches_reference(unary, heads, scale, relu_qkv, residual, relu):
    torch.manual_seed(0)
    layer = DisentangledSelfAttention(
        D_IN,
        attention_dim=6,
        num_heads=heads,
        unary=unary,
        scale=scale,
        relu_qkv=relu_qkv,
        residual=residual,
        relu=relu,
    ).double()
    _randomise(layer)
    x = _x()
    out = layer(x)
    assert out.shape == (B, NF, 6)
    torch.testing.assert_close(out, ref_destine(layer, x), rtol=1e-10, atol=1e-10)


def test_destine_last_layer_residual_projects_the_given_embeddings():
    """The official 'last_layer' mode: W_res projects the original embeddings, not x."""
    torch.manual_seed(0)
    layer = _randomise(
        DisentangledSelfAttention(6, 6, 2, residual_dim=D_IN, relu=True, unary="official")
    ).double()
    x, e = _x(d=6, seed=3), _x(seed=4)
    torch.testing.assert_close(layer(x, e), ref_destine(layer, x, e), rtol=1e-10, atol=1e-10)
    no_res = DisentangledSelfAttention(6, 6, 2, residual=False).double()
    with pytest.raises(ValueError, match="residual"):
        no_res(x, e)


def test_destine_attention_weights_are_two_softmaxes():
    torch.manual_seed(0)
    layer = _randomise(DisentangledSelfAttention(D_IN, 6, 2)).double()
    pairwise, unary = layer.attention_weights(_x())
    assert pairwise.shape == (B, 2, NF, NF) and unary.shape == (B, 2, 1, NF)
    ones = torch.ones(B, 2, NF, dtype=torch.float64)
    torch.testing.assert_close(pairwise.sum(-1), ones)
    torch.testing.assert_close(unary.sum(-1), ones[..., :1])


@pytest.mark.parametrize("cls", [FieldSelfAttention, DisentangledSelfAttention])
def test_heads_split_the_embedding_dimension_so_fields_stay_fields(cls):
    """Permuting the fields permutes the output rows. FuxiCTR's DESTINE head `view` (which cuts
    the flattened F * d vector across fields) breaks this with more than one head."""
    torch.manual_seed(0)
    layer = _randomise(cls(D_IN, attention_dim=6, num_heads=3)).double()
    x = _x()
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(layer(x[:, perm]), layer(x)[:, perm])


@pytest.mark.parametrize("cls", [FieldSelfAttention, DisentangledSelfAttention])
def test_attention_dropout_only_in_training(cls):
    """The official DESTINE code drops attention weights at inference too; we do not."""
    torch.manual_seed(0)
    dropped = cls(D_IN, 6, 2, dropout=0.5).double()
    plain = cls(D_IN, 6, 2).double()
    plain.load_state_dict(dropped.state_dict())
    x = _x()
    dropped.eval()
    torch.testing.assert_close(dropped(x), plain(x))
    dropped.train()
    assert not torch.allclose(dropped(x), plain(x))


@pytest.mark.parametrize(
    "make",
    [
        lambda: FieldSelfAttention(D_IN, 6, 2),
        lambda: FieldSelfAttention(D_IN, 6, 3, residual=False, relu_projections=True),
        lambda: DisentangledSelfAttention(D_IN, 6, 2, unary="paper"),
        lambda: DisentangledSelfAttention(D_IN, 6, 2, unary="official", relu=True),
    ],
)
def test_attention_gradients_reach_every_parameter_and_batch_of_one_works(make):
    torch.manual_seed(0)
    layer = make().double()
    x = _x()
    _weighted_loss(layer(x)).backward()
    _assert_all_grads(layer)
    layer.eval()
    single = layer(x[:1])
    assert single.shape == (1, NF, 6)
    torch.testing.assert_close(single, layer(x)[:1])


@pytest.mark.parametrize("cls", [FieldSelfAttention, DisentangledSelfAttention])
def test_attention_dim_must_split_into_heads(cls):
    with pytest.raises(ValueError, match="not divisible by num_heads=4"):
        cls(D_IN, attention_dim=6, num_heads=4)


def test_destine_rejects_unknown_unary():
    with pytest.raises(ValueError, match="unary"):
        DisentangledSelfAttention(D_IN, 6, 2, unary="mean")


# ----------------------------------------------------------------------------- FinalMLP


@torch.no_grad()
def ref_gate(fs: FeatureSelection, stream: int, ctx_row) -> list[float]:
    """2 * sigmoid(MLP(ctx)) for one context vector, layer by layer."""
    linears = [m for m in fs.gates[stream - 1] if isinstance(m, torch.nn.Linear)]
    z = [float(c) for c in ctx_row]
    for i, lin in enumerate(linears):
        z = _matvec(lin.weight, z, lin.bias)
        if i < len(linears) - 1:
            z = _relu(z)
    return [2.0 / (1.0 + math.exp(-a)) for a in z]


@pytest.mark.parametrize("hidden", [(7,), (7, 3), ()])
def test_feature_selection_gates_match_reference(hidden):
    torch.manual_seed(0)
    in_dim = 6
    fs = FeatureSelection(in_dim, context_dims=(0, 4), hidden=hidden, empty_context_dim=3)
    fs = _randomise(fs.double())
    e = torch.randn(B, in_dim, dtype=torch.float64)
    ctx2 = torch.randn(B, 4, dtype=torch.float64)
    h1, h2 = fs(e, None, ctx2)
    assert h1.shape == h2.shape == (B, in_dim)
    g1 = ref_gate(fs, 1, fs.context1[0])  # empty context: one learned vector for all samples
    for b in range(B):
        g2 = ref_gate(fs, 2, ctx2[b])
        for c in range(in_dim):
            assert math.isclose(h1[b, c].item(), g1[c] * e[b, c].item(), rel_tol=1e-10)
            assert math.isclose(h2[b, c].item(), g2[c] * e[b, c].item(), rel_tol=1e-10)
    assert fs.gate(1).shape == (1, in_dim)  # the same gate for every sample


def test_feature_selection_authors_init_starts_at_identity_and_freezes_empty_context_hidden():
    """Zero context vector + zero biases: gate = 2 * sigmoid(0) = 1, so h_k = e at init, and only
    the output bias of an empty-context gate receives a gradient (ReLU'(0) = 0)."""
    torch.manual_seed(0)
    fs = FeatureSelection(6, hidden=(5,), empty_context_dim=3).double()
    e = torch.randn(B, 6, dtype=torch.float64)
    h1, h2 = fs(e)
    torch.testing.assert_close(h1, e)
    torch.testing.assert_close(h2, e)
    _weighted_loss(h1 + 2 * h2).backward()
    first, _, out, _ = fs.gates[0]
    assert fs.context1.grad.abs().sum() == 0 and first.weight.grad.abs().sum() == 0
    assert out.bias.grad.abs().sum() > 0


def test_feature_selection_gradients_batch_of_one_and_context_errors():
    torch.manual_seed(0)
    fs = FeatureSelection(6, context_dims=(0, 4), hidden=(5,), empty_context_std=0.1).double()
    e = torch.randn(B, 6, dtype=torch.float64)
    ctx2 = torch.randn(B, 4, dtype=torch.float64)
    h1, h2 = fs(e, context2=ctx2)
    _weighted_loss(torch.cat([h1, h2], 1)).backward()
    _assert_all_grads(fs)
    one = fs(e[:1], context2=ctx2[:1])
    for a, b in zip(one, (h1, h2), strict=True):
        assert a.shape == (1, 6)
        torch.testing.assert_close(a, b[:1])
    with pytest.raises(ValueError, match="stream 1 has an empty context"):
        fs(e, ctx2, ctx2)
    with pytest.raises(ValueError, match="stream 2 needs a context of width 4"):
        fs(e)
    with pytest.raises(ValueError, match="width 4"):
        fs(e, context2=e)


@torch.no_grad()
def ref_fusion(fusion: MultiHeadBilinearFusion, o1, o2) -> list[float]:
    H, dx, dy = fusion.num_heads, fusion.head_dim1, fusion.head_dim2
    out = []
    for b in range(o1.shape[0]):
        total = _dot(fusion.w1, o1[b]) + _dot(fusion.w2, o2[b]) + float(fusion.bias)
        for j in range(H):
            for x in range(dx):
                for y in range(dy):
                    total += (
                        float(o1[b, j * dx + x])
                        * float(fusion.W3[j, x, y])
                        * float(o2[b, j * dy + y])
                    )
        out.append(total)
    return out


@pytest.mark.parametrize("dim1,dim2,heads", [(4, 6, 1), (4, 6, 2), (6, 6, 3)])
def test_bilinear_fusion_matches_reference(dim1, dim2, heads):
    torch.manual_seed(0)
    fusion = _randomise(MultiHeadBilinearFusion(dim1, dim2, heads).double())
    o1 = torch.randn(B, dim1, dtype=torch.float64)
    o2 = torch.randn(B, dim2, dtype=torch.float64)
    out = fusion(o1, o2)
    assert out.shape == (B,)
    expected = torch.tensor(ref_fusion(fusion, o1, o2), dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_bilinear_fusion_two_heads_is_not_one_head():
    """With 2 heads the cross terms between head 1 of o1 and head 2 of o2 are absent."""
    torch.manual_seed(0)
    two = MultiHeadBilinearFusion(4, 4, 2).double()
    one = MultiHeadBilinearFusion(4, 4, 1).double()
    with torch.no_grad():
        one.w1.copy_(two.w1), one.w2.copy_(two.w2), one.W3.zero_()
        one.W3[0, :2, :2] = two.W3[0]
        one.W3[0, 2:, 2:] = two.W3[1]  # block-diagonal one-head W3 == two heads
    o1, o2 = torch.randn(B, 4, dtype=torch.float64), torch.randn(B, 4, dtype=torch.float64)
    torch.testing.assert_close(one(o1, o2), two(o1, o2))


def test_bilinear_fusion_gradients_and_batch_of_one():
    torch.manual_seed(0)
    fusion = MultiHeadBilinearFusion(4, 6, 2).double()
    o1 = torch.randn(B, 4, dtype=torch.float64, requires_grad=True)
    o2 = torch.randn(B, 6, dtype=torch.float64, requires_grad=True)
    _weighted_loss(fusion(o1, o2)).backward()
    _assert_all_grads(fusion)
    assert o1.grad.abs().sum() > 0 and o2.grad.abs().sum() > 0
    single = fusion(o1[:1], o2[:1])
    assert single.shape == (1,)
    torch.testing.assert_close(single, fusion(o1, o2)[:1])


def test_bilinear_fusion_heads_must_divide_both_widths():
    with pytest.raises(ValueError, match="must divide both stream widths, but not dim1=6"):
        MultiHeadBilinearFusion(6, 8, num_heads=4)
    with pytest.raises(ValueError, match="but not dim2=6$"):
        MultiHeadBilinearFusion(8, 6, num_heads=4)
    with pytest.raises(ValueError, match="dim1=5, dim2=7"):
        MultiHeadBilinearFusion(5, 7, num_heads=2)


def test_bilinear_fusion_init_matches_the_authors_scales():
    torch.manual_seed(0)
    fusion = MultiHeadBilinearFusion(64, 64, 2)
    assert fusion.bias.item() == 0.0
    expected = math.sqrt(2.0 / (1 + 2 * 32 * 32))
    assert abs(fusion.W3.std().item() / expected - 1) < 0.05
