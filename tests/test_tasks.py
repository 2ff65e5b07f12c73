"""Training tasks (training/tasks.py, `train.task`): each task's loss, transform, metrics and
early-stopping direction against hand computations, the config checks, and a regression task
trained end to end through `gprec train` on a tiny MovieLens-100K."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import write_ml100k
from gprec.cli.main import main
from gprec.config import parse_config
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.evaluation.metrics import regression_metrics
from gprec.training.tasks import (
    TASKS,
    BinaryTask,
    ImplicitTask,
    RegressionTask,
    sampled_ranking_metrics,
)

ML100K_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ml-100k" / "mlp.yaml"


def test_binary_task_is_todays_ctr_path():
    task = TASKS["binary"]
    out, y = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = -np.mean(
        [
            math.log(0.5),
            math.log(1 / (1 + math.exp(-2))),
            math.log(1 / (1 + math.exp(-1))),
        ]  # label 0, logit -1: log(1 - sigmoid(-1))
    )
    assert math.isclose(task.loss(out, y).item(), expected, rel_tol=1e-6)
    assert torch.allclose(task.transform(out), torch.sigmoid(out))
    assert set(task.metrics(y.numpy(), task.transform(out).numpy())) == {"auc", "logloss"}
    assert task.monitor == "auc" and task.improves(0.8, 0.7) and not task.improves(0.7, 0.8)
    assert task.fit(None, y, []) is task and task.worst() == -math.inf


def test_regression_task_predicts_around_the_training_mean():
    y_train = torch.tensor([1.0, 3.0, 5.0, 3.0])
    task = TASKS["regression"].fit(None, y_train, [])
    assert isinstance(task, RegressionTask) and task.offset == 3.0
    out, y = torch.tensor([0.5, -1.0]), torch.tensor([4.0, 1.0])
    # (3.5 - 4)^2 and (2 - 1)^2
    assert math.isclose(task.loss(out, y).item(), (0.25 + 1.0) / 2, rel_tol=1e-6)
    assert torch.allclose(task.transform(out), torch.tensor([3.5, 2.0]))
    assert task.state() == {"name": "regression", "offset": 3.0}
    assert task.monitor == "rmse" and task.improves(0.9, 1.0) and not task.improves(1.0, 0.9)
    assert task.worst() == math.inf


def test_regression_metrics_against_a_hand_computation():
    m = regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 2.0]))
    assert math.isclose(m["rmse"], math.sqrt((1 + 0 + 4) / 3))
    assert math.isclose(m["mae"], (1 + 0 + 2) / 3)
    assert all(math.isnan(v) for v in regression_metrics(np.zeros(0), np.zeros(0)).values())


def test_the_task_and_the_target_must_agree():
    with pytest.raises(ConfigError, match="data.target: is label, but train.task regression"):
        parse_config({"train": {"task": "regression"}})
    with pytest.raises(ConfigError, match="data.target: is value, but train.task binary"):
        parse_config({"data": {"target": "value"}})
    cfg = parse_config({"train": {"task": "regression"}, "data": {"target": "value"}})
    assert cfg.train.task == "regression"
    with pytest.raises(
        ConfigError, match="train.task: model gprec trains only train.task binary or implicit"
    ):
        parse_config(
            {
                "train": {"task": "regression"},
                "data": {"target": "value"},
                "model": {"name": "gprec"},
            }
        )


def test_a_regression_task_trains_end_to_end(tmp_path):
    data = write_ml100k(tmp_path / "ml-100k", n_ratings=3000)
    out = tmp_path / "run"
    args = [
        "train", "-c", str(ML100K_CONFIG), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "train.task=regression", "--set", "data.target=value",
        "--set", "train.batch_size=256", "--set", "train.lr=0.01", "--set", "train.max_epochs=30",
        "--set", "train.progress=false", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "regression" and metrics["monitor"] == "rmse"
    assert set(metrics["test"]) == {"rmse", "mae"}
    # Better than predicting the mean rating: the ratings depend on user and item here.
    ratings = np.array(
        [int(line.split("\t")[2]) for line in (data / "u.data").read_text().splitlines()]
    )
    assert metrics["test"]["rmse"] < ratings.std() - 0.05
    assert torch.load(out / "model.pt")["task"]["name"] == "regression"
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["task"] == "regression"


def test_compare_compares_a_regression_task_on_its_own_metrics(tmp_path):
    data = write_ml100k(tmp_path / "ml-100k", n_ratings=1500)
    out = tmp_path / "cmp"
    args = [
        "compare", "-c", str(ML100K_CONFIG), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.task=regression",
        "--set", "data.target=value", "--set", "train.max_epochs=3", "--set", "train.progress=false",
        "--models", "mlp,mlp[dropout=0.1]", "--seeds", "1,2", "--baseline", "mlp", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "comparison.json").read_text())
    assert set(summary["models"][0]) >= {"rmse_mean", "rmse_std", "mae_mean", "mae_rank"}
    pre = summary["prespecified"]
    assert set(pre["valid_rmse"]) == {"baseline", "candidate"}
    assert [t["metric"] for t in pre["tests"]] == ["rmse", "mae"]
    md = (out / "comparison.md").read_text()
    assert "| model | seeds | RMSE | MAE |" in md and "mean validation RMSE" in md
    assert "| model | valid RMSE |" in md


def test_compare_refuses_models_of_different_tasks(tmp_path, capsys):
    args = [
        "compare", "-c", str(ML100K_CONFIG), "--models",
        "mlp,mlp[train.task=regression,data.target=value]", "--seeds", "1", "--out", str(tmp_path / "x"),
    ]  # fmt: skip
    assert main(args) == 2
    assert "mixes train.task binary and regression" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_prespecified_test_chooses_by_the_lowest_validation_rmse():
    from gprec.evaluation.significance import TASK_METRICS, summarize

    test = {
        m: {s: {"rmse": r, "mae": r * 0.8} for s, r in enumerate(v)}
        for m, v in {
            "a": [1.00, 1.02, 0.99],
            "b": [0.95, 0.97, 0.96],
            "c": [0.90, 0.93, 0.91],
        }.items()
    }
    valid = {
        "a": {0: 1.0, 1: 1.0, 2: 1.0},
        "b": {0: 0.9, 1: 0.9, 2: 0.9},
        "c": {0: 0.95, 1: 0.95, 2: 0.95},
    }
    pre = summarize(test, valid, ["a", "b"], TASK_METRICS["regression"])["prespecified"]
    assert (pre["baseline"], pre["candidate"]) == ("b", "c")  # lowest valid among each side
    rmse = pre["tests"][0]
    assert rmse["metric"] == "rmse" and rmse["mean_difference"] < 0  # c - b: lower is better
    assert rmse["paired_p"] < 0.05  # one-sided: the candidate's RMSE is lower


def test_binary_task_class_is_registered_under_its_name():
    assert isinstance(TASKS["binary"], BinaryTask)
    assert set(TASKS) == {"binary", "regression", "implicit"}


# -- implicit feedback ------------------------------------------------------------------------

IMPLICIT_FIELDS = [
    EncodedField("item_id", Role.ITEM, 12),
    EncodedField("genre", Role.ITEM, 4),
    EncodedField("user_id", Role.PERSONAL, 6),
    EncodedField("age", Role.USER, 3),
]


def implicit_task(**kw):
    X = torch.tensor(
        [
            [i, i % 3 + 1, u, u % 2 + 1]
            for u in range(1, 6)
            for i in range(1, 12)
            if (u + i) % 3 == 0
        ]
    )
    y = torch.ones(len(X))
    y[::4] = 0  # rows labelled 0 are not positives
    task = ImplicitTask(**{"negatives": 3, "eval_negatives": 5, "seed": 7, **kw})
    return task.fit(X, y, IMPLICIT_FIELDS), X, y


def test_sampled_ranking_counts_ties_against_the_positive():
    pos = torch.tensor([0.9, 0.5, 0.5])
    neg = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.1, 0.1], [0.6, 0.7, 0.5]])
    m = sampled_ranking_metrics(pos, neg)  # ranks 1, 2 (a tie), 4
    assert math.isclose(m["hr@5"], 1.0) and math.isclose(m["hr@10"], 1.0)
    assert math.isclose(m["ndcg@5"], (1 + 1 / math.log2(3) + 1 / math.log2(5)) / 3)
    constant = sampled_ranking_metrics(torch.zeros(4), torch.zeros(4, 20))
    assert constant["hr@10"] == 0.0  # a constant scorer ranks every positive last


def test_training_negatives_are_the_users_rows_with_other_items():
    task, X, y = implicit_task()
    xb, yb = task.expand(X, y)
    pos = X[y == 1]
    n = len(pos)
    assert len(xb) == n * 4 and yb[:n].eq(1).all() and yb[n:].eq(0).all()
    neg = xb[n:]
    assert torch.equal(neg[:, 2:], pos.repeat_interleave(3, 0)[:, 2:])  # the user's fields kept
    assert torch.equal(neg[:, 1], task.item_table[neg[:, 0], 1])  # the item's own genre
    assert set(neg[:, 0].tolist()) <= set(task.catalogue.tolist())


def test_evaluation_negatives_are_distinct_unseen_and_fixed():
    task, X, y = implicit_task()
    pos = X[y == 1]
    negs = task.eval_negatives_for(pos)
    assert negs.shape == (len(pos), 5)
    seen = {(int(u), int(i)) for u, i in X[y == 1][:, [2, 0]]}
    for row, items in zip(pos, negs, strict=True):
        assert len(set(items.tolist())) == 5  # distinct
        assert all((int(row[2]), int(i)) not in seen for i in items)  # never seen by the user
        assert int(row[0]) not in items.tolist()
    assert torch.equal(negs, task.eval_negatives_for(pos))  # the same lists every epoch
    with pytest.raises(ConfigError, match="eval_negatives 50 exceeds the training catalogue"):
        implicit_task(eval_negatives=50)[0].eval_negatives_for(pos)


def test_an_implicit_task_trains_end_to_end(tmp_path):
    # 200 items, so every user leaves enough unseen ones to rank a held-out item against
    data = write_ml100k(tmp_path / "ml-100k", n_items=200, n_ratings=3000)
    out = tmp_path / "run"
    args = [
        "train", "-c", str(ML100K_CONFIG), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.task=implicit",
        "--set", "train.eval_negatives=10", "--set", "train.batch_size=256",
        "--set", "train.lr=0.01", "--set", "train.max_epochs=15", "--set", "train.progress=false",
        "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "implicit" and metrics["monitor"] == "ndcg@10"
    assert set(metrics["test"]) == {"ndcg@10", "hr@10", "ndcg@5", "hr@5"}
    assert all(0 <= v <= 1 for v in metrics["test"].values())
    # against 10 negatives a random ranker's HR@5 is 5/11: the model learned something
    assert metrics["test"]["hr@5"] > 5 / 11


def test_implicit_evaluation_is_deterministic_in_chunks(monkeypatch):
    import gprec.training.tasks as tasks

    task, X, y = implicit_task()

    def score(rows):  # a fixed scorer: prefers low item ids
        return (-rows[:, 0].double()).numpy()

    once = task.evaluate(score, X, y)
    assert once == task.evaluate(score, X, y)  # the same lists every epoch
    monkeypatch.setattr(tasks, "EVAL_CHUNK", 3)
    chunked = task.evaluate(score, X, y)
    assert chunked == task.evaluate(score, X, y) and set(chunked) == set(once)
    assert all(0 <= v <= 1 for v in chunked.values())


def test_implicit_never_draws_an_item_the_data_holds_for_the_user():
    """Rated-but-disliked items (label 0) and the other splits' interactions are excluded too."""
    task0, X, y = implicit_task()
    other = torch.tensor([[i, i % 3 + 1, u, u % 2 + 1] for u in range(1, 6) for i in (2, 7)])
    task = ImplicitTask(negatives=3, eval_negatives=3, seed=7).fit(X, y, IMPLICIT_FIELDS, (other,))
    pos = X[y == 1]
    held = {(int(u), int(i)) for u, i in torch.cat([X, other])[:, [2, 0]]}
    for row, items in zip(pos, task.eval_negatives_for(pos), strict=True):
        assert all((int(row[2]), int(i)) not in held for i in items)
    assert torch.equal(task.transform(torch.tensor([20.0, 21.0])), torch.tensor([20.0, 21.0]))
    Xt, yt = task.training_rows(X, y)
    assert yt.eq(1).all() and len(Xt) == int((y == 1).sum())


def test_an_interaction_log_trains_the_implicit_task(tmp_path, capsys):
    """data.target: positive reads every row as an observed interaction (no labels needed)."""
    data = write_ml100k(tmp_path / "ml-100k", n_items=200, n_ratings=2000)
    common = [
        "train", "-c", str(ML100K_CONFIG), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.target=positive",
        "--set", "train.max_epochs=1", "--set", "train.progress=false",
    ]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "bin")]) == 2
    assert "data.target: is positive, but train.task binary learns a 0/1 label" in (
        capsys.readouterr().err
    )
    args = [*common, "--set", "train.task=implicit", "--set", "train.eval_negatives=10"]
    assert main([*args, "--out", str(tmp_path / "imp")]) == 0


def test_rescoring_infers_the_task_from_the_runs():
    from gprec.experiments.compare import summary_from_runs

    runs = {
        m: {str(s): {"test": {"rmse": 1.0 + d * s + s / 100, "mae": 0.8 + d * s}, "valid_rmse": 1.0 + d}
            for s in (1, 2, 3)}
        for m, d in (("a", 0.0), ("b", 0.1))
    }  # fmt: skip
    summary = summary_from_runs(runs, [1, 2, 3], ["b"])
    assert summary["prespecified"]["candidate"] == "a" and "valid_rmse" in summary["prespecified"]


def test_compare_refuses_implicit_models_ranked_against_different_lists(tmp_path, capsys):
    args = [
        "compare", "-c", str(ML100K_CONFIG), "--set", "train.task=implicit", "--models",
        "mlp,mlp[train.eval_negatives=50]", "--seeds", "1", "--out", str(tmp_path / "x"),
    ]  # fmt: skip
    assert main(args) == 2
    assert "differ in train.eval_negatives (50, 100)" in capsys.readouterr().err
