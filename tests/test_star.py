"""STAR (models/user_modeling/star.py) and its partitioned normalisation
(layers/partition_norm.py): each mechanism against a hand computation, shapes, training,
what is equal at init, config errors, and the CLI on a tiny ML-100K."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import toy_batch, toy_fields, train_steps
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.layers.mlp import LayerMod
from gprec.layers.partition_norm import PartitionedNorm, partition_moments
from gprec.models.base import Representation
from gprec.models.registry import build_model, resolve_model_options
from gprec.models.user_modeling.star import STAR

ROOT = Path(__file__).resolve().parents[1]
D = 4
PART = "f4"  # toy_fields' last user field, cardinality 3: partitions 0 (unseen), 1, 2


def make(fields=None, seed=0, **opts) -> STAR:
    torch.manual_seed(seed)
    cfg = {"name": "star", "embedding_dim": D, "partition_field": PART, **opts}
    return build_model(resolve_model_options(cfg), fields or toy_fields())


def batch(n=64, seed=0):
    return toy_batch(n, seed)


def randomise(module: torch.nn.Module, seed: int = 1) -> None:
    """Move every parameter off its init, so a test cannot pass on ones and zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


def randomised_pn(dim=5, P=4, seed=0) -> PartitionedNorm:
    pn = PartitionedNorm(dim, P, eps=1e-5, momentum=0.1)
    randomise(pn, seed)
    g = torch.Generator().manual_seed(seed + 10)
    pn.running_mean.copy_(torch.randn(P, dim, generator=g))
    pn.running_var.copy_(torch.rand(P, dim, generator=g) + 0.5)
    return pn


# Partition 3 is absent, partition 2 has a single sample, 0 and 1 several.
MIXED = torch.tensor([1, 0, 1, 1, 2, 0, 1, 0, 0, 1])


# -- partitioned normalisation ---------------------------------------------------------


def pn_by_hand(pn: PartitionedNorm, z: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """Training-mode PN written out: each partition's rows masked out and normalised with
    their own mean and (biased) variance, then that partition's affine map."""
    out = torch.zeros_like(z)
    for p in part.unique().tolist():  # the reference loops; the layer does not
        rows = part == p
        zp = z[rows]
        mu, var = zp.mean(0), zp.var(0, unbiased=False)
        gamma = pn.weight * pn.partition_weight[p]
        beta = pn.bias + pn.partition_bias[p]
        out = out.index_put((rows,), gamma * (zp - mu) / torch.sqrt(var + pn.eps) + beta)
    return out


def test_pn_training_output_is_per_partition_normalisation_by_hand():
    torch.manual_seed(0)
    pn = randomised_pn().train()
    z = torch.randn(len(MIXED), 5) * 3 + 1
    torch.testing.assert_close(out := pn(z, MIXED), pn_by_hand(pn, z, MIXED))
    # the single-sample partition has no spread: it is mapped to its shift
    torch.testing.assert_close(out[4], (pn.bias + pn.partition_bias[2]).detach())


def test_pn_gradients_equal_autograd_through_the_hand_formula():
    """PN's training backward is written out (BatchNorm's closed form per partition): its
    gradients, for the input and all four affine parameters, equal autograd's through
    `pn_by_hand`, with a singleton and an absent partition in the batch; and gradcheck."""
    torch.manual_seed(0)
    pn = randomised_pn().train()
    z = (torch.randn(len(MIXED), 5) * 2 - 1).requires_grad_(True)
    w = torch.randn(len(MIXED), 5)
    wrt = [z, pn.weight, pn.partition_weight, pn.bias, pn.partition_bias]
    ours = torch.autograd.grad((pn(z, MIXED) * w).sum(), wrt)
    theirs = torch.autograd.grad((pn_by_hand(pn, z, MIXED) * w).sum(), wrt)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(ours[2][3], torch.zeros(5))  # the absent partition's gamma_p
    pn64 = randomised_pn().double().train()
    z64 = torch.randn(len(MIXED), 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: pn64(z, MIXED), (z64,))
    params = [pn64.weight, pn64.partition_weight, pn64.bias, pn64.partition_bias]

    def of_params(*ps):
        return torch.func.functional_call(
            pn64, dict(zip(["weight", "partition_weight", "bias", "partition_bias"], ps, strict=True)),
            (z64.detach(), MIXED),
        )  # fmt: skip

    assert torch.autograd.gradcheck(of_params, tuple(p.detach().requires_grad_() for p in params))


def test_pn_equals_batchnorm_run_on_each_partition_alone():
    """A second, independent reference: torch's own batch_norm on each partition's rows,
    with that partition's affine and running statistics, gives the same output, the same
    running statistics afterwards, and the same gradients."""
    torch.manual_seed(0)
    pn = randomised_pn().train()
    parts = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1])  # no singleton: batch_norm needs 2
    z = torch.randn(len(parts), 5, requires_grad=True)
    zr = z.detach().clone().requires_grad_(True)
    rm, rv = pn.running_mean.clone(), pn.running_var.clone()
    out = pn(z, parts)
    expected = torch.empty_like(out)
    for p in (0, 1):
        rows = parts == p
        expected[rows] = F.batch_norm(
            zr[rows], rm[p], rv[p], pn.weight * pn.partition_weight[p],
            pn.bias + pn.partition_bias[p], training=True, momentum=0.1, eps=pn.eps,
        )  # fmt: skip
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(pn.running_mean, rm)
    torch.testing.assert_close(pn.running_var, rv)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (expected * w).sum().backward()
    torch.testing.assert_close(z.grad, zr.grad)


def test_pn_running_statistics_after_one_step_by_hand():
    pn = randomised_pn().train()
    before_mean, before_var = pn.running_mean.clone(), pn.running_var.clone()
    z = torch.randn(len(MIXED), 5)
    pn(z, MIXED)
    m = 0.1
    for p in (0, 1):
        zp = z[MIXED == p]
        torch.testing.assert_close(pn.running_mean[p], (1 - m) * before_mean[p] + m * zp.mean(0))
        # the variance that moves the running one is unbiased, as BatchNorm's
        torch.testing.assert_close(
            pn.running_var[p], (1 - m) * before_var[p] + m * zp.var(0, unbiased=True)
        )
    # one sample: its mean moves, its variance (not estimable from one) does not
    torch.testing.assert_close(pn.running_mean[2], (1 - m) * before_mean[2] + m * z[4])
    assert torch.equal(pn.running_var[2], before_var[2])
    # the absent partition keeps both, exactly
    assert torch.equal(pn.running_mean[3], before_mean[3])
    assert torch.equal(pn.running_var[3], before_var[3])
    assert pn.batches_tracked.tolist() == [1, 1, 1, 0]


def test_pn_eval_uses_each_partitions_running_statistics():
    pn = randomised_pn().eval()
    z = torch.randn(len(MIXED), 5)
    before = pn.running_mean.clone()
    out = pn(z, MIXED)
    for b, p in enumerate(MIXED.tolist()):
        gamma = pn.weight * pn.partition_weight[p]
        beta = pn.bias + pn.partition_bias[p]
        by_hand = gamma * (z[b] - pn.running_mean[p]) / torch.sqrt(pn.running_var[p] + pn.eps)
        torch.testing.assert_close(out[b], by_hand + beta)
    assert torch.equal(pn.running_mean, before)  # evaluation updates nothing
    # each sample on its own: the output does not depend on the rest of the batch
    torch.testing.assert_close(pn(z[:3], MIXED[:3]), out[:3])


def test_partition_moments_of_an_absent_partition_are_zero():
    z, part = torch.randn(4, 2), torch.tensor([0, 0, 2, 2])
    mean, var, count, centered = partition_moments(z, part, 3)
    assert count.tolist() == [2, 0, 2]
    torch.testing.assert_close(centered, z - mean[part])
    assert torch.equal(mean[1], torch.zeros(2)) and torch.equal(var[1], torch.zeros(2))


# -- the star-topology head ------------------------------------------------------------


def test_head_output_equals_an_explicit_per_sample_computation():
    """Every sample's logit = its own FCN with W * W_p[p], b + b_p[p] on PN(r_b), plus the
    auxiliary network on its partition's indicator: computed sample by sample by hand."""
    model = make()
    randomise(model)
    model.eval()
    x, _ = batch(24)
    logit = model(x).logit
    bb = model.backbone
    emb = model.embedding(x)
    r = emb.flatten(1)  # the MLP backbone's r_b
    lins = bb.head.linears
    for b in range(len(x)):
        p = int(x[b, 4])
        pn = model.norm
        h = (pn.weight * pn.partition_weight[p]) * (r[b] - pn.running_mean[p]) / torch.sqrt(
            pn.running_var[p] + pn.eps
        ) + (pn.bias + pn.partition_bias[p])
        for i, lin in enumerate(lins):
            w = lin.weight.t() * model.partition_weights[i][p]
            h = h @ w + lin.bias + model.partition_biases[i][p]
            if i < len(lins) - 1:
                h = torch.relu(h)
        a = model.indicator.weight[p]
        for i, lin in enumerate(model.aux.linears):
            a = a @ lin.weight.t() + lin.bias
            if i < len(model.aux.linears) - 1:
                a = torch.relu(a)
        torch.testing.assert_close(logit[b], (h + a).squeeze(), rtol=1e-5, atol=1e-5)


def test_partition_parameters_learn_only_from_their_partitions_samples():
    model = make().train()
    x, y = batch(64)
    x[:, 4] = torch.where(x[:, 4] == 2, torch.ones_like(x[:, 4]), x[:, 4])  # partitions 1 only
    assert set(x[:, 4].tolist()) == {1}
    F.binary_cross_entropy_with_logits(model(x, y).logit, y).backward()
    for w in [*model.partition_weights, *model.partition_biases, model.norm.partition_weight]:
        assert w.grad[1].abs().sum() > 0
        assert torch.equal(w.grad[0], torch.zeros_like(w.grad[0]))
        assert torch.equal(w.grad[2], torch.zeros_like(w.grad[2]))


# -- at init -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "deepfm"])
def test_at_init_without_pn_and_auxiliary_star_is_the_bare_backbone(name):
    """W_p = 1, b_p = 0: every partition's head is the shared one, so STAR with PN and the
    auxiliary network off equals the backbone (same parameters), its own logit included."""
    model = make(backbone={"name": name}, partition_norm=False, auxiliary=False)
    bare = build_model(resolve_model_options({"name": name, "embedding_dim": D}), toy_fields())
    bare.load_state_dict(model.backbone.state_dict())
    x, _ = batch(32)
    for mode in (True, False):
        model.train(mode), bare.train(mode)
        torch.testing.assert_close(model(x).logit, bare(x).logit)


def test_at_init_star_is_the_shared_head_on_standardised_input_plus_auxiliary():
    """With the defaults at init: PN's affine map is the identity (gamma = gamma_p = 1,
    beta = beta_p = 0), so it standardises r_b per partition; the head is the shared head;
    the logit is that plus the auxiliary network's (not zero at init)."""
    model = make().train()
    x, _ = batch(48)
    part = x[:, 4]
    emb = model.embedding(x)
    r = emb.flatten(1)
    z = torch.empty_like(r)
    for p in part.unique().tolist():
        rows = part == p
        z[rows] = (r[rows] - r[rows].mean(0)) / torch.sqrt(r[rows].var(0, unbiased=False) + 1e-5)
    shared = model.backbone.predict(Representation(z))
    aux = model.aux(model.indicator(part)).squeeze(-1)
    torch.testing.assert_close(model(x).logit, shared + aux, rtol=1e-5, atol=1e-5)
    assert aux.abs().max() > 0


# -- shapes, training, options ------------------------------------------------------------


def test_shapes_and_no_auxiliary_losses():
    model = make()
    x, y = batch(16)
    P = 3
    assert model.n_partitions == P
    for w, b, (i, o) in zip(
        model.partition_weights, model.partition_biases, model.backbone.head.layer_shapes,
        strict=True,
    ):  # fmt: skip
        assert w.shape == (P, i, o) and b.shape == (P, o)
    assert model.norm.running_mean.shape == (P, len(toy_fields()) * D)
    for mode in (True, False):
        out = model.train(mode)(x, y)
        assert out.logit.shape == (16,) and out.aux_losses == {}
    assert STAR.description


@pytest.mark.parametrize(
    "opts",
    [{}, {"partition_norm": False}, {"auxiliary": False}, {"aux_fields": ["f3", "f0"]},
     {"backbone": {"name": "dcn"}}],
)  # fmt: skip
def test_a_few_training_steps_lower_the_loss(opts):
    model = make(**opts)
    x, y = batch(256)
    losses = train_steps(model, x, y, steps=30, lr=0.01)
    assert losses[-1] < losses[0] - 0.05


def test_aux_fields_join_the_indicator():
    """s_a = MLP_aux([e_p; E_f3]) per sample; without aux_fields, MLP_aux(e_p), which the
    model computes once per partition."""
    x, _ = batch(16)
    for aux_fields in ([], ["f3"]):
        model = make(aux_fields=aux_fields)
        emb = model.embedding(x)
        inputs = [model.indicator.weight[x[:, 4]], *(emb[:, 3] for _ in aux_fields)]
        expected = model.aux(torch.cat(inputs, 1)).squeeze(-1)
        torch.testing.assert_close(model.auxiliary_logit(x[:, 4], emb), expected)
    assert model.aux.layer_shapes[0][0] == 2 * D and model.aux_idx.tolist() == [3]


def test_options_toggle_the_parts():
    model = make(partition_norm=False, auxiliary=False)
    assert model.norm is None and model.aux is None and model.indicator is None


def test_default_partition_field_is_gender():
    fields = [*toy_fields()[:4], EncodedField("gender", Role.USER, 3)]
    torch.manual_seed(0)
    model = build_model(resolve_model_options({"name": "star", "embedding_dim": D}), fields)
    assert (model.partition_column, model.n_partitions) == (4, 3)


@pytest.mark.parametrize(
    "cfg, fragment",
    [
        ({"backbone": {"name": "finalmlp"}},
         "model.backbone.name: STAR scales each layer of the backbone's prediction head per "
         "partition, which 'finalmlp' does not allow (supported backbones: autoint, dcn, "
         "dcnv2, deepfm, destine, gdcn, mlp)"),
        ({"norm_momentum": 0}, "model.norm_momentum"),
        ({"norm_eps": -1}, "model.norm_eps"),
        ({"aux_units": [0]}, "model.aux_units"),
        ({"auxiliary": False, "aux_fields": ["f3"]}, "model.aux_fields: given, but auxiliary"),
        ({"partion_field": "f4"}, "model.partion_field: unknown key"),
        ({"backbone": {"name": "dcn", "batch_norm": True}},
         "model.backbone.batch_norm: true would give STAR's head a shared BatchNorm whose "
         "statistics mix partitions (STAR normalises per partition, partition_norm); set it "
         "false"),
        ({"batch_norm": True}, "model.backbone.batch_norm: true would give STAR's head"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_config_errors(cfg, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_model_options({"name": "star", **cfg})
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"partition_field": "sex"},
         "model.partition_field: 'sex' is not a field of this data; user fields: f2, f3, f4"),
        ({"partition_field": "f0"},
         "model.partition_field: 'f0' is an item field; user fields: f2, f3, f4"),
        ({"partition_field": None},
         "model.partition_field: this data has no 'gender' field to default to; name one of "
         "its user fields: f2, f3, f4"),
        ({"partition_field": "f2"},
         "model.partition_field: 'f2' has 40 values (partitions, unseen included), over "
         "model.max_partitions=8: each partition has its own parameters and compute; pick a "
         "coarser field or raise max_partitions"),
        ({"aux_fields": ["nope"]},
         "model.aux_fields: nope not a field of this data; fields: f0, f1, f2, f3, f4"),
        ({"aux_fields": ["f3", "f3"]}, "model.aux_fields: a field is named twice in ['f3', 'f3']"),
    ],
)  # fmt: skip
def test_bad_partition_or_aux_fields_are_one_clear_line(opts, message):
    with pytest.raises(ConfigError) as err:
        make(max_partitions=8, **opts)
    assert str(err.value) == message


def test_only_the_partitions_in_the_batch_are_computed_and_the_result_is_the_same():
    """layer_mods drops absent partitions' products (a speed-up); the logits equal those from
    every partition's products, and an absent partition's weights get no gradient."""
    model = make().eval()
    randomise(model)  # partitions' weights differ, so a wrong gather would show
    x, _ = batch(64)
    x[:, model.partition_column] = torch.where(x[:, model.partition_column] == 1, 2, 1)
    part = model.partition(x)
    assert len(torch.unique(part)) < model.n_partitions
    full = [
        LayerMod(partition_scale=(w, b, part))
        for w, b in zip(model.partition_weights, model.partition_biases, strict=True)
    ]
    rep = model.backbone.represent(x, model.embedding(x))
    r = model.norm(rep.r, part) if model.norm is not None else rep.r
    fast = model.backbone.predict(Representation(r, rep.logit), model.layer_mods(part))
    slow = model.backbone.predict(Representation(r, rep.logit), full)
    assert torch.allclose(fast, slow, atol=1e-6)
    fast.sum().backward()
    assert model.partition_weights[0].grad[0].abs().sum() == 0  # partition 0 absent
    assert model.partition_weights[0].grad[1].abs().sum() > 0
