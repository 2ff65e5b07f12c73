import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from conftest import toy_batch as batch
from conftest import toy_data, toy_fields
from gprec.config import TrainConfig, parse_config
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.layers.dedup import radix_multipliers
from gprec.layers.embedding import FieldEmbedding
from gprec.layers.factored import cosine, orthogonal_loss
from gprec.layers.group import BatchedGroupMLP, gumbel_pair_masks
from gprec.models.gprec import GPRec
from gprec.models.gprec_strategies import logit_of_mean_probability
from gprec.models.registry import build_model, resolve_model_options
from gprec.training.trainer import Trainer, as_tensors

D = 4  # embedding dim in these tests


def without_noise(model: GPRec) -> GPRec:
    """Membership masks without Gumbel noise even in training, where the aux losses exist."""
    model._memberships = lambda scores, noisy, m=model: GPRec._memberships(m, scores, False)
    return model


def make(fields=None, seed=0, **opts) -> GPRec:
    torch.manual_seed(seed)
    cfg = {"name": "gprec", "n_groups": 5, "embedding_dim": D, **opts}
    return build_model(resolve_model_options(cfg), fields or toy_fields())


def n_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


# -- layers ---------------------------------------------------------------------


def test_batched_group_mlp_equals_a_loop_of_separate_mlps():
    torch.manual_seed(0)
    G, hidden, out, in_dim = 4, [6, 5], 2, 7
    bg = BatchedGroupMLP(in_dim, G, hidden, out)
    x = torch.randn(9, in_dim)
    expected = []
    for g in range(G):  # the reference: G ordinary nn.Linear MLPs with the same weights
        first = nn.Linear(in_dim, hidden[0])
        first.weight.data = bg.first.weight[g * hidden[0] : (g + 1) * hidden[0]].detach()
        first.bias.data = bg.first.bias[g * hidden[0] : (g + 1) * hidden[0]].detach()
        layers = [first]
        for w, b in zip(bg.weights, bg.biases, strict=True):
            lin = nn.Linear(w.shape[1], w.shape[2])
            lin.weight.data, lin.bias.data = w[g].detach().T.clone(), b[g].detach().clone()
            layers += [nn.ReLU(), lin]
        expected.append(nn.Sequential(*layers)(x))
    got = bg(x)
    assert got.shape == (9, G, out)
    assert torch.allclose(got, torch.stack(expected, 1), atol=1e-6)
    # gradients agree too (the in-place ReLUs must not break autograd)
    xg = x.clone().requires_grad_()
    bg(xg).square().sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_batched_group_mlp_init_matches_nn_linear_bounds():
    torch.manual_seed(0)
    bg = BatchedGroupMLP(80, 60, [64, 32], 2)
    assert bg.first.weight.abs().max() <= 1 / 80**0.5
    assert bg.weights[0].abs().max() <= 1 / 64**0.5 and bg.weights[0].std() > 0.5 / 64**0.5
    assert bg.weights[1].abs().max() <= 1 / 32**0.5 and bg.biases[1].abs().max() <= 1 / 32**0.5
    # groups are initialised independently
    assert not torch.equal(bg.weights[0][0], bg.weights[0][1])


def _literal_masks(logits, tau, noise):
    """docs/gprec.md §3.2 written out: softmax over the pair of (log_softmax + gumbel) / tau."""
    z = (torch.log_softmax(logits, dim=-1) + noise) / tau
    m = torch.softmax(z, dim=-1)
    return m[..., 0], m[..., 1]


def test_gumbel_pair_masks_follow_the_formula_and_are_complementary():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 2) * 3
    # eval: no noise
    m1 = gumbel_pair_masks(logits, 0.5, training=False)
    ref1, ref0 = _literal_masks(logits, 0.5, torch.zeros_like(logits))
    assert torch.allclose(m1, ref1, atol=1e-6) and torch.allclose(1 - m1, ref0, atol=1e-6)
    assert ((m1 > 0) & (m1 < 1)).all()
    assert torch.allclose(ref1 + ref0, torch.ones_like(m1))
    # training: the same noise the function draws from a seeded generator
    m1t = gumbel_pair_masks(logits, 0.5, True, torch.Generator().manual_seed(7))
    # gn1 - gn0 is drawn as one logistic variable log u - log(1 - u)
    u = torch.rand(logits.shape[:-1], generator=torch.Generator().manual_seed(7))
    noise = torch.stack([torch.log(u) - torch.log1p(-u), torch.zeros_like(u)], -1)
    ref1t, ref0t = _literal_masks(logits, 0.5, noise)
    assert torch.allclose(m1t, ref1t, atol=1e-5) and torch.allclose(1 - m1t, ref0t, atol=1e-5)
    assert not torch.allclose(m1t, m1)
    # lower temperature -> closer to binary
    sharp = gumbel_pair_masks(logits, 0.1, training=False)
    assert (torch.minimum(sharp, 1 - sharp)).mean() < (torch.minimum(m1, 1 - m1)).mean()


def test_gumbel_noise_difference_is_distributed_as_two_gumbels():
    """The one logistic draw per mask has the law of gn1 - gn0 for independent Gumbels."""
    n = 20000
    zero = torch.zeros(n, 1, 2)
    m1 = gumbel_pair_masks(zero, 1.0, True, torch.Generator().manual_seed(3)).flatten()
    drawn = torch.logit(m1.double()).numpy()  # tau 1, equal scores: drawn = gn1 - gn0
    g = torch.Generator().manual_seed(4)
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    gumbels = -torch.log(-torch.log(u))
    reference = (gumbels[:, 0] - gumbels[:, 1]).numpy()
    assert stats.ks_2samp(drawn, reference).pvalue > 0.01
    assert stats.ks_2samp(drawn, reference * 0.5).pvalue < 1e-6  # the test can tell laws apart


# -- model ----------------------------------------------------------------------


def test_eval_is_noiseless_and_training_is_noisy():
    model = make()
    x, y = batch()
    model.eval()
    a, b = model(x).logit, model(x).logit
    assert torch.equal(a, b)
    masks = model.group_masks(x)
    assert masks.shape == (32, 5) and ((masks > 0) & (masks < 1)).all()
    assert torch.equal(masks, model.group_masks(x))
    model.train()
    c, d = model(x, y).logit, model(x, y).logit
    assert not torch.allclose(c, d)
    # group_masks ignores the mode: always the noiseless probabilities
    assert torch.equal(masks, model.group_masks(x))
    assert model.training


def test_contrastive_gradient_reaches_groups_classifier_items_but_not_f1():
    model = make()
    x, y = batch()
    out = model(x, y)
    assert set(out.aux_losses) == {"group", "contrastive", "orthogonal"}
    assert out.aux_losses["contrastive"] < 0  # maximised: -lambda * BCE
    out.aux_losses["contrastive"].backward()
    for p in model.f1.parameters():
        assert p.grad is None or not p.grad.any()
    assert model.pos.grad.abs().sum() > 0 and model.neg.grad.abs().sum() > 0
    assert model.classifier.first.weight.grad.abs().sum() > 0
    assert all(w.grad.abs().sum() > 0 for w in model.classifier.weights)
    # item embeddings: rows of the item fields in the batch
    table = model.embedding.table.weight.grad
    item_rows = x[:, 0] + model.embedding.offsets[0]
    assert table[item_rows].abs().sum() > 0
    # while the group loss does train f_1
    model.zero_grad()
    model(x, y).aux_losses["group"].backward()
    assert all(p.grad.abs().sum() > 0 for p in model.f1.parameters())


def test_contrastive_representation_swaps_the_masks():
    for reduce in ("concat", "sum"):
        model = make(group_reduce=reduce)
        m = torch.rand(3, 5)
        P, N = model.group_embeddings()
        m1, m0 = m[..., None], 1 - m[..., None]
        expect, expect_con = m1 * P + m0 * N, m0 * P + m1 * N
        if reduce == "concat":
            expect, expect_con = expect.flatten(1), expect_con.flatten(1)
        else:
            expect, expect_con = expect.sum(1), expect_con.sum(1)
        assert torch.allclose(model._group_rep(m).dense(), expect, atol=1e-6)
        assert torch.allclose(model._group_rep(m, swapped=True).dense(), expect_con, atol=1e-6)


@pytest.mark.parametrize("reduce", ["concat", "sum"])
@pytest.mark.parametrize("embedding", ["dual", "single"])
def test_factored_group_rep_equals_dense(reduce, embedding):
    """GroupRep.linear / .cosine and PersonalRep.linear equal the dense computations."""
    model = make(group_reduce=reduce, group_embedding=embedding)
    x, _ = batch(16)
    m = torch.rand(16, 5)
    emb = model.embedding(x)
    r_p = model._personal_rep(emb)
    for swapped in (False, True) if embedding == "dual" else (False,):
        rep = model._group_rep(m, swapped)
        w = torch.randn(7, rep.width)
        assert torch.allclose(rep.linear(w), rep.dense() @ w.T, atol=1e-5)
        dense_cos = cosine(rep.dense(), r_p.dense())
        assert torch.allclose(rep.cosine(r_p.dense()), dense_cos, atol=1e-5)
        assert torch.allclose(rep.cosine(r_p), dense_cos, atol=1e-5)
    w = torch.randn(7, r_p.width)
    assert torch.allclose(r_p.linear(w), r_p.dense() @ w.T, atol=1e-5)
    # and so are the gradients of the factored cosine
    params = list(model.f2.parameters())
    rep = model._group_rep(m)
    factored = torch.autograd.grad(rep.cosine(r_p).sum(), params, retain_graph=True)
    dense = torch.autograd.grad(cosine(rep.dense(), r_p.dense()).sum(), params)
    for a, b in zip(factored, dense, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(r_p.dense(), model.f2(emb[:, model.personal_idx].flatten(1)))


@pytest.mark.parametrize("strategy", ["input", "dynamic", "ensemble"])
@pytest.mark.parametrize(
    "backbone",
    [
        {"name": "mlp"},
        {
            "name": "mlp",
            "batch_norm": True,
            "dropout": 0.2,
            "head_units": [8, 4],
            "activation": "tanh",
        },
    ],
)
def test_forward_equals_the_dense_formulation(strategy, backbone):
    """The factored forward computes exactly docs/gprec.md §3-§5's formulas on dense r_G / r_P."""
    model = make(strategy=strategy, lambda_orthogonal=0.3, backbone=backbone)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    model.eval()
    x, y = batch()
    bb = model.backbone
    with torch.no_grad():
        emb = model.embedding(x)
        r_b = bb.represent(x, emb).r
        r_g, r_p = model.group_representation(x), model.individual_representation(x)
        m = model.group_masks(x)
        r_con = model._group_rep(m, swapped=True).dense()
        e_v = emb[:, model.item_idx].flatten(1)
        if strategy == "input":
            ref = model.strategy.head(torch.cat([r_b, r_g, r_p], 1)).squeeze(-1)
        elif strategy == "dynamic":
            s = model.strategy
            ref = bb.head(r_b, s.deltas(s.f_dp(torch.cat([r_g, r_p], 1)))).squeeze(-1)
        else:
            s = model.strategy
            probs = [bb.head(r_b), s.group_head(r_g), s.personal_head(r_p)]
            probs = [p.squeeze(-1) for p in probs]
            ref = torch.logit(torch.stack([torch.sigmoid(p) for p in probs]).mean(0))
        out = model(x, y)
    assert torch.allclose(out.logit, ref, atol=1e-5)
    # The auxiliary losses exist only in training; there, with noise-free masks (dropout and
    # BatchNorm touch only the prediction path), they equal the dense formulas.
    model.train()
    without_noise(model)
    with torch.no_grad():
        out = model(x, y)
    bce = F.binary_cross_entropy_with_logits
    group = bce(model.f1(torch.cat([r_g, e_v], 1)).squeeze(-1), y)
    con = bce(model.f1(torch.cat([r_con, e_v], 1)).squeeze(-1), y)
    assert out.aux_losses["group"].item() == pytest.approx(group.item(), rel=1e-5)
    assert out.aux_losses["contrastive"].item() == pytest.approx(-0.001 * con.item(), rel=1e-5)
    ortho = 0.3 * orthogonal_loss(r_g, r_p)
    assert out.aux_losses["orthogonal"].item() == pytest.approx(ortho.item(), rel=1e-5)


def test_orthogonal_loss_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = torch.tensor([[0.0, 2.0], [-1.0, -1.0], [4.0, 3.0]])
    cos = [0.0, -1.0, 24.0 / 25.0]
    assert orthogonal_loss(a, b, "abs").item() == pytest.approx(sum(map(abs, cos)) / 3, abs=1e-6)
    assert orthogonal_loss(a, b, "signed").item() == pytest.approx(sum(cos) / 3, abs=1e-6)
    # in the model: lambda_3 * mean |cos(r_G, r_P)| of its own representations
    for mode in ("abs", "signed"):
        model = make(orthogonal=mode, lambda_orthogonal=0.5)  # training: aux losses exist
        without_noise(model)
        x, _ = batch()
        got = model(x).aux_losses["orthogonal"]
        c = F.cosine_similarity(model.group_representation(x), model.individual_representation(x))
        ref = 0.5 * (c.abs() if mode == "abs" else c).mean()
        assert got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_labels_gate_the_label_dependent_losses():
    model = make(backbone_aux_loss=True)
    x, y = batch()
    assert set(model(x, y).aux_losses) == {"group", "contrastive", "orthogonal", "backbone"}
    assert set(model(x).aux_losses) == {"orthogonal"}
    assert model.eval()(x, y).aux_losses == {}  # only in training, never in evaluation
    model.train()
    bb = model.backbone
    rep = bb.represent(x, model.embedding(x))
    ref = F.binary_cross_entropy_with_logits(bb.head(rep.r).squeeze(-1), y)
    assert model(x, y).aux_losses["backbone"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_ablation_single_group_embedding_gprec1():
    dual, single = make(), make(group_embedding="single")
    G, d = 5, D
    assert single.neg is None and single.group_embeddings()[1] is None
    assert dual.group_embeddings()[1].shape == (G, d)
    # classifier emits one score per group instead of two: 32 weights + 1 bias fewer per group
    assert n_params(dual.classifier) - n_params(single.classifier) == G * (32 + 1)
    assert n_params(dual) - n_params(single) == G * d + G * 33
    x, y = batch()
    assert set(single(x, y).aux_losses) == {"group", "orthogonal"}
    w = single.group_masks(x)  # a plain softmax over the G groups
    assert torch.allclose(w.sum(1), torch.ones(32), atol=1e-6)
    r = single.group_representation(x)
    assert torch.allclose(r, (w[..., None] * single.pos).flatten(1), atol=1e-6)
    single.eval()
    with torch.no_grad():
        emb = single.embedding(x)
        r_b = single.backbone.represent(x, emb).r
        ref = single.strategy.head(
            torch.cat([r_b, r, single.individual_representation(x)], 1)
        ).squeeze(-1)
    assert torch.allclose(single(x).logit, ref, atol=1e-5)


def test_ablation_no_individual_gprec2():
    full, no_ind = make(), make(individual=False)
    assert no_ind.f2 is None and no_ind.personal_dim == 0
    width = full.group_dim  # r_P's width, removed from the head's input too
    head_in = full.strategy.head.linears[0].in_features
    assert no_ind.strategy.head.linears[0].in_features == head_in - width
    assert n_params(full) - n_params(no_ind) == n_params(full.f2) + 64 * width
    x, y = batch()
    assert set(no_ind(x, y).aux_losses) == {"group", "contrastive"}
    with pytest.raises(ValueError):
        no_ind.individual_representation(x)
    for strategy in ("dynamic", "ensemble"):
        m = make(individual=False, strategy=strategy)
        assert m(x, y).logit.shape == (32,)
        assert m.f2 is None and getattr(m.strategy, "personal_head", None) is None


@pytest.mark.parametrize(
    "opts, missing, f1_kept",
    [
        ({"lambda_group": 0.0}, {"group"}, True),  # GPRec-3: f_1 still serves L_con
        ({"lambda_contrastive": 0.0}, {"contrastive"}, True),  # GPRec-4
        ({"lambda_orthogonal": 0.0}, {"orthogonal"}, True),  # GPRec-5
        ({"lambda_group": 0.0, "lambda_contrastive": 0.0}, {"group", "contrastive"}, False),
    ],
)
def test_ablation_zero_lambdas_drop_their_branch(opts, missing, f1_kept):
    full, ablated = make(), make(**opts)
    x, y = batch()
    assert set(full(x, y).aux_losses) - set(ablated(x, y).aux_losses) == missing
    assert (ablated.f1 is not None) == f1_kept
    assert n_params(full) - n_params(ablated) == (0 if f1_kept else n_params(full.f1))
    assert ablated.f2 is not None  # r_P is still used by the head without L_O


def test_group_reduce_sum_vs_concat_widths():
    x, _ = batch(8)
    for reduce, width in (("concat", 5 * D), ("sum", D)):
        model = make(group_reduce=reduce).eval()
        assert model.group_dim == width
        assert model.group_representation(x).shape == (8, width)
        assert model.individual_representation(x).shape == (8, width)
        rb = model.backbone.representation_dim
        assert model.strategy.head.linears[0].in_features == rb + 2 * width
        assert model.f1.linears[0].in_features == width + 2 * D  # 2 item fields


def test_dynamic_strategy_starts_at_the_backbone_and_learns_deltas():
    model = make(strategy="dynamic", dynamic_rank=3).eval()
    x, y = batch()
    bb = model.backbone
    base = bb.head(bb.represent(x, model.embedding(x)).r).squeeze(-1)
    assert torch.allclose(model(x).logit, base, atol=1e-6)
    n_out = sum(3 * (a + b) for a, b in bb.head.layer_shapes)
    assert model.strategy.f_dp.output_layer.out_features == n_out
    model.train()
    out = model(x, y)
    F.binary_cross_entropy_with_logits(out.logit, y).backward()
    assert model.strategy.f_dp.output_layer.weight.grad.abs().sum() > 0  # zeroed V rows move
    assert bb.head.linears[0].weight.grad.abs().sum() > 0


def test_ensemble_averages_the_three_probabilities():
    model = make(strategy="ensemble").eval()
    x, _ = batch()
    bb = model.backbone
    emb = model.embedding(x)
    with torch.no_grad():
        s = model.strategy
        p_b = torch.sigmoid(bb.head(bb.represent(x, emb).r).squeeze(-1))
        p_g = torch.sigmoid(s.group_head(model.group_representation(x)).squeeze(-1))
        p_p = torch.sigmoid(s.personal_head(model.individual_representation(x)).squeeze(-1))
        expected = torch.logit((p_b + p_g + p_p) / 3)
    assert torch.allclose(model(x).logit, expected, atol=1e-5)
    # stable at the extremes, where clamp-then-logit would flatten the gradient
    z = torch.tensor([[40.0], [45.0], [50.0]], requires_grad=True)
    out = logit_of_mean_probability(list(z))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "opts",
    [
        {"strategy": "input"},
        {"strategy": "dynamic"},
        {"strategy": "ensemble"},
        {"strategy": "input", "group_embedding": "single", "group_reduce": "sum"},
        {"strategy": "dynamic", "individual": False, "backbone_aux_loss": True},
    ],
)
def test_every_strategy_trains(opts):
    model = make(**opts)
    x, y = batch(64, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def eval_bce():
        model.eval()
        with torch.no_grad():
            loss = F.binary_cross_entropy_with_logits(model(x).logit, y).item()
        model.train()
        return loss

    before = eval_bce()
    for _ in range(40):
        out = model(x, y)
        loss = F.binary_cross_entropy_with_logits(out.logit, y) + sum(out.aux_losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_bce() < before - 0.05


def test_dedup_users_is_exact():
    x, y = batch(64)
    x[32:] = x[:32]  # repeated users (and items)
    ref, fast = make(dedup_users=False), make(dedup_users=True)
    fast.load_state_dict(ref.state_dict())
    for model in (ref, fast):
        model.eval()
        model.zero_grad()
        F.binary_cross_entropy_with_logits(model(x).logit, y).backward()
    assert torch.allclose(ref(x).logit, fast(x).logit, atol=1e-6)
    for (name, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), name
        assert a.grad is None or torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_dedup_users_falls_back_when_keys_would_overflow():
    assert radix_multipliers([2**40, 2**30]) is None
    assert radix_multipliers([7, 5, 3]).tolist() == [1, 7, 35]
    x, _ = batch(16)
    x[8:] = x[:8]
    ref, fast = make(dedup_users=False), make()
    fast.load_state_dict(ref.state_dict())
    fast.distinct_users._radix_ok = False  # as with huge cardinalities: unique rows instead of keys
    assert torch.allclose(ref.eval()(x).logit, fast.eval()(x).logit, atol=1e-6)


def test_gprec_shares_the_backbone_embedding_table():
    model = make()
    assert model.embedding is model.backbone.embedding
    assert sum(isinstance(m, FieldEmbedding) for m in model.modules()) == 1
    assert not any(k.startswith("embedding.") for k in model.state_dict())
    assert model.options.embedding_dim == model.backbone.options.embedding_dim == D
    # the backbone's embedding options follow GPRec's, or are given there
    opts = resolve_model_options({"name": "gprec", "backbone": {"name": "mlp", "embedding_dim": 8}})
    assert opts["embedding_dim"] == 8 and opts["backbone"]["embedding_dim"] == 8
    x, _ = batch(4)
    assert make().group_embeddings()[0].shape == (5, D)
    assert model(x).logit.shape == (4,)


@pytest.mark.parametrize(
    "cfg, fragment",
    [
        ({"n_grups": 3}, "n_grups: unknown key"),
        ({"backbone": {"name": "mlp", "dropuot": 0.1}}, "dropuot: unknown key"),
        ({"backbone": {"name": "mpl"}}, "unknown model 'mpl'"),
        ({"backbone": {"name": "gprec"}}, "is not one itself"),
        ({"backbone": {"head_units": [8]}}, "backbone"),
        ({"strategy": "stack"}, "strategy"),
        ({"group_embedding": "triple"}, "group_embedding"),
        ({"tau": 0}, "tau"),
        ({"embedding_dim": 8, "backbone": {"name": "mlp", "embedding_dim": 16}}, "embedding_dim"),
    ],
)
def test_options_reject_bad_keys_and_values(cfg, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_model_options({"name": "gprec", **cfg})
    assert fragment in str(err.value)


def test_config_roundtrip_and_missing_roles():
    cfg = parse_config({"model": {"name": "gprec", "n_groups": 3}})
    assert cfg.model["backbone"]["name"] == "mlp" and cfg.model["n_groups"] == 3
    assert resolve_model_options(cfg.model) == cfg.model  # idempotent
    no_personal = [EncodedField("i", Role.ITEM, 5), EncodedField("u", Role.USER, 4)]
    with pytest.raises(ConfigError, match="personal"):
        make(no_personal)
    model = make(no_personal, individual=False)
    assert model(torch.tensor([[1, 2]])).logit.shape == (1,)


def test_trainer_fits_gprec():
    X, y = toy_data(1200)
    model = make(n_groups=4)
    cfg = TrainConfig(seed=0, batch_size=200, max_epochs=2, progress=False, lr=0.01)
    result = Trainer(model, cfg, log=lambda m: None).fit(
        *as_tensors(X[:1000], y[:1000]), *as_tensors(X[1000:], y[1000:])
    )
    assert {"train_group", "train_contrastive", "train_orthogonal"} <= set(result.history[0])
    assert result.best_valid["auc"] > 0.5


def test_factored_gradients_equal_the_dense_gradients():
    model = make(lambda_orthogonal=0.3)  # training (aux losses), masks without noise: both
    without_noise(model)  # passes
    x, y = batch()  # see the same masks; no dropout or BatchNorm in this model
    bce = F.binary_cross_entropy_with_logits

    out = model(x, y)
    (bce(out.logit, y) + sum(out.aux_losses.values())).backward()
    fast = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    emb = model.embedding(x)
    m = model._memberships(model._scores(x, emb), noisy=False)
    r_g, r_con = model._group_rep(m).dense(), model._group_rep(m, True).dense()
    r_p = model.f2(emb[:, model.personal_idx].flatten(1))
    e_v = emb[:, model.item_idx].flatten(1)
    frozen = {k: v.detach() for k, v in model.f1.named_parameters()}
    y2 = torch.func.functional_call(model.f1, frozen, (torch.cat([r_con, e_v], 1),))
    loss = (
        bce(
            model.strategy.head(
                torch.cat([model.backbone.represent(x, emb).r, r_g, r_p], 1)
            ).squeeze(-1),
            y,
        )
        + bce(model.f1(torch.cat([r_g, e_v], 1)).squeeze(-1), y)
        - 0.001 * bce(y2.squeeze(-1), y)
        + 0.3 * orthogonal_loss(r_g, r_p)
    )
    loss.backward()
    dense = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert fast.keys() == dense.keys()
    for k in fast:
        assert torch.allclose(fast[k], dense[k], atol=1e-6, rtol=1e-4), k
