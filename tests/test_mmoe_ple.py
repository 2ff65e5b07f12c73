"""MMoE and PLE with user groups as tasks: the batched experts against per-net plain torch,
each model's gates, mixtures and towers against a hand computation, each sample routed to its
own group (another group's tower does not move its logit; another group's experts, gates and
tower get no gradient where the paper's routing says so), errors, configs and the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import toy_fields, train_steps, write_ml100k
from gprec.cli.main import main
from gprec.config import load_config
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.layers.experts import ParallelMLPs, own_partition
from gprec.models.registry import build_model, resolve_model_options

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [  # MovieLens-like; gender's 0 is "unseen", a group of its own: 3 groups
    EncodedField("item_id", Role.ITEM, 30),
    EncodedField("genres", Role.ITEM, 8),
    EncodedField("user_id", Role.PERSONAL, 25),
    EncodedField("gender", Role.USER, 3),
    EncodedField("occupation", Role.USER, 5),
]
GENDER = 3
SMALL = {"embedding_dim": 8, "expert_units": [16, 8], "head_units": [8]}


def batch(n=64, seed=0, groups=(0, 1, 2)):
    """Indices of FIELDS (gender drawn from `groups`) and a label depending on gender x genre."""
    rng = np.random.default_rng(seed)
    X = np.stack([rng.integers(1, f.cardinality, n) for f in FIELDS], axis=1)
    X[:, GENDER] = rng.choice(groups, n)
    logit = np.where((X[:, GENDER] == 1) == (X[:, 1] % 2 == 0), 1.5, -1.5) + np.sin(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return torch.from_numpy(X.astype(np.int64)), torch.from_numpy(y)


def build(name, fields=FIELDS, **opts):
    torch.manual_seed(0)
    return build_model(resolve_model_options({"name": name, **SMALL, **opts}), fields)


def net(pm: ParallelMLPs, i: int, x: torch.Tensor) -> torch.Tensor:
    """Net `i` of `pm` alone, in plain torch (ReLU, no BatchNorm, no dropout): `(B, in)`."""
    for k, (w, b) in enumerate(pm.layers_of(i)):
        x = x @ w + b
        if k < pm.n_hidden:
            x = torch.relu(x)
    return x


def net_grads(pm: ParallelMLPs, i: int) -> list[torch.Tensor]:
    return [g for layer in pm.layers_of(i, grad=True) for g in layer]


def train_step_grads(model, x, y):
    model.train().zero_grad()
    F.binary_cross_entropy_with_logits(model(x, y).logit, y).backward()


# -- the batched layer ------------------------------------------------------------------------


@pytest.mark.parametrize("out_dim", [None, 3])
def test_parallel_mlps_equal_each_net_alone(out_dim):
    torch.manual_seed(0)
    pm = ParallelMLPs(5, n_streams=3, per_stream=2, hidden=[4, 6], out_dim=out_dim)
    x = torch.randn(7, 5)
    shared = pm(x.t())  # every net reads x
    assert shared.shape == (6, out_dim or 6, 7)
    inputs = torch.randn(3, 7, 5)
    streams = pm(inputs.transpose(1, 2))  # stream s's two nets read inputs[s]
    for i in range(6):
        assert torch.allclose(shared[i].t(), net(pm, i, x), atol=1e-6)
        assert torch.allclose(streams[i].t(), net(pm, i, inputs[i // 2]), atol=1e-6)
    # an expert's output is activated, a gate's or tower's output layer is not
    assert (shared >= 0).all() if out_dim is None else (shared < 0).any()


def test_parallel_mlps_batch_norm_is_each_nets_own():
    torch.manual_seed(0)
    pm = ParallelMLPs(5, 1, 3, hidden=[4], batch_norm=True, activation="tanh").train()
    x = torch.randn(16, 5)
    out = pm(x.t())
    for i in range(3):
        w, b = pm.layers_of(i)[0]
        h = x @ w + b
        h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
        assert torch.allclose(out[i].t(), torch.tanh(h), atol=1e-5)


def test_own_partition_gathers_each_samples_row():
    t = torch.randn(3, 2, 4, 5)  # (P, ..., B)
    p = torch.tensor([2, 0, 1, 2, 0])
    got = own_partition(t, p)
    assert got.shape == (2, 4, 5)
    for b in range(5):
        assert torch.equal(got[..., b], t[p[b], ..., b])


# -- both models --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_shapes_and_no_auxiliary_losses(name):
    model = build(name)
    x, y = batch(16)
    out = model.train()(x, y)
    assert out.logit.shape == (16,) and out.aux_losses == {}
    assert model.n_partitions == 3 and model.partition_column == GENDER
    model.eval()
    assert torch.equal(model(x).logit, model(x).logit)


@pytest.mark.parametrize(
    "name, opts",
    [("mmoe", {}), ("mmoe", {"gate_units": [5]}), ("ple", {}), ("ple", {"n_levels": 2})],
)
def test_a_few_training_steps_lower_the_loss(name, opts):
    model = build(name, **opts)
    x, y = batch(256)
    losses = train_steps(model, x, y, steps=30, lr=0.01)
    assert losses[-1] < losses[0] - 0.05


@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_every_option_trains(name):
    """BatchNorm, dropout, another activation, MLP gates and another partition field."""
    opts = {"batch_norm": True, "dropout": 0.2, "activation": "gelu", "gate_units": [5, 3]}
    model = build(name, partition_field="occupation", **opts)
    assert model.n_partitions == 5 and model.partition_column == 4
    x, y = batch(32)
    train_step_grads(model, x, y)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# -- MMoE's mechanism ----------------------------------------------------------------------------


def mmoe_by_hand(model, x):
    """Gate weights `(B, E)` and logits `(B,)`, per group and expert in plain torch."""
    e, p = model.embedding(x).flatten(1), x[:, GENDER]
    experts = torch.stack([net(model.experts, i, e) for i in range(model.options.n_experts)], 1)
    gate_logits = torch.stack([net(model.gates, k, e) for k in range(3)], 1)  # (B, G, E)
    w = torch.softmax(gate_logits[torch.arange(len(x)), p], dim=1)  # own group's row
    mix = (w.unsqueeze(2) * experts).sum(1)
    towers = torch.stack([net(model.towers, k, mix) for k in range(3)], 1)  # (B, G, 1)
    return w, towers[torch.arange(len(x)), p, 0]


@pytest.mark.parametrize("gate_units", [[], [5]])
def test_mmoe_gates_mixture_and_own_tower_equal_a_hand_computation(gate_units):
    model = build("mmoe", gate_units=gate_units).eval()
    x, _ = batch(32)
    assert set(x[:, GENDER].tolist()) == {0, 1, 2}
    with torch.no_grad():
        w = model.gate_weights(x)
        want_w, want_logit = mmoe_by_hand(model, x)
        assert torch.allclose(w.sum(1), torch.ones(32))
        assert torch.allclose(w, want_w, atol=1e-6)
        assert torch.allclose(model(x).logit, want_logit, atol=1e-5)
    if not gate_units:  # the paper's gate: softmax(W_gk x), one linear map per group
        assert len(model.gates.layers_of(0)) == 1


def test_mmoe_logit_ignores_every_other_groups_gate_and_tower():
    model = build("mmoe").eval()
    x, _ = batch(48)
    p = x[:, GENDER]
    with torch.no_grad():
        before = model(x).logit
        for params in model.towers.layers_of(2) + model.gates.layers_of(2):
            for t in params:
                t.add_(torch.randn_like(t))
        after = model(x).logit
    assert torch.equal(after[p != 2], before[p != 2])
    assert not torch.allclose(after[p == 2], before[p == 2])


def test_mmoe_other_groups_get_no_gradient():
    model = build("mmoe")
    x, y = batch(32, groups=(1,))
    train_step_grads(model, x, y)
    for k in (0, 2):
        assert all(g.abs().max() == 0 for g in net_grads(model.towers, k))
        assert all(g.abs().max() == 0 for g in net_grads(model.gates, k))
    assert all(g.abs().max() > 0 for g in net_grads(model.towers, 1))


# -- PLE's mechanism -----------------------------------------------------------------------------


def ple_by_hand(model, x):
    """Per level (gate logits of every group `(G, B, S+H)`, shared gate logits or None) and
    the logits `(B,)`, computing every group's path per expert in plain torch."""
    G, S, H = 3, model.options.n_specific_experts, model.options.n_shared_experts
    e, p = model.embedding(x).flatten(1), x[:, GENDER]
    paths, shared, logits = [e] * G, e, []
    for level in model.levels:
        spec = [[net(level.specific, k * S + s, paths[k]) for s in range(S)] for k in range(G)]
        common = [net(level.shared, t, shared) for t in range(H)]
        gate = torch.stack([net(level.gates, k, paths[k]) for k in range(G)])
        new_paths = []
        for k in range(G):
            w = torch.softmax(gate[k], dim=1)
            new_paths.append(sum(w[:, [i]] * f for i, f in enumerate(spec[k] + common)))
        shared_gate = None
        if level.shared_gate is not None:
            shared_gate = net(level.shared_gate, 0, shared)
            ws = torch.softmax(shared_gate, dim=1)
            every = [f for k in range(G) for f in spec[k]] + common  # ALL experts
            assert ws.shape[1] == len(every) == G * S + H
            shared = sum(ws[:, [i]] * f for i, f in enumerate(every))
        paths = new_paths
        logits.append((gate, shared_gate))
    towers = torch.stack([net(model.towers, k, paths[k]) for k in range(G)], 1)  # (B, G, 1)
    return logits, towers[torch.arange(len(x)), p, 0]


@pytest.mark.parametrize("n_levels", [1, 2, 3])
@pytest.mark.parametrize("gate_units", [[], [5]])
def test_ple_gates_paths_and_own_tower_equal_a_hand_computation(n_levels, gate_units):
    model = build("ple", n_levels=n_levels, n_specific_experts=2, n_shared_experts=3,
                  gate_units=gate_units).eval()  # fmt: skip
    x, _ = batch(32)
    p = x[:, GENDER]
    with torch.no_grad():
        gates = model.gate_weights(x)
        want, want_logit = ple_by_hand(model, x)
        assert torch.allclose(model(x).logit, want_logit, atol=1e-5)
    assert len(gates) == n_levels
    for level, (got, (gate_logits, shared_logits)) in enumerate(zip(gates, want, strict=True)):
        if level < n_levels - 1:
            assert torch.allclose(got["groups"].sum(1), torch.ones(3, 32))
            want_w = torch.softmax(gate_logits, dim=2).transpose(1, 2)
            assert torch.allclose(got["groups"], want_w, atol=1e-6)
            assert got["shared"].shape == (3 * 2 + 3, 32)  # over every group's and shared
            assert torch.allclose(got["shared"].sum(0), torch.ones(32))
            want_s = torch.softmax(shared_logits, dim=1).t()
            assert torch.allclose(got["shared"], want_s, atol=1e-6)
        else:
            assert shared_logits is None  # the last level has no shared gate
            own = torch.softmax(gate_logits[p, torch.arange(32)], dim=1).t()
            assert torch.allclose(got["own"].sum(0), torch.ones(32))
            assert torch.allclose(got["own"], own, atol=1e-6)


def test_ple_logit_ignores_every_other_groups_tower():
    model = build("ple").eval()
    x, _ = batch(48)
    p = x[:, GENDER]
    with torch.no_grad():
        before = model(x).logit
        for params in model.towers.layers_of(0) + model.towers.layers_of(1):
            for t in params:
                t.add_(torch.randn_like(t))
        after = model(x).logit
    assert torch.equal(after[p == 2], before[p == 2])
    assert not torch.allclose(after[p != 2], before[p != 2])


@pytest.mark.parametrize("n_levels", [1, 2])
def test_ple_another_groups_experts_gates_and_tower_get_no_gradient(n_levels):
    """A batch of group 1 only: group 2's last-level specific experts, its gates at every level
    and its tower get no gradient. Below the last level its specific experts do, through the
    shared gate, which covers ALL experts (FuxiCTR's covers only the shared ones)."""
    model = build("ple", n_levels=n_levels)
    x, y = batch(64, groups=(1,))
    train_step_grads(model, x, y)
    zero = lambda grads: all(g.abs().max() == 0 for g in grads)  # noqa: E731
    assert zero(net_grads(model.towers, 2)) and not zero(net_grads(model.towers, 1))
    for level in model.levels:
        assert zero(net_grads(level.gates, 2)) and not zero(net_grads(level.gates, 1))
    last = model.levels[-1]
    assert zero(net_grads(last.specific, 2)) and not zero(net_grads(last.specific, 1))
    for level in model.levels[:-1]:
        assert not zero(net_grads(level.specific, 2))  # through the shared gate
        assert not zero(net_grads(level.shared_gate, 0))


# -- errors, configs and the CLI ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_the_partition_field_must_be_a_user_field_of_the_data(name):
    with pytest.raises(ConfigError, match="no 'gender' field to default to; name one of"):
        build(name, fields=toy_fields())
    with pytest.raises(ConfigError, match="'item_id' is an item field; user fields: user_id"):
        build(name, partition_field="item_id")
    with pytest.raises(ConfigError) as err:  # the guard STAR shares
        build(name, partition_field="user_id", max_partitions=8)
    assert str(err.value) == (
        "model.partition_field: 'user_id' has 25 values (partitions, unseen included), over "
        "model.max_partitions=8: each partition has its own parameters and compute; pick a "
        "coarser field or raise max_partitions"
    )
    assert build(name, partition_field="user_id").n_partitions == 25  # under the default 64


@pytest.mark.parametrize(
    "name, key, value, message",
    [
        ("mmoe", "n_experts", 0, "model.n_experts"),
        ("mmoe", "expert_units", [], "model.expert_units"),
        ("mmoe", "n_expert", 4, "model.n_expert: unknown key"),
        ("ple", "n_levels", 0, "model.n_levels"),
        ("ple", "n_shared_experts", 0, "model.n_shared_experts"),
        ("ple", "gate_units", [0], "model.gate_units"),
    ],
)
def test_bad_options_are_one_clear_line(name, key, value, message):
    with pytest.raises(ConfigError) as err:
        resolve_model_options({"name": name, key: value})
    assert message in str(err.value) and "\n" not in str(err.value).strip()


@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_the_model_config_holds_the_defaults_and_composes(name):
    overlay = ROOT / "configs" / "models" / f"{name}.yaml"
    written = yaml.safe_load(overlay.read_text())["model"]
    defaults = resolve_model_options({"name": name})
    assert written == {k: v for k, v in defaults.items() if k != "embedding_init_std"}
    for ds in ("ml-100k", "ml-1m"):
        mlp = ROOT / "configs" / ds / "mlp.yaml"
        assert load_config([mlp, overlay]).model["name"] == name
        switched = load_config(mlp, [f"model.name={name}"]).model
        assert switched["head_units"] == [64, 32, 16] and switched["partition_field"] is None


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k", n_ratings=1500)


def cli_args(tmp_path, ml100k, *sets):
    args = ["train", "-c", str(ROOT / "configs" / "ml-100k" / "mlp.yaml"),
            "--set", f"data.path={ml100k}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
            "--set", "train.max_epochs=1", "--set", "train.progress=false"]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    return args


def test_the_cli_names_a_missing_partition_field_in_one_line(tmp_path, ml100k, capsys):
    args = cli_args(tmp_path, ml100k, "model.name=ple", "model.partition_field=sex")
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gprec: error:") and "'sex' is not a field of this data" in err[-1]
