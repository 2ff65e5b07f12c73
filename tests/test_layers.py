import pytest
import torch

from gprec.layers.embedding import FieldEmbedding
from gprec.layers.mlp import MLP, LayerMod


def test_field_embedding_uses_per_field_offsets():
    emb = FieldEmbedding([3, 5, 2], dim=4)
    x = torch.tensor([[2, 0, 1]])
    out = emb(x)
    assert out.shape == (1, 3, 4)
    w = emb.table.weight
    assert (
        torch.equal(out[0, 0], w[2])
        and torch.equal(out[0, 1], w[3])
        and torch.equal(out[0, 2], w[3 + 5 + 1])
    )


def test_field_embedding_gradient_equals_nn_embedding():
    """Repeated rows accumulate their gradients, as with F.embedding."""
    emb = FieldEmbedding([3, 5, 2], dim=4)
    x = torch.tensor([[2, 0, 1], [2, 4, 1], [0, 0, 0]])
    upstream = torch.randn(3, 3, 4)
    (emb(x) * upstream).sum().backward()
    w = emb.table.weight.detach().clone().requires_grad_()
    (torch.nn.functional.embedding(x + emb.offsets, w) * upstream).sum().backward()
    assert torch.allclose(emb.table.weight.grad, w.grad)
    assert emb.table.weight.grad[2].abs().sum() > 0  # row 2 of field 0 got two samples' worth


def test_prediction_head_low_rank_deltas_equal_per_sample_weights():
    torch.manual_seed(0)
    head = MLP(6, [4, 3], out_dim=1)
    x = torch.randn(5, 6)
    deltas = [(torch.randn(5, a, 2), torch.randn(5, 2, b)) for a, b in head.layer_shapes]
    out = head(x, [LayerMod(delta=d) for d in deltas])
    # reference: build each sample's full weight matrices
    expected = []
    for i in range(5):
        h = x[i]
        for k, lin in enumerate(head.linears):
            w = lin.weight.T + deltas[k][0][i] @ deltas[k][1][i]
            h = h @ w + lin.bias
            if k < len(head.linears) - 1:
                h = torch.relu(h)
        expected.append(h)
    assert torch.allclose(out, torch.stack(expected), atol=1e-5)
    assert torch.allclose(head(x), head(x, [None] * 3))
    assert head(x).shape == (5, 1)


def _per_sample_reference(head, x, weight_of, gate_of=None):
    """Each sample through the head with its own explicit weight matrices and input gates."""
    rows = []
    for i in range(x.shape[0]):
        h = x[i]
        for k in range(len(head.linears)):
            if gate_of is not None:
                h = h * gate_of(k, i)
            w, b = weight_of(k, i)
            h = h @ w + b
            if k < len(head.linears) - 1:
                h = torch.relu(h)
        rows.append(h)
    return torch.stack(rows)


def test_layer_mods_equal_explicit_per_sample_weights():
    """Each modulation (PEPNet gate, APG replacement full and factored, STAR partition product),
    and all of them at once with a delta, against each sample's explicit weights."""
    torch.manual_seed(0)
    head = MLP(6, [4, 3], out_dim=1)
    B, P, k = 5, 3, 2
    x = torch.randn(B, 6)
    shapes = head.layer_shapes
    gates = [2 * torch.sigmoid(torch.randn(B, a)) for a, _ in shapes]
    full = [torch.randn(B, a, b) for a, b in shapes]
    factors = [(torch.randn(a, k), torch.randn(B, k, k), torch.randn(k, b)) for a, b in shapes]
    part = torch.tensor([0, 2, 1, 2, 0])
    scales = [(torch.randn(P, a, b), torch.randn(P, b), part) for a, b in shapes]
    deltas = [(torch.randn(B, a, 2), torch.randn(B, 2, b)) for a, b in shapes]
    lin = head.linears

    def own(k, i):
        return lin[k].weight.T, lin[k].bias

    cases = {
        "gate": ([LayerMod(gate=g) for g in gates], own, lambda k, i: gates[k][i]),
        "replace full": (
            [LayerMod(replace=(s,)) for s in full],
            lambda k, i: (full[k][i], lin[k].bias),
            None,
        ),
        "replace factored": (
            [LayerMod(replace=f) for f in factors],
            lambda k, i: (factors[k][0] @ factors[k][1][i] @ factors[k][2], lin[k].bias),
            None,
        ),
        "partition scale": (
            [LayerMod(partition_scale=s) for s in scales],
            lambda k, i: (
                lin[k].weight.T * scales[k][0][part[i]],
                lin[k].bias + scales[k][1][part[i]],
            ),
            None,
        ),
        "gate + scale + delta": (
            [
                LayerMod(gate=g, partition_scale=s, delta=d)
                for g, s, d in zip(gates, scales, deltas, strict=True)
            ],
            lambda k, i: (
                lin[k].weight.T * scales[k][0][part[i]] + deltas[k][0][i] @ deltas[k][1][i],
                lin[k].bias + scales[k][1][part[i]],
            ),
            lambda k, i: gates[k][i],
        ),
    }
    for name, (mods, weight_of, gate_of) in cases.items():
        expected = _per_sample_reference(head, x, weight_of, gate_of)
        assert torch.allclose(head(x, mods), expected, atol=1e-5), name
    with pytest.raises(ValueError, match="2 layer modulations for 3 layers"):
        head(x, [None, None])


def test_replace_and_partition_scale_together_are_refused():
    """partition_scale scales the layer's own weight, which replace discards."""
    s = torch.randn(2, 4, 3)
    scale = (torch.ones(2, 4, 3), torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="replace and partition_scale both given"):
        LayerMod(replace=(s,), partition_scale=scale)
    LayerMod(
        replace=(s,), gate=torch.ones(2, 4), delta=(torch.zeros(2, 4, 1), torch.zeros(2, 1, 3))
    )


def test_freeze_weights_stops_only_those_weights():
    m = MLP(4, [3], out_dim=1)
    m.freeze_weights([0])
    assert not m.linears[0].weight.requires_grad
    assert m.linears[0].bias.requires_grad and m.linears[1].weight.requires_grad


def test_mlp_shapes_and_options():
    m = MLP(8, [16, 4], out_dim=1, dropout=0.5, batch_norm=True)
    assert m(torch.randn(3, 8)).shape == (3, 1)
    assert m.out_dim == 1
    assert any(isinstance(layer, torch.nn.BatchNorm1d) for layer in m.modules())


def test_distinct_rows_gathers_back_exactly():
    from gprec.layers.dedup import DistinctRows

    cols = torch.tensor([[1, 2], [3, 1], [1, 2], [0, 0], [3, 1], [1, 2]])
    for radix in (True, False):
        dr = DistinctRows([4, 3])
        dr._radix_ok = radix  # keys by one int64, or compares whole rows (huge vocabularies)
        first, inverse = dr(cols)
        assert len(first) == 3 and torch.equal(cols[first][inverse], cols)
        assert all(
            int(f) == min(i for i in range(6) if torch.equal(cols[i], cols[f])) for f in first
        )
    assert DistinctRows([4, 3])(torch.tensor([[1, 2], [2, 1]])) is None  # all distinct: no work
