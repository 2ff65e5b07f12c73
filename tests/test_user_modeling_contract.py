"""The user-modeling baselines of the paper's Table II (MMoE, PLE, STAR, APG, PEPNet, DGPM),
checked alike: registered, shapes, a few training steps lower the loss, auxiliary losses only
in training, and `gprec train` on a MovieLens-100K-format config with `--set model.name=<name>`
and the model's defaults (partition field: gender). Each model's own mechanism is tested in
its own file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import ML_FIELDS as ML_FIELDS_WITH_GROUP
from conftest import write_ml100k
from gprec.cli.main import main
from gprec.config import load_config
from gprec.models.base import Backbone
from gprec.models.registry import available_models, build_model, resolve_model_options
from gprec.training.run_dir import read_status

ROOT = Path(__file__).resolve().parents[1]
ML100K_CONFIG = ROOT / "configs" / "ml-100k" / "mlp.yaml"
MODEL_CONFIGS = ROOT / "configs" / "models"
USER_MODELS = ["mmoe", "ple", "star", "apg", "pepnet", "dgpm"]
ML_FIELDS = ML_FIELDS_WITH_GROUP[:-1]  # without the group field


def batch(n=256, seed=0):
    """Indices of ML_FIELDS with a label that depends on gender x genre and on the user."""
    rng = np.random.default_rng(seed)
    X = np.stack([rng.integers(1, f.cardinality, n) for f in ML_FIELDS], axis=1)
    logit = np.where((X[:, 4] == 1) == (X[:, 1] % 2 == 0), 1.5, -1.5) + np.sin(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return torch.from_numpy(X.astype(np.int64)), torch.from_numpy(y)


def model(name, **opts):
    torch.manual_seed(0)
    return build_model(resolve_model_options({"name": name, "embedding_dim": 4, **opts}), ML_FIELDS)


def test_every_table_ii_baseline_is_registered():
    # gprec itself, DMTL (its own system) and MF (the classic CF scorer) are not Table II rows
    others = set(available_models()) - set(available_models(Backbone)) - {"gprec", "dmtl", "mf"}
    assert others == set(USER_MODELS)


@pytest.mark.parametrize("name", USER_MODELS)
def test_shapes_and_auxiliary_losses_only_in_training(name):
    m = model(name)
    x, y = batch(16)
    out = m.train()(x, y)
    assert out.logit.shape == (16,)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.aux_losses.values())
    m.eval()
    first, second = m(x), m(x)
    assert first.aux_losses == {} and torch.equal(first.logit, second.logit)
    assert type(m).description, "gprec models shows it"


@pytest.mark.parametrize("name", USER_MODELS)
def test_a_few_training_steps_lower_the_loss(name):
    m = model(name)
    x, y = batch()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        out = m(x, y)
        loss = F.binary_cross_entropy_with_logits(out.logit, y)
        opt.zero_grad()
        (loss + sum(out.aux_losses.values(), torch.zeros(()))).backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05


def main_loss(m, x, y):
    out = m(x, y)
    loss = F.binary_cross_entropy_with_logits(out.logit, y)
    return loss, loss + sum(out.aux_losses.values(), torch.zeros(()))


@pytest.mark.parametrize("name", USER_MODELS)
def test_one_adam_step_lowers_the_training_loss(name):
    """A single Adam step (lr 0.01) on the batch lowers the main loss on that batch."""
    m = model(name).train()
    x, y = batch()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    before, total = main_loss(m, x, y)
    opt.zero_grad()
    total.backward()
    opt.step()
    after, _ = main_loss(m, x, y)
    assert after.item() < before.item()


@pytest.mark.parametrize(
    "name, opts",
    [*((n, {}) for n in USER_MODELS),
     ("apg", {"output_layer": True}), ("apg", {"share_uv": False, "overparam_dim": None})],
)  # fmt: skip
def test_every_trainable_parameter_gets_a_gradient(name, opts):
    """After one forward and backward in training mode no parameter that requires a gradient
    is left without one (DDP refuses such a model, and the run's parameter count would hold
    it): APG's replaced head weights are frozen. A partition absent from the batch (0,
    unseen, here) gets zeros in MMoE and PLE, which is a gradient."""
    m = model(name, **opts).train()
    x, y = batch()
    main_loss(m, x, y)[1].backward()
    dead = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert dead == []


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k", n_ratings=1500)


@pytest.mark.parametrize("name", USER_MODELS)
def test_the_model_config_file_holds_the_defaults(name):
    raw = yaml.safe_load((MODEL_CONFIGS / f"{name}.yaml").read_text())
    assert set(raw) == {"model"}
    assert resolve_model_options(raw["model"]) == resolve_model_options({"name": name})


@pytest.mark.parametrize("name", ["star", "apg", "pepnet", "dgpm"])
def test_the_model_config_takes_another_head(tmp_path, name):
    """The wrappers' files pin only the backbone's name, so another head given with them (by
    --set, or by a dataset config naming the same model) is the backbone's, not a conflict."""
    overlay = MODEL_CONFIGS / f"{name}.yaml"
    sets = ["model.head_units=[32, 16]", "model.dropout=0.1"]
    backbone = load_config([ML100K_CONFIG, overlay], sets).model["backbone"]
    assert backbone["head_units"] == [32, 16] and backbone["dropout"] == 0.1
    raw = yaml.safe_load(ML100K_CONFIG.read_text())
    raw["model"] = {"name": name, "head_units": [32, 16], "dropout": 0.1}
    dataset = tmp_path / "data.yaml"
    dataset.write_text(yaml.safe_dump(raw))
    backbone = load_config([dataset, overlay]).model["backbone"]
    assert backbone["head_units"] == [32, 16] and backbone["dropout"] == 0.1


@pytest.mark.parametrize("how", ["by name", "overlay"])
@pytest.mark.parametrize("name", USER_MODELS)
def test_the_cli_trains_each_on_the_movielens_config(tmp_path, ml100k, name, how):
    """By `--set model.name=<name>` (the dataset config's MLP head kept) or with the model's
    config laid over the dataset's; the partition field defaults to gender."""
    out = tmp_path / "run"
    model = (
        ["--set", f"model.name={name}"]
        if how == "by name"
        else ["-c", str(MODEL_CONFIGS / f"{name}.yaml")]
    )
    args = [
        "train", "-c", str(ML100K_CONFIG), *model, "--set", f"data.path={ml100k}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "train.max_epochs=1", "--set", "train.progress=false", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert read_status(out)["state"] == "finished"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test"]["auc"] <= 1
    resolved = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert resolved["name"] == name
    assert (resolved.get("backbone") or resolved)["head_units"] == [64, 32, 16]


def test_gprec_models_lists_them(capsys):
    assert main(["models"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert set(USER_MODELS) <= listed
