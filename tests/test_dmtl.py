"""DMTL: the forward pass against plain torch (towers, attention, z_g, both heads), the
attention a distribution, the profiling loss against a hand cross-entropy with class 0
ignored, lambda = 0 a plain recommender (no aux loss, no gradient to the profiling head), the
group field a label and never an input, training lowers both losses, errors, the config."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import plain_mlp, toy_data, toy_fields, write_ml100k
from gprec.cli.main import main
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.models.registry import build_model, model_class, resolve_model_options

ROOT = Path(__file__).resolve().parents[1]
N_GROUPS = 4  # the group field's cardinality: groups 1..3 and 0, unseen
FIELDS = [*toy_fields(), EncodedField("group", Role.USER, N_GROUPS)]
GROUP = len(FIELDS) - 1
SMALL = {"embedding_dim": 4, "embedding_init_std": 0.1, "user_units": [8, 6]}
SMALL |= {"item_units": [8, 5], "shared_dim": 7, "head_units": [4]}


def batch(n=64, seed=0, unseen=0.2):
    """toy_data's indices and label with a group column (1..3, a function of the user field
    f3, so profiling is learnable; a share `unseen` of rows has group 0)."""
    X, y = toy_data(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    group = np.where(rng.random(n) < unseen, 0, X[:, 3] % 3 + 1)
    X = np.concatenate([X, group[:, None]], axis=1)
    return torch.from_numpy(X), torch.from_numpy(y)


def build(fields=FIELDS, **opts):
    torch.manual_seed(0)
    return build_model(resolve_model_options({"name": "dmtl", **SMALL, **opts}), fields)


def by_hand(m, x):
    """Every DMTL output in plain torch: alpha, z_g, the main output, the group logits."""
    emb = m.embedding.table.weight[x + m.embedding.offsets]  # (B, F, d)
    users, items = [2, 3, 4], [0, 1]  # the group field is not an input
    h_u = plain_mlp(emb[:, users].flatten(1), m.user_tower)
    h_i = plain_mlp(emb[:, items].flatten(1), m.item_tower)
    a = m.attention_layer
    scores = torch.cat([h_u, h_i], 1) @ a.weight.t() + a.bias
    alpha = torch.exp(scores) / torch.exp(scores).sum(1, keepdim=True)
    z = plain_mlp(torch.cat([h_u, alpha * h_i], 1), m.shared)
    return alpha, z, plain_mlp(z, m.rec_head).squeeze(1), plain_mlp(z, m.profile_head)


def test_shapes_of_every_head_and_aux_loss_only_in_training():
    m = build()
    x, y = batch(16)
    out = m.train()(x, y)
    assert out.logit.shape == (16,)
    assert set(out.aux_losses) == {"profile"} and out.aux_losses["profile"].dim() == 0
    m.eval()
    assert m(x).aux_losses == {}
    assert m.profile(x).shape == (16, 7)
    assert m.attention(x).shape == (16, 5)
    assert m.group_logits(x).shape == (16, N_GROUPS)
    assert m.n_groups == N_GROUPS
    assert model_class("dmtl").tasks == ("binary", "regression", "implicit")


def test_forward_and_attention_equal_the_hand_computation():
    m = build().eval()
    x, _ = batch(32)
    alpha, z, logit, groups = by_hand(m, x)
    assert torch.allclose(m.attention(x).sum(1), torch.ones(32), atol=1e-6)
    assert torch.allclose(m.attention(x), alpha, atol=1e-6)
    assert (m.attention(x) > 0).all()
    assert torch.allclose(m.profile(x), z, atol=1e-6)
    assert torch.allclose(m(x).logit, logit, atol=1e-6)
    assert torch.allclose(m.group_logits(x), groups, atol=1e-6)


def test_profile_loss_is_a_hand_cross_entropy_with_class_0_ignored():
    lam = 0.5
    m = build(lambda_profile=lam).train()
    x, y = batch(32)
    g = x[:, GROUP]
    assert (g == 0).any() and (g != 0).any()
    logits = m.group_logits(x)
    logp = logits - torch.logsumexp(logits, 1, keepdim=True)
    known = g != 0
    hand = -logp[known, g[known]].mean()
    assert torch.allclose(m(x, y).aux_losses["profile"], lam * hand, atol=1e-6)
    # a batch with no known group: a zero loss, not cross_entropy's NaN
    x0 = x.clone()
    x0[:, GROUP] = 0
    assert m(x0, y).aux_losses["profile"].item() == 0.0


def test_lambda_zero_is_a_plain_recommender():
    m, joint = build(lambda_profile=0), build()
    x, y = batch(32)
    out = m.train()(x, y)
    assert out.aux_losses == {}
    out.logit.sum().backward()
    head = list(m.profile_head.parameters())
    assert all(not p.requires_grad and p.grad is None for p in head)
    others = [p for n, p in m.named_parameters() if not n.startswith("profile_head.")]
    assert all(p.grad is not None for p in others)
    # the same network as the joint model (same seed), minus the profiling loss
    assert torch.equal(out.logit, joint.train()(x, y).logit)
    assert m.group_logits(x).shape == (32, N_GROUPS)  # still inspectable, untrained


def test_the_group_field_is_not_an_input():
    m = build().eval()
    x, _ = batch(32)
    other = x.clone()
    other[:, GROUP] = (x[:, GROUP] + 1) % N_GROUPS  # every sample in another group
    assert torch.equal(m(x).logit, m(other).logit)
    assert torch.equal(m.profile(x), m.profile(other))
    assert torch.equal(m.group_logits(x), m.group_logits(other))


def test_a_few_adam_steps_lower_both_losses():
    m = build()
    x, y = batch(256)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    main, profile = [], []
    for _ in range(120):  # the profiling loss is learnt first; the main one follows
        out = m.train()(x, y)
        loss = F.binary_cross_entropy_with_logits(out.logit, y)
        opt.zero_grad()
        (loss + out.aux_losses["profile"]).backward()
        opt.step()
        main.append(loss.item())
        profile.append(out.aux_losses["profile"].item())
    assert main[-1] < main[0] - 0.1
    assert profile[-1] < profile[0] - 0.3  # the group is a function of f3: learnable


def test_regression_output_learns_a_rating_deviation():
    m = build()
    x, _ = batch(256)
    target = (x[:, 1] % 2).float() - 0.5  # a deviation from the mean rating
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        out = m.train()(x)
        loss = F.mse_loss(out.logit, target)
        opt.zero_grad()
        (loss + out.aux_losses["profile"]).backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def error_of(fields, **opts) -> str:
    with pytest.raises(ConfigError) as e:
        build(fields, **opts)
    return str(e.value)


def test_a_missing_group_field_is_one_clear_line():
    msg = error_of(FIELDS[:-1])
    assert msg == (
        "model.group_field: 'group' is not a field of this data; DMTL needs a user field "
        "holding each user's group (KMeans clusters or real groups); user fields: f2, f3, f4"
    )
    assert "item field" in error_of(FIELDS, group_field="f0")
    assert "\n" not in error_of(FIELDS, group_field="cluster")
    # another user field may be the group, and then it is the one left out of h_u
    assert build(group_field="f4").user_index.tolist() == [2, 3, 5]


def test_a_model_with_no_user_input_besides_the_group_is_refused():
    only_group = [*toy_fields(cards=(50, 6), roles=[Role.ITEM, Role.ITEM]), FIELDS[-1]]
    msg = error_of(only_group)
    assert "user field besides the group field" in msg and "\n" not in msg


def test_the_config_file_holds_the_defaults():
    section = yaml.safe_load((ROOT / "configs" / "models" / "dmtl.yaml").read_text())["model"]
    assert resolve_model_options(section) == resolve_model_options({"name": "dmtl"})
    options = model_class("dmtl").Options.model_fields
    assert all((info.description or "").strip() for info in options.values())


@pytest.mark.parametrize("task", ["regression", "implicit", "binary"])
def test_gprec_train_runs_each_task_and_logs_the_profile_loss(tmp_path, task):
    """The trainer path: `--set model.name=dmtl` on the ML-100K config (its MLP head widths
    carried over), occupation standing in for the group field the data pipeline will add."""
    data = write_ml100k(tmp_path / "ml-100k", n_items=60, n_ratings=1500)
    out = tmp_path / "run"
    sets = {
        "data.path": data, "data.cache_dir": tmp_path / "cache", "model.name": "dmtl",
        "model.group_field": "occupation", "train.task": task, "train.batch_size": 256,
        "train.lr": 0.01, "train.max_epochs": 3, "train.progress": "false",
    }  # fmt: skip
    if task == "regression":
        sets["data.target"] = "value"
    if task == "implicit":
        sets["train.eval_negatives"] = 10
    args = ["train", "-c", str(ROOT / "configs" / "ml-100k" / "mlp.yaml"), "--out", str(out)]
    assert main(args + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task
    assert all(np.isfinite(v) for v in metrics["test"].values())
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(entry["train_profile"]) for entry in logged)
