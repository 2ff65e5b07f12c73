"""`gprec recommend` and gprec.serving.recommend: a user's top k equals a brute-force top k
built here from the run's training rows and `load_run(...).predict`, leaves out the user's
training items, the batch form equals per-user calls, the catalogue holds what it says, and
every bad request is one error line (exit 2)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import train_tiny_ml100k, write_ml100k
from gprec.cli.main import main
from gprec.data.dataset import load_dataset
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError, DataError
from gprec.serving.catalogue import CATALOGUE, build_catalogue, load_catalogue
from gprec.serving.recommend import Recommender, read_user_ids
from gprec.training.load import load_run
from gprec.training.run_dir import RUN_FILES, inspect_run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend")
    write_ml100k(root / "ml-100k", n_items=60, n_ratings=1500)
    return {
        "mlp": train_tiny_ml100k(root, "mlp", "data.user_groups=3"),
        "gprec": train_tiny_ml100k(
            root, "gprec", "model.name=gprec", "model.n_groups=3", "model.strategy=dynamic"
        ),
    }


def brute_force(run_dir: Path, k: int) -> dict[str, list[tuple[str, float]]]:
    """Every training user's top k, from the training rows by hand: the user's last training
    row with each item's fields (from the item's last training row), scored by the loaded
    run, the user's training items left out, ties by the item's code."""
    run = load_run(run_dir)
    X = load_dataset(run.config.data, run.config.split_seed()).X["train"]
    names = [f.name for f in run.fields]
    u, i = names.index("user_id"), names.index("item_id")
    item_cols = [c for c, f in enumerate(run.fields) if f.role == Role.ITEM]
    n_items = run.fields[i].cardinality - 1
    items = np.zeros((n_items, len(item_cols)), np.int64)
    for row in X:  # later rows overwrite: the last one wins
        items[row[i] - 1] = row[item_cols]
    out = {}
    for user in np.unique(X[:, u]):
        mine = X[X[:, u] == user]
        rows = np.repeat(mine[-1:], n_items, axis=0)
        rows[:, item_cols] = items
        scores = run.predict(rows)
        seen = set(mine[:, i] - 1)
        order = [c for c in np.argsort(-scores, kind="stable") if c not in seen][:k]
        user_id = run.vocab.values["user_id"][user - 1]
        out[user_id] = [(run.vocab.values["item_id"][c], float(scores[c])) for c in order]
    return out


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gprec: error: "), err
    return err[0]


def recommend_json(capsys, run_dir, *args) -> object:
    assert main(["recommend", str(run_dir), *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("model", ["mlp", "gprec"])
def test_top_k_equals_a_brute_force_top_k(runs, model, capsys):
    expected = brute_force(runs[model], k=5)
    rec = Recommender.open(runs[model])
    got = rec.recommend(list(expected), k=5)
    assert {r.user: list(zip(r.items, r.scores, strict=True)) for r in got} == expected
    user = next(iter(expected))
    single = recommend_json(capsys, runs[model], "--user", user, "--k", "5")
    assert [(x["item"], x["score"]) for x in single["items"]] == expected[user]
    assert [x["rank"] for x in single["items"]] == [1, 2, 3, 4, 5]


def test_training_items_are_left_out(runs):
    run = load_run(runs["mlp"])
    X = load_dataset(run.config.data, run.config.split_seed()).X["train"]
    rec = Recommender.open(runs["mlp"])
    n_items = rec.catalogue.n_items
    for user in run.vocab.values["user_id"][:10]:
        code = rec.user_code(user)
        seen = {run.vocab.values["item_id"][c - 1] for c in X[X[:, 3] == code, 0]}
        (everything,) = rec.recommend([user], k=n_items + 5)
        assert everything.excluded == len(seen) and everything.candidates == n_items - len(seen)
        assert len(everything.items) == n_items - len(seen)  # k beyond the candidates: all
        assert not seen & set(everything.items)
        assert set(everything.items) | seen == set(run.vocab.values["item_id"])
        assert everything.scores == sorted(everything.scores, reverse=True)


def test_the_batch_form_equals_per_user_calls(runs, tmp_path, capsys):
    run_dir = runs["mlp"]
    users = load_run(run_dir).vocab.values["user_id"][::3]
    singles = [recommend_json(capsys, run_dir, "--user", u, "--k", "4") for u in users]
    listed = tmp_path / "users.txt"
    listed.write_text("\n".join(users) + "\n\n")
    assert recommend_json(capsys, run_dir, "--users", str(listed), "--k", "4") == singles
    table = tmp_path / "users.csv"
    table.write_text("name,user_id\n" + "".join(f"x{u},{u}\n" for u in users))
    out = tmp_path / "top.csv"
    assert main(["recommend", str(run_dir), "--users", str(table), "--k", "4", "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = [
        {"user": s["user"], "rank": str(x["rank"]), "item": x["item"], "score": x["score"]}
        for s in singles
        for x in s["items"]
    ]
    assert [r | {"score": float(r["score"])} for r in rows] == expected
    assert main(["recommend", str(run_dir), "--users", str(listed), "--k", "4"]) == 0
    assert capsys.readouterr().out == out.read_text()  # CSV on stdout by default
    as_json = tmp_path / "top.json"
    assert (
        main(["recommend", str(run_dir), "--users", str(table), "-k", "4", "-o", str(as_json)]) == 0
    )
    assert json.loads(as_json.read_text()) == singles
    # the table view lists the same items
    assert main(["recommend", str(run_dir), "--user", users[0], "--k", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"user {users[0]}: top 4 of ") and "genres" in lines[1]
    assert [line.split()[1] for line in lines[2:]] == [x["item"] for x in singles[0]["items"]]


def test_errors_are_one_line_each(runs, tmp_path, capsys):
    run_dir = str(runs["mlp"])
    err = one_line_error(capsys, ["recommend", run_dir, "--user", "nobody"])
    assert "unknown user 'nobody'" in err and "user_id" in err
    listed = tmp_path / "users.txt"
    listed.write_text("1\nnobody\n2\nghost\n")
    err = one_line_error(capsys, ["recommend", run_dir, "--users", str(listed)])
    assert "users.txt: unknown user 'nobody'" in err and "2 of 4 ids are unknown" in err
    for k in ("0", "-3"):
        assert f"--k must be at least 1, not {k}" in one_line_error(
            capsys, ["recommend", run_dir, "--user", "1", "--k", k]
        )
    with pytest.raises(SystemExit) as exit_:
        main(["recommend", run_dir, "--user", "1", "--k", "ten"])  # argparse: exit 2
    assert exit_.value.code == 2
    capsys.readouterr()
    (tmp_path / "empty.txt").write_text("\n\n")
    assert "empty.txt: no user ids" in one_line_error(
        capsys, ["recommend", run_dir, "--users", str(tmp_path / "empty.txt")]
    )
    assert "nope.txt: file not found" in one_line_error(
        capsys, ["recommend", run_dir, "--users", str(tmp_path / "nope.txt")]
    )
    (tmp_path / "ragged.csv").write_text("user_id,x\n1,2\n3\n")
    assert "ragged.csv, line 3: expected 2 columns" in one_line_error(
        capsys, ["recommend", run_dir, "--users", str(tmp_path / "ragged.csv")]
    )
    assert "give a .csv or .json file" in one_line_error(
        capsys, ["recommend", run_dir, "--user", "1", "-o", str(tmp_path / "top.parquet")]
    )
    assert "no such run directory" in one_line_error(
        capsys, ["recommend", str(tmp_path / "norun"), "--user", "1"]
    )
    with pytest.raises(SystemExit):
        main(["recommend", run_dir])  # --user or --users is required
    with pytest.raises(ConfigError, match="k must be at least 1"):
        Recommender.open(run_dir).recommend(["1"], k=0)


def test_a_run_without_catalogue_is_told_to_retrain_or_rebuild(runs, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(runs["mlp"], old)
    expected = recommend_json(capsys, runs["mlp"], "--user", "2", "--k", "3")
    (old / CATALOGUE).unlink()
    err = one_line_error(capsys, ["recommend", str(old), "--user", "2"])
    assert "catalogue.npz missing" in err and "train it again" in err
    assert "--rebuild-catalogue" in err
    assert recommend_json(capsys, old, "--user", "2", "--k", "3", "--rebuild-catalogue") == expected
    assert recommend_json(capsys, old, "--user", "2", "--k", "3") == expected  # it was written
    (old / CATALOGUE).write_bytes(b"damaged")
    assert "catalogue.npz: cannot be read" in one_line_error(
        capsys, ["recommend", str(old), "--user", "2"]
    )


def test_the_catalogue_by_hand():
    fields = [
        EncodedField("item_id", Role.ITEM, 5),
        EncodedField("genre", Role.ITEM, 3),
        EncodedField("user_id", Role.PERSONAL, 4),
        EncodedField("age", Role.USER, 6),
        EncodedField("hour", Role.CONTEXT, 9),
    ]
    X = np.array(
        [
            [1, 1, 1, 2, 3],
            [2, 2, 1, 2, 4],
            [1, 2, 2, 5, 5],  # item 1's last row: genre 2
            [3, 1, 1, 3, 6],  # user 1's last row: age 3, hour 6
            [2, 2, 2, 5, 7],
        ]
    )
    cat = build_catalogue(X, fields)
    assert cat.n_items == 4 and list(cat.items()) == [1, 2, 3, 4]
    assert cat.item_features.tolist() == [[0, 0], [1, 2], [2, 2], [3, 1], [4, 0]]  # 4: no rows
    assert cat.user_rows.tolist() == [[0] * 5, [0, 0, 1, 3, 6], [0, 0, 2, 5, 7], [0] * 5]
    assert [cat.seen(u).tolist() for u in range(4)] == [[], [1, 2, 3], [1, 2], []]
    assert cat.known_users().tolist() == [False, True, True, False]
    assert cat.seen_mask(np.array([2, 1])).tolist() == [
        [True, True, False, False],
        [True, True, True, False],
    ]
    rows = cat.rows_for(np.array([1]), np.array([4, 1]))
    assert rows.tolist() == [[4, 0, 1, 3, 6], [1, 2, 1, 3, 6]]


def test_the_run_directory_keeps_the_catalogue_as_its_own(runs):
    assert CATALOGUE in RUN_FILES  # --overwrite replaces it; it is no foreign file
    run_dir = runs["mlp"]
    state = inspect_run_dir(run_dir, (run_dir / "config.yaml").read_text())
    assert state.kind == "finished" and state.foreign == [] and state.differences == []
    cat = load_catalogue(load_run(run_dir))
    assert cat.seen_indptr[-1] == len(cat.seen_items) > 0


def test_read_user_ids(tmp_path):
    f = tmp_path / "u.csv"
    f.write_text("uid,user_id\n7,a\n8,b\n")
    assert read_user_ids(f) == ["a", "b"]
    assert read_user_ids(f, columns=("uid", "user_id")) == ["7", "8"]
    f.write_text(" a \nb\n\n")
    assert read_user_ids(f) == ["a", "b"]
    with pytest.raises(DataError, match="not a file"):
        read_user_ids(tmp_path)
