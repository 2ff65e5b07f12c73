"""DGPM (models/user_modeling/dgpm.py): shapes, training, its mechanism against a hand
computation (softmax-of-cosine assignments; the head run with each sample's group-weighted
weights, written out per sample), that it starts as its backbone, and its config errors."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import index_batch, toy_data, toy_fields, train_steps
from gprec.config import parse_config
from gprec.data.schema import Role
from gprec.errors import ConfigError
from gprec.models.registry import build_model, resolve_model_options
from gprec.models.user_modeling.dgpm import DGPM

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODES = [{"rank": 3, "combine": "factors"}, {"rank": 3, "combine": "products"}, {"rank": None}]


def dgpm(fields=None, seed=0, **opts) -> DGPM:
    torch.manual_seed(seed)
    cfg = {"name": "dgpm", "n_groups": 5, "embedding_dim": 4, "head_units": [8, 6], **opts}
    return build_model(resolve_model_options(cfg), fields or toy_fields())


def repeated_users(n: int = 24) -> torch.Tensor:
    """A batch where the second half repeats the first half's users (user_id and attributes,
    fields 2-4 of `toy_fields`) with other items, so per-user deduplication has work to do."""
    x = index_batch(n)
    x[n // 2 :, 2:] = x[: n // 2, 2:]
    return x


def randomise(model: DGPM) -> DGPM:
    """Every group parameter non-zero (at initialisation the V factors are zero)."""
    with torch.no_grad():
        model.group_params.normal_(0, 0.3)
        model.embedding.table.weight.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("mode", MODES, ids=["factors", "products", "full"])
def test_shapes(mode):
    model = dgpm(**mode)
    x = index_batch(16)
    out = model(x, torch.zeros(16))
    assert out.logit.shape == (16,) and out.aux_losses == {}
    assert model.assignments(x).shape == (16, 5)
    assert model.group_embeddings().shape == (5, 4)  # group_dim defaults to embedding_dim
    assert dgpm(group_dim=7).group_embeddings().shape == (5, 7)
    assert DGPM.description


@pytest.mark.parametrize("mode", MODES, ids=["factors", "products", "full"])
def test_a_few_training_steps_lower_the_loss(mode):
    model = dgpm(**mode)
    X, y = toy_data(256)
    x, y = torch.from_numpy(X), torch.from_numpy(y)
    losses = train_steps(model, x, y, steps=30, lr=0.01)
    assert losses[-1] < losses[0] - 0.05
    # every parameter learns (the group embeddings and f_u once the deltas left zero)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# -- the mechanism, by hand -------------------------------------------------------------------


def hand_assignments(model: DGPM, x: torch.Tensor, temperature: float) -> torch.Tensor:
    emb = model.embedding(x)
    users = [i for i, f in enumerate(model.fields) if f.role in (Role.PERSONAL, Role.USER)]
    h = emb[:, users].flatten(1)
    for k, lin in enumerate(model.f_u.linears):  # f_u: ReLU hidden layers, linear output
        h = h @ lin.weight.t() + lin.bias
        h = torch.relu(h) if k < len(model.f_u.linears) - 1 else h
    e = model.groups
    cos = (h @ e.t()) / (h.norm(dim=1, keepdim=True) * e.norm(dim=1))
    z = torch.exp(cos / temperature)
    return z / z.sum(1, keepdim=True)


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_assignments_are_the_softmax_of_the_cosines(temperature):
    model = randomise(dgpm(temperature=temperature)).eval()
    x = index_batch(32)
    a = model.assignments(x)
    assert torch.allclose(a.sum(1), torch.ones(32), atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(a, hand_assignments(model, x, temperature), atol=1e-6)
    assert a.std(0).sum() > 0  # different users, different weights


def group_weights(model: DGPM, a: torch.Tensor) -> list[torch.Tensor]:
    """Each head layer's per-sample weight delta (B, in, out), by the definitions."""
    G, r, P = model.n_groups, model.rank, model.group_params
    out, start = [], 0
    for i, o in model.shapes:
        if r is None:
            D = P[:, start : start + i * o].reshape(G, i, o)
            start += i * o
            out.append(torch.einsum("bg,gio->bio", a, D))
            continue
        U = P[:, start : start + i * r].reshape(G, i, r)
        V = P[:, start + i * r : start + i * r + r * o].reshape(G, r, o)
        start += i * r + r * o
        deltas = []
        for b in range(a.shape[0]):  # per sample and group: plain sums
            if model.options.combine == "factors":
                Ub = sum(a[b, g] * U[g] for g in range(G))
                Vb = sum(a[b, g] * V[g] for g in range(G))
                deltas.append(Ub @ Vb)
            else:
                deltas.append(sum(a[b, g] * (U[g] @ V[g]) for g in range(G)))
        out.append(torch.stack(deltas))
    return out


@pytest.mark.parametrize("backbone", ["mlp", "deepfm"])
@pytest.mark.parametrize("mode", MODES, ids=["factors", "products", "full"])
def test_the_head_runs_on_each_samples_group_weighted_parameters(mode, backbone):
    """The logit equals the head run sample by sample with W_k + delta_bk (plus the backbone's
    own logit), delta from the hand-computed assignments and the group parameters."""
    model = randomise(dgpm(**mode, backbone={"name": backbone})).eval()
    x = repeated_users(12)
    assert model._distinct_users(x) is not None  # the default, deduplicated path is checked
    with torch.no_grad():
        a = hand_assignments(model, x, 1.0)
        deltas = group_weights(model, a)
        rep = model.backbone.represent(x, model.embedding(x))
        head = model.backbone.head
        expected = []
        for b in range(12):
            h = rep.r[b]
            for k, lin in enumerate(head.linears):
                h = h @ (lin.weight.t() + deltas[k][b]) + lin.bias
                h = torch.relu(h) if k < head.n_hidden else h
            expected.append(h[0] + (0 if rep.logit is None else rep.logit[b]))
        expected = torch.stack(expected)
        assert (deltas[0].abs().sum() > 0) and not torch.allclose(
            expected, model.backbone(x).logit, atol=1e-3
        )  # the deltas matter
        assert torch.allclose(model(x).logit, expected, atol=1e-5)


@pytest.mark.parametrize("mode", MODES, ids=["factors", "products", "full"])
def test_per_user_deduplication_changes_nothing(mode):
    x, y = repeated_users(24), torch.from_numpy(toy_data(24)[1])
    models = [randomise(dgpm(**mode, dedup_users=flag)) for flag in (True, False)]
    models[1].load_state_dict(models[0].state_dict())
    first, inverse = models[0]._distinct_users(x)
    assert len(first) == 12 and torch.equal(x[first][inverse][:, 2:], x[:, 2:])
    assert models[1]._distinct_users(x) is None
    logits = [m(x).logit for m in models]
    assert torch.allclose(*logits, atol=1e-6)
    for z in logits:
        F.binary_cross_entropy_with_logits(z, y).backward()
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    assert models[0]._distinct_users(index_batch(8)) is None  # all distinct: no gather


def test_factors_and_products_agree_for_one_hot_assignments():
    """The two low-rank readings differ only through mixed groups."""
    x = index_batch(16)
    f = randomise(dgpm(rank=2, combine="factors", temperature=1e-4)).eval()
    p = dgpm(rank=2, combine="products", temperature=1e-4).eval()
    p.load_state_dict(f.state_dict())
    with torch.no_grad():
        assert torch.allclose(f.assignments(x).max(1).values, torch.ones(16), atol=1e-4)
        assert torch.allclose(f(x).logit, p(x).logit, atol=1e-4)
        f.options.temperature = p.options.temperature = 1.0
        assert not torch.allclose(f(x).logit, p(x).logit, atol=1e-4)


@pytest.mark.parametrize("mode", MODES, ids=["factors", "products", "full"])
def test_at_initialisation_dgpm_is_its_backbone(mode):
    """Zero deltas: the same logits as the bare backbone built from the same seed, in training
    (BatchNorm, dropout) and in evaluation."""
    x = repeated_users(32)
    for backbone in ("mlp", "dcn"):
        opts = {"backbone": {"name": backbone, "batch_norm": True, "dropout": 0.2}}
        model = dgpm(**mode, **opts)
        torch.manual_seed(0)
        bare = build_model(
            resolve_model_options({**model.options.backbone}), toy_fields()
        )  # same RNG draws as the wrapper's backbone
        for train in (True, False):
            model.train(train), bare.train(train)
            torch.manual_seed(1)
            got = model(x).logit
            torch.manual_seed(1)
            assert torch.allclose(got, bare(x).logit, atol=1e-6)


# -- errors -----------------------------------------------------------------------------------


def test_a_head_without_layer_modulations_is_a_config_error_naming_the_supported():
    raw = {"model": {"name": "dgpm", "backbone": {"name": "finalmlp"}}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "c.yaml")
    message = str(err.value)
    assert "model.backbone.name" in message and "'finalmlp'" in message
    assert "supported backbones: autoint, dcn, dcnv2, deepfm, destine, gdcn, mlp" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"temperature": 0}, "model.temperature"),
        ({"rank": 0}, "model.rank"),
        ({"n_groups": 0}, "model.n_groups"),
        ({"combine": "sum"}, "model.combine"),
        ({"partition_field": "gender"}, "model.partition_field: unknown key"),
    ],
)
def test_bad_options_are_config_errors(opts, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"model": {"name": "dgpm", **opts}}, "c.yaml")


def test_data_without_user_fields_is_refused():
    fields = toy_fields(cards=(50, 6), roles=[Role.ITEM, Role.ITEM])
    with pytest.raises(ConfigError) as err:
        dgpm(fields)
    assert str(err.value) == (
        "model.name: DGPM assigns users to groups from their personal and user fields, but "
        "this data has no personal or user field; its fields: f0, f1"
    )
