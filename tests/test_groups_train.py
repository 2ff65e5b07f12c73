"""Group recommenders on real groups: split, scoring, training, run directory, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_group_data import write_itm_rec

from gprec.cli.main import main
from gprec.data.groups import load_group_data
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.groups.data import encode_tables, split_groups
from gprec.groups.load import load_group_run
from gprec.groups.scoring import GroupScorer
from gprec.groups.train import GroupTrainer, load_group_config, run_group_training
from gprec.models.registry import build_model


def write_random_agree(directory: Path, n_groups=20, n_users=30, n_items=25, seed=0) -> Path:
    """A random dataset in the AGREE layout, big enough to carve validation cases from."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    members, train, test, negs = [], [], [], []
    for g in range(n_groups):
        users = rng.choice(n_users, rng.integers(2, 5), replace=False)
        members.append(f"{g} {','.join(map(str, sorted(users)))}")
        items = rng.choice(n_items, 4, replace=False)
        train += [f"{g} {i}" for i in items[:3]]
        test.append(f"{g} {items[3]}")
        others = [i for i in range(n_items) if i not in items]
        negs.append(f"({g},{items[3]}) " + " ".join(map(str, rng.choice(others, 8, replace=False))))
    user_train = [f"{u} {i}" for u in range(n_users) for i in rng.choice(n_items, 3, replace=False)]
    texts = {
        "groupMember.txt": "\n".join(members) + "\n",
        "groupRatingTrain.txt": "\n".join(train) + "\n",
        "groupRatingTest.txt": "\n".join(test) + "\n",
        "groupRatingNegative.txt": "\r\n".join(negs) + "\r\n",
        "userRatingTrain.txt": "\n".join(user_train) + "\n",
    }
    for name, text in texts.items():
        (directory / name).write_text(text)
    return directory


FAST = ["train.max_epochs=2", "train.patience=1", "data.eval_negatives=5"]


def config(path: Path, *sets: str, configs=("configs/groups/mafengwo-dmtl.yaml",)):
    root = Path(__file__).resolve().parent.parent
    return load_group_config([str(root / c) for c in configs], [f"data.path={path}", *FAST, *sets])


def test_split_carves_at_most_one_valid_row_per_group_and_keeps_test_out(tmp_path):
    data = load_group_data(write_random_agree(tmp_path / "d"))
    s = split_groups(data, 7, 0.2, 0.2, 5)
    assert len(np.unique(s.valid.group)) == len(s.valid.group) > 0
    # every group keeps a training row, and the valid rows are not training rows
    assert set(s.train_group) == set(range(data.n_groups))
    train_pairs = set(zip(s.train_group.tolist(), s.train_item.tolist(), strict=True))
    assert not train_pairs & set(zip(s.valid.group.tolist(), s.valid.item.tolist(), strict=True))
    # seen = the whole training file; valid negatives are never the group's training items
    assert s.seen.sum() == data.group_interactions.height
    assert not s.seen[s.valid.group[:, None], s.valid.negatives].any()
    assert all(len(set(row)) == len(row) for row in s.valid.negatives.tolist())
    # the test cases are the file's, its held-out items never seen
    assert not s.seen[s.test.group, s.test.item].any()
    assert (split_groups(data, 7, 0.2, 0.2, 5).valid.negatives == s.valid.negatives).all()


def test_explicit_split_holds_out_test_and_valid_ratios(tmp_path):
    data = load_group_data(write_itm_rec(tmp_path / "itm"))
    s = split_groups(data, 1, 0.25, 0.25, 5)
    assert len(s.test) == 1 and len(s.valid) == 1 and len(s.train_group) == 2
    assert s.test.rating is not None and s.train_rating is not None


def tiny_mf(tables):
    return build_model({"name": "mf", "embedding_dim": 4}, tables.fields)


def test_profile_score_is_the_mean_of_member_dot_products(tmp_path):
    data = load_group_data(write_random_agree(tmp_path / "d"))
    tables = encode_tables(data, group_field=False)
    model = tiny_mf(tables).eval()
    g = np.array([0, 3])
    items = np.array([[1, 2], [5, 0]])
    got = GroupScorer(model, tables, "profile").cases(g, items)
    users, case = tables.members(g)
    with torch.no_grad():
        member = model(tables.rows(np.repeat(users, 2), items[case].reshape(-1))).logit
    member = member.reshape(-1, 2).double().numpy()
    # MF is linear in h_u: the profile score is the members' average score
    want = np.stack([member[case == k].mean(0) for k in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    avg = GroupScorer(model, tables, "average").cases(g, items)
    np.testing.assert_allclose(avg, want, rtol=1e-6)
    lm = GroupScorer(model, tables, "least_misery").cases(g, items)
    np.testing.assert_allclose(lm, np.stack([member[case == k].min(0) for k in range(2)]))


def test_group_matrix_equals_cases_over_the_catalogue(tmp_path):
    data = load_group_data(write_random_agree(tmp_path / "d"))
    tables = encode_tables(data, group_field=False)
    model = tiny_mf(tables).eval()
    for method in ("profile", "borda"):
        s = GroupScorer(model, tables, method)
        full = s.group_matrix(np.array([1, 2]))
        items = np.broadcast_to(np.arange(tables.n_items), (2, tables.n_items))
        np.testing.assert_allclose(full, s.cases(np.array([1, 2]), items), rtol=1e-6)


def test_dmtl_scored_from_its_own_user_representation_is_its_forward():
    fields = [
        EncodedField("user", Role.USER, 9),
        EncodedField("group", Role.USER, 4),
        EncodedField("item", Role.ITEM, 7),
    ]
    for dot in (False, True):
        torch.manual_seed(0)
        model = build_model(
            {"name": "dmtl", "dot_head": dot, "embedding_init_std": 0.1}, fields
        ).eval()
        x = torch.tensor([[1, 1, 2], [5, 3, 6], [8, 2, 1]])
        h = model.user_representation(x)
        torch.testing.assert_close(model.forward_from_user(h, x).logit, model(x).logit)
    # the dot term is exactly <W h_u, h_i> added to the faithful output
    plain = model.rec_head(model.profile(x)).squeeze(-1)
    h_i = model._towers(x)[1]
    torch.testing.assert_close(model(x).logit, plain + (model.dot(h) * h_i).sum(-1))


def test_mf_gradients_reach_both_sides_and_biases():
    fields = [EncodedField("user", Role.USER, 5), EncodedField("item", Role.ITEM, 6)]
    model = build_model({"name": "mf", "embedding_dim": 3}, fields)
    out = model(torch.tensor([[1, 2], [3, 4]])).logit
    assert out.shape == (2,)
    out.sum().backward()
    assert model.embedding.table.weight.grad.abs().sum() > 0
    assert model.bias.table.weight.grad[[1, 5 + 2]].abs().sum() > 0


def test_profile_needs_a_model_with_a_user_representation(tmp_path):
    path = write_random_agree(tmp_path / "d")
    cfg = config(path, "model={name: mlp}", "train.group_rows=members", "train.score=profile")
    with pytest.raises(ConfigError, match="train.score: profile scoring needs"):
        run_group_training(cfg, None)
    cfg = config(path, "model={name: mlp}", "train.score=average")  # group_rows: profile
    with pytest.raises(ConfigError, match="train.group_rows"):
        run_group_training(cfg, None)
    cfg = config(path, "train.user_rows=false", "train.group_rows=none")
    with pytest.raises(ConfigError, match="nothing to train on"):
        run_group_training(cfg, None)


def test_bad_config_is_one_line(tmp_path, capsys):
    path = write_random_agree(tmp_path / "d")
    code = main(["groups", "train", "-c", "configs/groups/mafengwo-dmtl.yaml", "--set",
                 f"data.path={path}", "--set", "train.group_rows=sideways"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "train.group_rows" in err and len(err.splitlines()) == 1
    assert main(["groups", "train"]) == 2
    assert "needs --config" in capsys.readouterr().err


def test_training_improves_on_a_group_signal(tmp_path):
    """Groups sharing members choose the same items: MF through the members learns it."""
    path = write_random_agree(tmp_path / "d", n_groups=30, n_items=25)
    cfg = config(path, configs=("configs/groups/mafengwo-dmtl.yaml", "configs/groups/mf.yaml"))
    data = load_group_data(path)
    tables = encode_tables(data, False)
    split = split_groups(data, cfg.train.seed, 0.1, 0.2, 5)
    torch.manual_seed(0)
    model = build_model(cfg.model, tables.fields)
    trainer = GroupTrainer(cfg, data, tables, model, split)
    before = trainer._step_groups(np.arange(len(split.train_group)), np.random.default_rng(0))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        loss = trainer._step_groups(np.arange(len(split.train_group)), np.random.default_rng(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * before.item()


@pytest.mark.parametrize(
    "configs,sets",
    [
        (("configs/groups/mafengwo-dmtl.yaml",), []),
        (
            ("configs/groups/mafengwo-dmtl.yaml",),
            ["model={name: mlp}", "train.group_rows=members", "train.score=borda"],
        ),  # fmt: skip
    ],
)
def test_train_then_recommend_end_to_end(tmp_path, capsys, configs, sets):
    path = write_random_agree(tmp_path / "d")
    run = tmp_path / "run"
    argv = ["groups", "train", "--out", str(run)]
    for c in configs:
        argv += ["-c", c]
    for s in [f"data.path={path}", *FAST, *sets]:
        argv += ["--set", s]
    assert main(argv) == 0
    assert "(sampled, strict)" in capsys.readouterr().out
    m = json.loads((run / "metrics.json").read_text())
    sampled = m["test"]["sampled"]
    assert sampled["cases"] == 20 and 0 <= sampled["hr@5"] <= 1
    assert sampled["hr@5_perfect"] == 1.0 and sampled["hr@5_random"] < 1
    assert m["test"]["full"]["users"] == 20
    assert 0 <= m["test"]["satisfaction@10"]["min"] <= m["test"]["satisfaction@10"]["mean"] <= 1
    assert "average" in m["test"]["other_methods"] or "profile" in m["test"]["other_methods"]
    # a finished run is reported, not retrained
    assert main(argv) == 0
    assert "not retraining" in capsys.readouterr().err

    loaded = load_group_run(run)
    assert main(["groups", "recommend", str(run), "--group", "3", "--k", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    items = [int(r["item"]) for r in out["items"]]
    assert len(items) == 4 and len(set(items)) == 4
    g = loaded.group_code("3")
    assert not loaded.seen[
        g, [int(np.flatnonzero(loaded.item_ids == str(i))[0]) for i in items]
    ].any()
    scores = [r["score"] for r in out["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len(out["members"]) == len(loaded.tables.members(np.array([g]))[0])
    assert 0 <= out["satisfaction"]["min"] <= out["satisfaction"]["mean"] <= 1
    assert main(["groups", "recommend", str(run), "--group", "3"]) == 0
    assert "member satisfaction" in capsys.readouterr().out


def test_recommend_errors_are_one_line(tmp_path, capsys):
    path = write_random_agree(tmp_path / "d")
    run = tmp_path / "run"
    run_group_training(config(path), run)
    cases = [
        (["--group", "999"], "no group with id '999'"),
        (["--group", "1", "--k", "0"], "--k must be at least 1"),
        (["--group", "1", "--method", "mean"], "unknown method 'mean'"),
    ]
    for extra, message in cases:
        assert main(["groups", "recommend", str(run), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert main(["groups", "recommend", str(tmp_path / "nope"), "--group", "1"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (run / "group_index.npz").unlink()
    assert main(["groups", "recommend", str(run), "--group", "1"]) == 2
    assert "not a gprec groups train run" in capsys.readouterr().err


def test_explicit_group_ratings_train_end_to_end(tmp_path):
    path = write_itm_rec(tmp_path / "itm")
    cfg = config(
        path, "data.valid_ratio=0.25", "data.test_ratio=0.25",
        configs=("configs/groups/itm-rec-dmtl.yaml",),
    )  # fmt: skip
    m = run_group_training(cfg, tmp_path / "run")
    assert m["test"]["cases"] == 1 and np.isfinite(m["test"]["rmse"])
    assert set(m["test"]["other_methods"]) == {"average", "least_misery", "most_pleasure"}
    assert m["rows"]["user"] == 5  # the members' own ratings train too
