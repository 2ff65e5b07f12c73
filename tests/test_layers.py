import torch

from gprec.layers.embedding import FieldEmbedding
from gprec.layers.mlp import MLP


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
    out = head(x, deltas)
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


def test_mlp_shapes_and_options():
    m = MLP(8, [16, 4], out_dim=1, dropout=0.5, batch_norm=True)
    assert m(torch.randn(3, 8)).shape == (3, 1)
    assert m.out_dim == 1
    assert any(isinstance(layer, torch.nn.BatchNorm1d) for layer in m.modules())
