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
from gprec.errors import ConfigError, DataError
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
    """Training steps through the group profile (members' mean vector) reach the members'
    vectors: the loss on the group rows falls well below where it started."""
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
    index = run / "group_index.npz"
    whole = index.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"garbage"):  # a truncated zip, not a zip
        index.write_bytes(damaged)
        assert main(["groups", "recommend", str(run), "--group", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot be loaded" in err and len(err.splitlines()) == 1
    index.unlink()
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


# --- review of issue 19's group trainer: leakage, strictness, hand-computed checks ---------


def write_agree_rows(directory: Path, members, train, test, negatives) -> Path:
    """An AGREE folder from explicit rows: members {g: users}, train [(g, i)], test {g: i},
    negatives {g: [items]}."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "groupMember.txt": [f"{g} {','.join(map(str, u))}" for g, u in members.items()],
        "groupRatingTrain.txt": [f"{g} {i}" for g, i in train],
        "groupRatingTest.txt": [f"{g} {i}" for g, i in test.items()],
        "groupRatingNegative.txt": [
            f"({g},{i}) " + " ".join(map(str, negatives[g])) for g, i in test.items()
        ],
    }
    for name, lines in texts.items():
        (directory / name).write_text("\n".join(lines) + "\n")
    return directory


def test_valid_carve_by_hand(tmp_path):
    # group 0 chose 0, 1, 2; group 1 only 3 (never carved: it would lose its only row);
    # group 2 chose 4, 5. 6 rows; items 0..11 all named, so codes equal raw ids.
    train = [(0, 0), (0, 1), (0, 2), (1, 3), (2, 4), (2, 5)]
    negatives = {0: [9, 10, 11], 1: [9, 10, 11], 2: [9, 10, 11]}
    path = write_agree_rows(
        tmp_path / "d", {0: [1, 2], 1: [2, 3], 2: [4]}, train, {0: 6, 1: 7, 2: 8}, negatives
    )
    data = load_group_data(path)
    assert data.n_items == 12 and data.n_groups == 3
    file_pairs = sorted(train)
    for ratio, n_valid in ((0.5, 2), (0.9, 2), (0.2, 1)):  # round(6r), capped at 2 eligible
        for seed in range(5):
            s = split_groups(data, seed, ratio, 0.2, 4)
            assert len(s.valid) == n_valid
            assert 1 not in s.valid.group.tolist()
            assert len(set(s.valid.group.tolist())) == n_valid  # at most one per group
            valid = list(zip(s.valid.group.tolist(), s.valid.item.tolist(), strict=True))
            kept = list(zip(s.train_group.tolist(), s.train_item.tolist(), strict=True))
            assert sorted(valid + kept) == file_pairs  # a partition of the file
            # seen: exactly the training file (valid rows included), never a test item
            want = np.zeros((3, 12), bool)
            want[tuple(np.array(file_pairs).T)] = True
            assert (s.seen == want).all()
            # each valid case: 4 distinct negatives the group never chose in the file
            for g, negs in zip(s.valid.group, s.valid.negatives, strict=True):
                assert len(set(negs.tolist())) == 4 and not want[g, negs].any()
    with pytest.raises(DataError, match="no validation case"):
        split_groups(data, 0, 0.05, 0.2, 4)  # round(0.3) = 0: refused, never a NaN epoch pick
    with pytest.raises(DataError, match="never chose"):
        split_groups(data, 0, 0.5, 0.2, 10)  # group 0 has only 9 items it never chose
    leaky = write_agree_rows(
        tmp_path / "leaky", {0: [1, 2], 1: [2, 3], 2: [4]}, train, {0: 6, 1: 3, 2: 8}, negatives
    )
    with pytest.raises(DataError, match="1 held-out .* also rows of the group training file"):
        split_groups(load_group_data(leaky), 0, 0.5, 0.2, 4)  # group 1 holds out its item 3


def test_nothing_of_the_test_file_reaches_validation_or_training(tmp_path):
    """Two folders differing only in which item each group holds out for test: the
    validation carve, its negatives, every epoch's loss and validation score and the
    chosen epoch are identical."""
    a = write_random_agree(tmp_path / "a")
    b = write_random_agree(tmp_path / "b")
    rows = [line.split() for line in (a / "groupRatingTest.txt").read_text().splitlines()]
    train = {}
    for line in (a / "groupRatingTrain.txt").read_text().splitlines():
        g, i = line.split()
        train.setdefault(g, set()).add(i)
    negs = [
        line.split(" ", 1)[1] for line in (a / "groupRatingNegative.txt").read_text().splitlines()
    ]
    new_test = []
    for g, held in rows:  # another item the group never chose (one the catalogue holds)
        other = next(str(i) for i in range(25) if str(i) not in train[g] | {held})
        new_test.append((g, other))
    (b / "groupRatingTest.txt").write_text("".join(f"{g} {i}\n" for g, i in new_test))
    (b / "groupRatingNegative.txt").write_text(
        "".join(f"({g},{i}) {n}\n" for (g, i), n in zip(new_test, negs, strict=True))
    )
    logs = []
    for path in (a, b):
        cfg = config(path, "train.max_epochs=3", "train.patience=3",
                     configs=("configs/groups/mafengwo-dmtl.yaml", "configs/groups/mf.yaml"))  # fmt: skip
        data = load_group_data(path)
        tables = encode_tables(data, False)
        split = split_groups(data, cfg.train.seed, 0.1, 0.2, 5)
        torch.manual_seed(cfg.train.seed)
        trainer = GroupTrainer(cfg, data, tables, build_model(cfg.model, tables.fields), split)
        fit = trainer.fit()
        logs.append((data, split, fit))
    (da, sa, fa), (db, sb, fb) = logs
    assert (da.item_ids == db.item_ids).all()  # same catalogue: codes comparable
    assert not (sa.test.item == sb.test.item).all()  # the test files do differ
    for key in ("group", "item", "negatives"):
        assert (getattr(sa.valid, key) == getattr(sb.valid, key)).all()
    assert (sa.seen == sb.seen).all()
    assert fa.log == fb.log and fa.best_epoch == fb.best_epoch


def constant_mf(tables):
    model = tiny_mf(tables)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model.eval()


def test_a_constant_scorer_scores_the_random_bound_or_lower_everywhere(tmp_path):
    """Every score ties: ties go against the held-out item in validation, the sampled test
    (each scoring method) and full ranking, so nothing beats a random ranker."""
    path = write_random_agree(tmp_path / "d")
    cfg = config(path, configs=("configs/groups/mafengwo-dmtl.yaml", "configs/groups/mf.yaml"))
    data = load_group_data(path)
    tables = encode_tables(data, False)
    split = split_groups(data, 0, 0.2, 0.2, 5)
    trainer = GroupTrainer(cfg, data, tables, constant_mf(tables), split)
    valid = trainer.validate()  # 5 negatives: the held-out item is 6th, a miss at 5
    assert valid["hr@5"] == valid["ndcg@5"] == 0.0
    assert valid["ndcg@10"] == pytest.approx(1 / np.log2(7))
    t = trainer.test()
    sampled = t["sampled"]  # 8 negatives each: rank 9
    for name in ("hr@5", "ndcg@5", "hr@10", "ndcg@10"):
        assert sampled[name] <= sampled[f"{name}_random"]
        assert sampled[f"{name}_optimistic_ties_as_hits"] == 1.0  # what ties-as-hits reports
    assert sampled["hr@5"] == 0.0 and sampled["ndcg@10"] == pytest.approx(1 / np.log2(10))
    assert set(t["other_methods"]) == {"average", "least_misery", "most_pleasure", "borda"}
    for metrics in t["other_methods"].values():
        assert metrics["hr@5"] == 0.0 and metrics["ndcg@10"] == pytest.approx(1 / np.log2(10))
    full = t["full"]  # 22 unseen items per group, the held-out one last
    for name in ("precision@5", "recall@10", "ndcg@10"):
        assert full[name] == 0.0 < full[f"{name}_random"]


class TableModel(torch.nn.Module):
    """Scores a (user, item) row by a fixed table: `S[user code, item code]`."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.as_tensor(scores, dtype=torch.float64)

    def forward(self, x):
        from gprec.models.base import ModelOutput

        return ModelOutput(self.scores[x[:, 0] - 1, x[:, 1] - 1])


def hand_tables():
    """3 users, 4 items; group 0 = {u0, u1}, group 1 = {u1, u2} (u1 in both)."""
    from gprec.groups.data import GroupTables

    return GroupTables(
        fields=[EncodedField("user", Role.USER, 4), EncodedField("item", Role.ITEM, 5)],
        user_x=torch.tensor([[1, 0], [2, 0], [3, 0]]),
        item_col=1,
        group_col=None,
        member_offsets=np.array([0, 2, 4]),
        member_users=np.array([0, 1, 1, 2]),
        user_group_offsets=np.array([0, 1, 3, 4]),
        user_group_list=np.array([0, 0, 1, 1]),
        n_items=4,
    )


S = np.array([[4.0, 1.0, 3.0, 0.0], [0.0, 2.0, 5.0, 1.0], [3.0, 3.0, 1.0, 2.0]])


def test_aggregations_by_hand_with_a_member_in_two_groups():
    tables = hand_tables()
    model = TableModel(S)
    # by hand, g0 = {u0, u1}, g1 = {u1, u2}; Borda points: rank - 1, ties averaged
    points = np.array([[3, 1, 2, 0], [0, 2, 3, 1], [2.5, 2.5, 0, 1]])
    want = {
        "average": [[2, 1.5, 4, 0.5], [1.5, 2.5, 3, 1.5]],
        "least_misery": [[0, 1, 3, 0], [0, 2, 1, 1]],
        "most_pleasure": [[4, 2, 5, 1], [3, 3, 5, 2]],
        "borda": [points[0] + points[1], points[1] + points[2]],
    }
    groups = np.array([1, 0, 1])  # cases may repeat a group
    items = np.broadcast_to(np.arange(4), (3, 4))
    for method, w in want.items():
        s = GroupScorer(model, tables, method)
        np.testing.assert_allclose(s.cases(groups, items), np.asarray(w)[groups])
        np.testing.assert_allclose(s.group_matrix(), w)


def test_borda_ignores_padded_candidates():
    """A padded candidate list (padding repeats item 0) ranks like the unpadded one: padding
    enters no member's Borda points."""
    model = TableModel(S)
    s = GroupScorer(model, hand_tables(), "borda")
    g = np.array([1])  # u2 scores item 0 like item 1, above items 2 and 3
    short = s.cases(g, np.array([[1, 2, 3]]))
    padded = np.array([[1, 2, 3, 0, 0]])
    mask = np.array([[True, True, True, False, False]])
    got = s.cases(g, padded, mask)[:, :3]
    np.testing.assert_allclose(got - got[0, 0], short - short[0, 0])
    # without the mask the padding's points move the real candidates (what was fixed)
    unmasked = s.cases(g, padded)[:, :3]
    assert not np.allclose(unmasked - unmasked[0, 0], short - short[0, 0])
    # full ranking: the group's training items (item 0) are no Borda candidates either
    full = s.group_matrix(g, exclude=np.array([[True, False, False, False]]))
    np.testing.assert_allclose(full[:, 1:] - full[0, 1], short - short[0, 0])


def test_mf_output_by_hand():
    """MF's score is <user vector, item vector> + user bias + item bias + global bias."""
    fields = [EncodedField("user", Role.USER, 5), EncodedField("item", Role.ITEM, 6)]
    torch.manual_seed(0)
    model = build_model({"name": "mf", "embedding_dim": 3}, fields)
    with torch.no_grad():
        model.bias.table.weight.normal_()
        model.global_bias.fill_(0.5)
    x = torch.tensor([[1, 2], [4, 5]])
    e, b = model.embedding.table.weight, model.bias.table.weight[:, 0]
    want = (e[x[:, 0]] * e[5 + x[:, 1]]).sum(1) + b[x[:, 0]] + b[5 + x[:, 1]] + 0.5
    torch.testing.assert_close(model(x).logit, want)


def test_borda_is_refused_for_ratings(tmp_path):
    path = write_itm_rec(tmp_path / "itm")
    cfg = config(path, "data.valid_ratio=0.25", "data.test_ratio=0.25", "train.score=borda",
                 "train.group_rows=members", configs=("configs/groups/itm-rec-dmtl.yaml",))  # fmt: skip
    with pytest.raises(ConfigError, match="borda ranks candidates"):
        run_group_training(cfg, None)


def test_a_validation_score_never_finite_fails_instead_of_keeping_the_last_epoch(tmp_path):
    path = write_itm_rec(tmp_path / "itm")
    cfg = config(path, "data.valid_ratio=0.25", "data.test_ratio=0.25",
                 configs=("configs/groups/itm-rec-dmtl.yaml",))  # fmt: skip
    data = load_group_data(path)
    tables = encode_tables(data, True)
    split = split_groups(data, 0, 0.25, 0.25, 5)
    trainer = GroupTrainer(cfg, data, tables, build_model(cfg.model, tables.fields), split)
    trainer.validate = lambda: {"rmse": float("nan"), "mae": float("nan")}
    with pytest.raises(ConfigError, match="validation rmse was never a number"):
        trainer.fit()
