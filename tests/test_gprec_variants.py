"""GPRec's variants beyond the paper (issue 22): a start from a trained backbone, a zero-started
scale on the user-level input, and the shared (cheaper) group classifier."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import toy_batch as batch
from conftest import toy_fields, train_steps, train_tiny_ml100k, write_ml100k
from gprec.cli.main import main
from gprec.config import parse_config
from gprec.errors import ConfigError
from gprec.layers.factored import GroupRep, PersonalRep, ScaledPart, factored_linear
from gprec.layers.group import BatchedGroupMLP, SharedGroupClassifier
from gprec.models.registry import build_model, resolve_model_options
from gprec.training.load import load_run

D = 4


def make(fields=None, seed=0, **opts):
    torch.manual_seed(seed)
    cfg = {"name": "gprec", "n_groups": 5, "embedding_dim": D, **opts}
    return build_model(resolve_model_options(cfg), fields or toy_fields())


def trained_backbone(seed=1):
    """A bare MLP with every weight moved off its initialisation."""
    torch.manual_seed(seed)
    mlp = build_model(resolve_model_options({"name": "mlp", "embedding_dim": D}), toy_fields())
    x, y = batch(64)
    train_steps(mlp, x, y, steps=5, lr=0.05)
    return mlp.eval()


# -- zero starts: GPRec at step 0 is the trained backbone ------------------------------------


@pytest.mark.parametrize("strategy", ["input", "dynamic"])
def test_started_from_a_backbone_gprec_predicts_what_it_does(strategy):
    mlp = trained_backbone()
    model = make(strategy=strategy, init_from="unused-here")
    model.start_from_backbone(mlp.state_dict())
    model.eval()
    x, _ = batch(200, seed=3)
    with torch.no_grad():
        ours, theirs = model(x).logit, mlp(x).logit
    if strategy == "dynamic":  # every delta is exactly 0: the very same operations
        assert torch.equal(ours, theirs)
    else:  # the head's zero columns add exact zeros, summed in another order
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # ...and it is not a GPRec that ignores its user level: that input is live after a step.
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xb, yb = batch(64)
    out = model(xb, yb)
    (F.binary_cross_entropy_with_logits(out.logit, yb) + sum(out.aux_losses.values())).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(x).logit, theirs)


@pytest.mark.parametrize("strategy", ["input", "dynamic", "ensemble"])
def test_a_zero_input_scale_starts_gprec_on_the_backbones_path(strategy):
    model = make(strategy=strategy, input_scale="zero").eval()
    x, _ = batch(100)
    emb = model.embedding(x)
    rep = model.backbone.represent(x, emb)
    with torch.no_grad():
        logit = model(x).logit
        if strategy == "input":
            # The head over [r_b, 0, 0]: only its r_b columns act.
            head = model.strategy.head
            w = head.linears[0].weight[:, : rep.r.shape[1]]
            h = torch.relu(F.linear(rep.r, w, head.linears[0].bias))
            want = head._after(0, h).squeeze(-1)
            torch.testing.assert_close(logit, want, rtol=0, atol=1e-6)
        elif strategy == "dynamic":
            torch.testing.assert_close(logit, model.backbone.predict(rep), rtol=0, atol=1e-6)
    # The scales get a gradient, so they can grow (input, ensemble: at once; dynamic: through
    # f_DP once its zeroed rows have moved).
    model.train()
    xb, yb = batch(64)
    out = model(xb, yb)
    F.binary_cross_entropy_with_logits(out.logit, yb).backward()
    assert model.input_scale.grad is not None and model.input_scale.shape == (2,)
    if strategy != "dynamic":
        assert model.input_scale.grad.abs().sum() > 0


def test_a_scaled_part_is_the_scaled_dense_part_under_a_linear_layer():
    torch.manual_seed(0)
    m, A, Dm = torch.rand(6, 3), torch.randn(3, 2), torch.randn(3, 2)
    layer = torch.nn.Linear(5, 6)
    parts = [GroupRep(m, A, Dm, concat=True), PersonalRep(torch.randn(6, 5), layer)]
    dense = torch.randn(6, 4)
    w, b = torch.randn(7, 4 + 6 + 6), torch.randn(7)
    s = torch.tensor(0.37)
    scaled = [ScaledPart(dense, s), *(ScaledPart(p, s) for p in parts)]
    want = F.linear(torch.cat([s * dense, *(s * p.dense() for p in parts)], 1), w, b)
    torch.testing.assert_close(factored_linear(w, b, scaled), want, rtol=1e-5, atol=1e-5)
    assert [p.width for p in scaled] == [4, 6, 6]


def test_the_factored_forward_equals_the_dense_one_for_every_variant():
    """The variants keep r_G and r_P factored: the logit equals the dense computation."""
    x, _ = batch(50)
    for opts in (
        {"strategy": "input", "input_scale": "zero"},
        {"strategy": "input", "classifier": "shared"},
        {"strategy": "dynamic", "classifier": "shared", "input_scale": "zero"},
    ):
        model = make(**opts).eval()
        with torch.no_grad():
            model.input_scale is not None and model.input_scale.fill_(0.7)
            emb = model.embedding(x)
            rep = model.backbone.represent(x, emb)
            r_g, r_p = model.group_representation(x), model.individual_representation(x)
            scale = 0.7 if model.input_scale is not None else 1.0
            dense = [scale * r_g, scale * r_p]
            if opts["strategy"] == "input":
                want = model.strategy.head(torch.cat([rep.r, *dense], 1)).squeeze(-1)
            else:
                z = model.strategy.f_dp(torch.cat(dense, 1))
                want = model.backbone.predict(rep, model.strategy.deltas(z))
            torch.testing.assert_close(model(x).logit, want, rtol=1e-5, atol=1e-5)


# -- the shared classifier -------------------------------------------------------------------


def test_the_shared_classifier_has_the_shapes_and_the_cost_it_promises():
    G, d_in = 60, 5 * 16
    shared = SharedGroupClassifier(d_in, G, [64], [8], 2)
    faithful = BatchedGroupMLP(d_in, G, [64, 32], 2)
    x = torch.randn(33, d_in)
    assert shared(x).shape == faithful(x).shape == (33, G, 2)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # Multiply-adds per row are about the weights: ~12x fewer at the paper's G = 60.
    assert n(faithful) > 10 * n(shared)
    # It is the composition it says: a shared block, then G independent small MLPs.
    h = torch.relu(shared.shared[0](x))
    torch.testing.assert_close(shared(x), shared.groups(h))
    model = make(classifier="shared", classifier_shared_units=[16], classifier_group_units=[4])
    assert model.group_masks(batch(9)[0]).shape == (9, 5)


def test_gprec_with_the_shared_classifier_learns():
    torch.manual_seed(0)
    model = make(classifier="shared", strategy="input", input_scale="zero")
    x, y = batch(256)
    opt, losses = torch.optim.Adam(model.parameters(), lr=0.02), []
    for _ in range(40):
        out = model(x, y)
        main = F.binary_cross_entropy_with_logits(out.logit, y)
        opt.zero_grad()
        (main + sum(out.aux_losses.values())).backward()
        opt.step()
        losses.append(main.item())
    assert losses[-1] < 0.9 * losses[0]
    for name, p in model.named_parameters():  # nothing left without a gradient (DDP)
        assert p.grad is not None, name


# -- options -------------------------------------------------------------------------------


def test_variant_options_are_checked_before_any_data_is_read():
    base = {"name": "gprec", "embedding_dim": D}
    with pytest.raises(Exception, match="ensemble"):
        resolve_model_options({**base, "strategy": "ensemble", "init_from": "runs/x"})
    with pytest.raises(Exception, match="input_scale"):
        resolve_model_options({**base, "init_from": "runs/x", "input_scale": "zero"})
    with pytest.raises(Exception, match="classifier"):
        resolve_model_options({**base, "classifier": "cheap"})
    with pytest.raises(Exception, match="freezes the backbone"):  # a frozen random backbone
        resolve_model_options({**base, "backbone_lr_scale": 0})


def test_init_from_names_the_run_of_each_seed():
    raw = {"model": {"name": "gprec", "init_from": "runs/mlp/seed-{seed}"}, "train": {"seed": 7}}
    assert parse_config(raw, "test").model["init_from"] == "runs/mlp/seed-7"


# -- end to end: gprec train with init_from --------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    write_ml100k(root / "ml-100k", n_users=40, n_items=30, n_ratings=1500)
    return root


def test_train_from_a_backbone_run_keeps_or_improves_it(tiny):
    mlp = train_tiny_ml100k(tiny, "mlp")
    run = train_tiny_ml100k(
        tiny, "gprec", f"model.init_from={mlp}", "train.max_epochs=3",
        config="gprec-dynamic.yaml",
    )  # fmt: skip
    ours, theirs = (json.loads((r / "metrics.json").read_text()) for r in (run, mlp))
    # Epoch 0 is the MLP itself, scored on validation: the kept model is never worse there.
    assert ours["valid"]["auc"] >= theirs["valid"]["auc"]
    if ours["valid"]["best_epoch"] == 0:
        assert ours["test"] == theirs["test"]
    cfg = (run / "config.yaml").read_text()
    assert f"init_from: {mlp}" in cfg
    # The finished run reloads without its starting run: model.pt holds every weight.
    load_run(run).predict(torch.ones(3, len(load_run(run).fields), dtype=torch.long))


def test_init_from_refuses_a_run_of_other_data_or_options(tiny, capsys):
    mlp = train_tiny_ml100k(tiny, "mlp-b")
    cases = [
        ([f"model.init_from={mlp}", "train.seed=99"], "data.split_seed"),
        ([f"model.init_from={mlp}", "model.backbone.head_units=[8]"], "head_units"),
        ([f"model.init_from={tiny / 'nothing'}"], "no such run directory"),
        ([f"model.init_from={tiny / 'ml-100k'}"], "not a finished run"),
    ]
    for i, (sets, message) in enumerate(cases):
        args = ["train", "-c", "configs/ml-100k/gprec-dynamic.yaml",
                "--set", f"data.path={tiny / 'ml-100k'}", "--set", f"data.cache_dir={tiny / 'cache'}",
                "--set", "train.progress=false", *[a for s in sets for a in ("--set", s)],
                "--out", str(tiny / f"refused-{i}")]  # fmt: skip
        capsys.readouterr()
        assert main(args) != 0
        errors = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
        assert len(errors) == 1 and message in errors[0], errors
        assert not (tiny / f"refused-{i}").exists()  # checked before anything is written


def test_a_run_without_init_from_is_unchanged(tiny):
    with pytest.raises(ConfigError):
        make(strategy="input").start_from_run(str(tiny / "nothing"))


def test_the_backbone_can_train_slower_or_not_at_all():
    from gprec.config import TrainConfig
    from gprec.training.trainer import Trainer, as_tensors

    model = make(strategy="dynamic", backbone_lr_scale=0.1)
    ours, backbone = model.parameter_groups(0.01)
    assert backbone["lr"] == pytest.approx(0.001) and "lr" not in ours
    n = sum(p.numel() for g in (ours, backbone) for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())  # every parameter, once

    model = make(strategy="dynamic", backbone_lr_scale=0, init_from="unused-here")
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    from conftest import toy_data

    X, y = toy_data(300)
    Trainer(
        model, TrainConfig(max_epochs=2, batch_size=64, progress=False), log=lambda m: None
    ).fit(*as_tensors(X[:200], y[:200]), *as_tensors(X[200:], y[200:]))
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # frozen
    assert not torch.equal(
        model.strategy.f_dp.output_layer.weight,
        make(strategy="dynamic").strategy.f_dp.output_layer.weight,
    )


# -- review additions: every backbone's zero start; epoch 0 kept, resumed, warned -------------


def _backbones_with(strategy):
    from gprec.models.base import Backbone
    from gprec.models.registry import available_models, model_class

    return [b for b in available_models(Backbone) if strategy in model_class(b).gprec_strategies]


@pytest.mark.parametrize(
    "strategy,backbone",
    [(s, {"name": b}) for s in ("input", "dynamic") for b in _backbones_with(s)]
    + [(s, {"name": "mlp", "batch_norm": True, "dropout": 0.3}) for s in ("input", "dynamic")],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={v[k]}" for k in v),
)
def test_every_backbone_started_from_its_run_predicts_what_it_did(strategy, backbone):
    """Backbones with their own additive logit (DeepFM's FM, Wide & Deep's wide part), and
    heads with BatchNorm (running statistics moved by training) and dropout, in eval mode."""
    torch.manual_seed(1)
    bare = build_model(resolve_model_options({**backbone, "embedding_dim": D}), toy_fields())
    x, y = batch(64)
    train_steps(bare, x, y, steps=5, lr=0.05)
    bare.eval()
    model = make(strategy=strategy, backbone=dict(backbone), init_from="unused-here")
    model.start_from_backbone(bare.state_dict())
    model.eval()
    xs, _ = batch(200, seed=3)
    with torch.no_grad():
        ours, theirs = model(xs).logit, bare(xs).logit
    if strategy == "dynamic":
        assert torch.equal(ours, theirs)
    else:
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def _started_and_flipped(tmp_path=None):
    """A bare MLP trained on the toy rule (the starting model), and a training on the flipped
    labels that can only make it worse on validation: what `score_start` must guard against."""
    import copy

    from conftest import toy_data
    from gprec.config import TrainConfig
    from gprec.training.trainer import Trainer, as_tensors, seed_everything

    X, y = toy_data(3000)
    train, valid = as_tensors(X[:2400], y[:2400]), as_tensors(X[2400:], y[2400:])
    seed_everything(0)
    start = build_model(resolve_model_options({"name": "mlp", "embedding_dim": D}), toy_fields())
    cfg = TrainConfig(max_epochs=4, batch_size=256, lr=0.01, progress=False)
    Trainer(start, cfg, log=lambda m: None).fit(*train, *valid)
    flipped = (train[0], 1 - train[1])
    cfg = TrainConfig(max_epochs=3, patience=5, batch_size=256, lr=0.01, progress=False)

    def fit(model=None, score_start=True, resume=None, log=lambda m: None):
        model = copy.deepcopy(start) if model is None else model
        trainer = Trainer(model, cfg, tmp_path, log=log)
        return model, trainer.fit(*flipped, *valid, resume=resume, score_start=score_start)

    return start, fit


def test_score_start_keeps_the_starting_model_when_training_only_hurts(tmp_path):
    start, fit = _started_and_flipped(tmp_path)
    kept, result = fit()
    assert result.best_epoch == 0 and result.epochs_run == 3
    for k, v in start.state_dict().items():
        assert torch.equal(kept.state_dict()[k], v), k
    saved = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in start.state_dict().items())
    # Without it the run ends on a worse epoch: the test above can fail.
    _, plain = fit(score_start=False)
    assert plain.best_epoch >= 1 and plain.best_valid["auc"] < result.best_valid["auc"]


def test_a_resumed_run_keeps_its_epoch_0_best(tmp_path, monkeypatch):
    """resume.pt after epoch 1 holds the start as the best state (not the current one); a run
    resumed from it into a freshly built model ends as the uninterrupted run: the start."""
    import gprec.training.rows as rows_module
    from gprec.training.resume import RESUME

    start, fit = _started_and_flipped(tmp_path / "whole")
    _, whole = fit()
    real, epochs = rows_module.iterate_batches, [0]

    def stop_in_epoch_2(*args, **kwargs):
        epochs[0] += 1
        for i, b in enumerate(real(*args, **kwargs)):
            if epochs[0] == 2 and i == 2:
                raise KeyboardInterrupt
            yield b

    _, fit = _started_and_flipped(tmp_path / "cut")
    with monkeypatch.context() as m:
        m.setattr(rows_module, "iterate_batches", stop_in_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            fit()
    ckpt = torch.load(tmp_path / "cut" / RESUME, weights_only=True)
    stopping = ckpt["early_stopping"]
    assert ckpt["epoch"] == 1 and stopping["best_epoch"] == 0 and not stopping["best_is_current"]
    torch.manual_seed(123)  # another model: the checkpoint alone must bring the start back
    fresh = build_model(resolve_model_options({"name": "mlp", "embedding_dim": D}), toy_fields())
    resumed, result = fit(model=fresh, resume=ckpt)
    assert result.best_epoch == 0 and result.best_valid == whole.best_valid
    assert result.epochs_run == whole.epochs_run
    for k, v in start.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_a_started_run_still_improving_at_its_only_epoch_is_warned():
    """With `score_start` epoch 1 is compared with a scored epoch 0: improving there is the
    same evidence of undertraining as improving at epoch 2 of a run from scratch."""
    from conftest import toy_data
    from gprec.config import TrainConfig
    from gprec.training.trainer import Trainer, as_tensors, seed_everything

    X, y = toy_data(3000)
    seed_everything(0)
    model = build_model(resolve_model_options({"name": "mlp", "embedding_dim": D}), toy_fields())
    cfg = TrainConfig(max_epochs=1, batch_size=256, lr=0.01, progress=False)
    fit = Trainer(model, cfg, log=lambda m: None).fit(
        *as_tensors(X[:2400], y[:2400]), *as_tensors(X[2400:], y[2400:]), score_start=True
    )
    assert fit.best_epoch == 1
    assert any("still improved at the last epoch" in w for w in fit.warnings)


def test_the_shared_classifier_learns_g_different_groupings():
    """The classifier alone, trained on G memberships that each split the inputs another way
    (the sign of a random projection per group): its per-group layers after the shared block
    must tell the groups apart, so the loss falls well below that of one shared answer."""
    torch.manual_seed(0)
    G, d_in = 6, 12
    clf = SharedGroupClassifier(d_in, G, [32], [8], 2)
    x = torch.randn(512, d_in)
    member = (x @ torch.randn(d_in, G) > 0).float()  # (B, G), about half in each group
    opt, losses = torch.optim.Adam(clf.parameters(), lr=0.01), []
    for _ in range(200):
        s = clf(x)
        loss = F.binary_cross_entropy_with_logits(s[..., 0] - s[..., 1], member)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.6 and losses[-1] < 0.25, losses[::50]


@pytest.mark.parametrize("scale", [0.1, 0.0])
@pytest.mark.parametrize("strategy", ["input", "dynamic"])
def test_parameter_groups_hold_every_trainable_parameter_exactly_once(strategy, scale):
    """By identity, not by count: the backbone's (its shared embedding table included) in the
    slower group or frozen, every other parameter in the first group; a frozen backbone is not
    counted in metrics' `parameters`."""
    from gprec.training.run import count_parameters

    model = make(strategy=strategy, backbone_lr_scale=scale, init_from="unused-here")
    groups = model.parameter_groups(0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    backbone = {id(p) for p in model.backbone.parameters()}
    assert id(model.embedding.table.weight) in backbone
    assert {id(p) for p in groups[0]["params"]} == {
        id(p) for p in model.parameters() if id(p) not in backbone
    }
    if scale:
        assert {id(p) for p in groups[1]["params"]} == backbone
        assert groups[1]["lr"] == pytest.approx(0.001)
    else:
        assert len(groups) == 1
        assert not any(p.requires_grad for p in model.backbone.parameters())
        n_backbone = sum(p.numel() for p in model.backbone.parameters())
        assert count_parameters(model) == sum(p.numel() for p in model.parameters()) - n_backbone
