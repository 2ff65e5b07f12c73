"""The backbone contract, checked over every registered backbone (a new one is covered by
registering it): shapes, a training step lowers the loss, each declared GPRec strategy works
and equals its dense formulation, each undeclared one is a config error naming the supported
ones; plus the defects found while building the contract (issue 17)."""

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import toy_batch, toy_data, toy_fields, train_steps
from gprec.cli.main import main
from gprec.config import TrainConfig, parse_config
from gprec.errors import ConfigError
from gprec.models import registry
from gprec.models.backbones.mlp import MLPBackbone
from gprec.models.base import Backbone, Representation
from gprec.models.gprec import GPRec
from gprec.models.gprec_strategies import STRATEGIES, logit_of_mean_probability
from gprec.models.registry import available_models, build_model, resolve_model_options
from gprec.training import trainer as trainer_module
from gprec.training.run_dir import read_status
from gprec.training.trainer import Trainer, as_tensors, iterate_batches

BACKBONES = available_models(Backbone)
D = 4


def backbone(name, **opts) -> Backbone:
    torch.manual_seed(0)
    cfg = resolve_model_options({"name": name, "embedding_dim": D, **opts})
    return build_model(cfg, toy_fields())


def gprec(name, strategy, **opts) -> GPRec:
    torch.manual_seed(0)
    cfg = {"name": "gprec", "n_groups": 3, "embedding_dim": D, "strategy": strategy}
    return build_model(
        resolve_model_options({**cfg, "backbone": {"name": name}, **opts}), toy_fields()
    )


def batch(n=64, seed=0):
    return toy_batch(n, seed)


def test_every_paper_backbone_is_registered_and_checked():
    """The suite below runs over BACKBONES: a module the package failed to import would
    silently shrink it, so the exact set is asserted."""
    paper = {"mlp", "deepfm", "dcn", "dcnv2", "gdcn", "finalmlp", "destine", "autoint"}
    assert set(BACKBONES) == paper


@pytest.mark.parametrize("name", BACKBONES)
def test_shapes_and_predict_equal_forward(name):
    model = backbone(name).eval()
    x, _ = batch(16)
    rep = model.represent(x, model.embedding(x))
    assert isinstance(rep, Representation)
    assert rep.r.shape == (16, model.representation_dim)
    assert rep.logit is None or rep.logit.shape == (16,)
    out = model(x)
    assert out.logit.shape == (16,) and out.aux_losses == {}
    assert torch.allclose(out.logit, model.predict(rep))
    assert type(model).description, "gprec models shows it"
    assert set(model.gprec_strategies) <= set(STRATEGIES)


@pytest.mark.parametrize("name", BACKBONES)
def test_a_few_training_steps_lower_the_loss(name):
    model = backbone(name)
    x, y = batch(256)
    losses = train_steps(model, x, y, steps=30, lr=0.01)
    assert losses[-1] < losses[0] - 0.05


@pytest.mark.parametrize("name", BACKBONES)
def test_the_head_declares_what_the_strategies_need(name):
    model = backbone(name)
    declared = model.gprec_strategies
    if "input" in declared:
        assert model.head.accepts_extra_inputs
    if "dynamic" in declared:
        assert model.head.accepts_layer_mods and model.head.layer_shapes
    # What wrappers read at config time, before any head exists, is what the head does.
    assert model.head.accepts_layer_mods == type(model).head_accepts_layer_mods
    assert ("dynamic" in declared) == type(model).head_accepts_layer_mods


def _dense_reference(model: GPRec, x: torch.Tensor) -> torch.Tensor:
    """docs/gprec.md §5 on dense r_G / r_P, through the same modules."""
    bb, s = model.backbone, model.strategy
    emb = model.embedding(x)
    rep = bb.represent(x, emb)
    user = [model.group_representation(x)]
    if model.f2 is not None:
        user.append(model.individual_representation(x))
    own = 0 if rep.logit is None else rep.logit
    if model.options.strategy == "input":
        return s.head(torch.cat([rep.r, *user], 1)).squeeze(-1) + own
    if model.options.strategy == "dynamic":
        deltas = s.deltas(s.f_dp(torch.cat(user, 1)))
        return bb.head(rep.r, deltas).squeeze(-1) + own
    heads = [s.group_head, s.personal_head]
    logits = [bb.head(rep.r).squeeze(-1) + own]
    logits += [h(u).squeeze(-1) for h, u in zip(heads, user, strict=False)]
    return logit_of_mean_probability(logits)


@pytest.mark.parametrize(
    "name, strategy",
    [
        (n, s)
        for n in BACKBONES
        for s in STRATEGIES
        if s in registry.model_class(n).gprec_strategies
    ],
)
def test_each_declared_strategy_trains_and_equals_the_dense_formulation(name, strategy):
    model = gprec(name, strategy)
    x, y = batch(32)
    out = model(x, y)
    assert out.logit.shape == (32,) and {"group", "contrastive", "orthogonal"} <= set(
        out.aux_losses
    )
    (F.binary_cross_entropy_with_logits(out.logit, y) + sum(out.aux_losses.values())).backward()
    assert model.pos.grad.abs().sum() > 0 and model.embedding.table.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x).logit, _dense_reference(model, x), atol=1e-5)
        assert model(x, y).aux_losses == {}  # auxiliary losses only in training


def test_input_builds_no_unused_backbone_head():
    x, y = batch(32)
    for name in BACKBONES:
        if "input" not in registry.model_class(name).gprec_strategies:
            continue  # undeclared: a config error (tested below)
        model = gprec(name, "input")
        assert model.backbone.head is None  # no parameters without a gradient (DDP)
        out = model(x, y)
        (F.binary_cross_entropy_with_logits(out.logit, y) + sum(out.aux_losses.values())).backward()
        assert [n for n, p in model.named_parameters() if p.grad is None] == []
        # the backbone's own BCE needs its head, so then it is built
        assert gprec(name, "input", backbone_aux_loss=True).backbone.head is not None


@pytest.fixture
def ensemble_only_backbone():
    """A backbone whose head takes neither extra inputs nor weight deltas."""

    class EnsembleOnly(MLPBackbone):
        description = "test backbone"
        gprec_strategies = ("ensemble",)

    registry.register("ensemble_only")(EnsembleOnly)
    yield "ensemble_only"
    registry._REGISTRY.pop("ensemble_only")


@pytest.mark.parametrize("strategy", ["input", "dynamic"])
def test_an_undeclared_strategy_is_a_config_error_naming_the_supported(
    ensemble_only_backbone, strategy
):
    raw = {"model": {"name": "gprec", "strategy": strategy, "backbone": {"name": "ensemble_only"}}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "c.yaml")
    message = str(err.value)
    assert "model.strategy" in message and "supported: ensemble" in message
    assert f"'{strategy}' is not supported by backbone 'ensemble_only'" in message
    raw["model"]["strategy"] = "ensemble"
    assert parse_config(raw).model["strategy"] == "ensemble"


# -- defects found on the way ---------------------------------------------------------------


def test_a_last_batch_of_one_row_with_batch_norm_trains():
    """256 + 1 rows, batch 256: the one-row batch would crash BatchNorm; it is dropped."""
    model = backbone("mlp", batch_norm=True)
    X, y = toy_data(257 + 200)
    cfg = TrainConfig(batch_size=256, max_epochs=1, progress=False)
    fit = Trainer(model, cfg, log=lambda m: None).fit(
        *as_tensors(X[:257], y[:257]), *as_tensors(X[257:], y[257:])
    )
    assert fit.epochs_run == 1


def test_drop_last_drops_the_partial_batch():
    X, y = torch.ones(10, 5, dtype=torch.long), torch.zeros(10)
    sizes = lambda min_last: [len(b) for b, _ in iterate_batches(X, y, 4, None, min_last)]  # noqa: E731
    assert sizes(1) == [4, 4, 2] and sizes(4) == [4, 4] and sizes(3) == [4, 4]
    cfg = TrainConfig(batch_size=4, drop_last=True)
    trainer = Trainer(backbone("mlp"), cfg, log=lambda m: None)
    seen = []
    trainer.model.forward = lambda x, y=None, f=trainer.model.forward: (
        seen.append(len(x)) or f(x, y)
    )
    trainer._train_epoch((X, y), torch.optim.SGD(trainer.model.parameters(), lr=0.1), None, 1)
    assert seen == [4, 4]


def test_adam_falls_back_where_this_torch_cannot_fuse(monkeypatch):
    real = torch.optim.Adam
    calls = []

    def old_torch_adam(params, **kw):
        calls.append(kw.get("fused"))
        if kw.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be CUDA tensors")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", old_torch_adam)
    opt = trainer_module.make_adam(backbone("mlp").parameters(), 0.01, 0.0)
    assert calls == [True, None] and isinstance(opt, real)
    monkeypatch.undo()
    assert trainer_module.make_adam(backbone("mlp").parameters(), 0.01, 0.0).defaults["fused"]


def test_batch_norm_with_batches_of_one_row_is_a_config_error():
    model = backbone("mlp", batch_norm=True)
    X, y = toy_data(20)
    trainer = Trainer(model, TrainConfig(batch_size=1, progress=False), log=lambda m: None)
    with pytest.raises(ConfigError, match="train.batch_size 1 cannot train a model with BatchNorm"):
        trainer.fit(*as_tensors(X[:10], y[:10]), *as_tensors(X[10:], y[10:]))


@pytest.mark.parametrize("name", BACKBONES)
def test_the_cli_trains_each_backbone_bare_and_under_gprec(tmp_path, name):
    """One epoch on tiny synthetic data through `gprec train`, bare (by name on the built-in
    config) and wrapped by GPRec with the first strategy the backbone declares."""
    synthetic = "{n_users: 150, n_items: 60, n_interactions: 4000, n_groups: 4, seed: 1}"
    common = [
        "--set", f"data.synthetic={synthetic}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "train.max_epochs=1", "--set", "train.progress=false",
    ]  # fmt: skip
    strategy = registry.model_class(name).gprec_strategies[0]
    runs = {
        "bare": ["--set", f"model.name={name}"],
        "gprec": ["--set", f"model={{name: gprec, n_groups: 4, strategy: {strategy}, "
                  f"backbone: {{name: {name}}}}}"],
    }  # fmt: skip
    for label, model in runs.items():
        out = tmp_path / label
        assert main(["train", *common, *model, "--out", str(out)]) == 0
        resolved = yaml.safe_load((out / "config.yaml").read_text())["model"]
        assert (resolved.get("backbone") or resolved)["name"] == name
        assert read_status(out)["state"] == "finished"
