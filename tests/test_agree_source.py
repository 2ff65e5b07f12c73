"""`data.source: agree` (data/agree_source.py): an AGREE/ConsRec-layout folder trains the group
task through `gprec train` with the shipped Mafengwo config, the test rows ranked against their
published (cleaned) negatives, strictly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_group_data import write_agree

from gprec.cli.main import main
from gprec.config import parse_config
from gprec.data.agree_source import encode_negatives, load_agree_raw
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.training.tasks import ImplicitTask

MAFENGWO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mafengwo" / "mlp.yaml"


def test_the_raw_table_keeps_the_files_split_and_cleaned_lists(tmp_path):
    raw = load_agree_raw(write_agree(tmp_path / "g"))
    assert raw.split.tolist() == ["train"] * 4 + ["test"] * 3
    assert raw.table["item_id"].to_list()[4:] == [3, 4, 0]  # the held-out items
    offsets, items = raw.test_negatives
    # (0,3) 5 1 5 6 -> 5 1 6 (repeat dropped); (1,4) 4 0 6 -> 0 6 (own item); (2,0) 2 3 5 6
    assert [items[offsets[i] : offsets[i + 1]].tolist() for i in range(3)] == [
        [5, 1, 6], [0, 6], [2, 3, 5, 6],
    ]  # fmt: skip
    assert raw.table["target"].to_list() == [1.0] * 7


def test_listed_negatives_encode_with_unseen_items_and_padding():
    out = encode_negatives(np.array([0, 3, 5]), np.array([5, 1, 9, 0, 6]), ["0", "1", "5"])
    assert out.tolist() == [[3, 2, 0], [1, 0, -1]]  # 9 and 6 never seen in training: index 0


def test_the_task_ranks_each_row_against_its_listed_negatives():
    fields = [EncodedField("group_id", Role.PERSONAL, 4), EncodedField("item_id", Role.ITEM, 8)]
    X = torch.tensor([[1, 2], [2, 5], [3, 7]])
    y = torch.ones(3)
    task = ImplicitTask(eval_negatives=2).fit(X, y, fields)
    lists = torch.tensor([[1, 3, -1, -1, -1, -1], [6, 7, 5, 5, 5, 6], [1, 2, 3, -1, -1, -1]])

    def score(rows):  # item index as the score
        return rows[:, 1].double().numpy()

    m = task.evaluate(score, X, y, negatives=lists)
    # ranks: item 2 vs {1, 3} -> 2; item 5 vs six negatives scoring >= 5 (its ties count
    # against it) -> 7; item 7 vs {1, 2, 3} -> 1; padding (-1) is not a candidate
    assert m["hr@5"] == pytest.approx(2 / 3) and m["hr@10"] == pytest.approx(1.0)
    assert m["ndcg@5"] == pytest.approx((1 / np.log2(3) + 0 + 1) / 3)
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(8) + 1) / 3)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"data": {"source": "agree", "target": "positive"}, "train": {"task": "implicit"}},
         "data.split: source agree has its own test rows: use file"),
        ({"data": {"split": "file"}}, "data.split: file needs a source with its own test rows"),
        ({"data": {"source": "agree", "split": "file"}},
         "train.task: source agree holds positives with listed negatives"),
    ],
)  # fmt: skip
def test_agree_config_errors_are_one_line(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_gprec_train_on_a_folder_in_the_layout_writes_the_strict_group_metrics(tmp_path):
    data = write_agree(tmp_path / "g")
    out = tmp_path / "run"
    args = [
        "train", "-c", str(MAFENGWO_CONFIG), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.eval_negatives=1",
        "--set", "data.split_ratios=[0.5, 0.5, 0]",
        "--set", "train.max_epochs=2", "--set", "train.progress=false", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"hr@5", "ndcg@5", "hr@10", "ndcg@10"}
    assert metrics["data"]["rows"]["test"] == 3  # the file's own test rows
    # with at most 4 negatives per list every held-out item is in the top 5: HR@5 = 1
    assert metrics["test"]["hr@5"] == 1.0
    assert main([*args[:-1], str(tmp_path / "run2")]) == 0  # again, from the cache
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["test"] == metrics["test"]


def write_wide_agree(directory: Path) -> Path:
    """6 groups, 12 items (codes 0-11), lists of 8 negatives: ranks go beyond 5."""
    directory.mkdir(parents=True, exist_ok=True)
    members = "".join(f"{g} {g},{g + 1}\n" for g in range(6))
    train = "".join(f"{g} {i}\n" for g in range(6) for i in range(g % 3, 9, 3))
    test = "".join(f"{g} {9 + g % 3}\n" for g in range(6))
    negatives = "".join(
        f"({g},{9 + g % 3}) " + " ".join(str(i) for i in range(12) if i != 9 + g % 3)[:15] + "\r\n"
        for g in range(6)
    )
    files = {
        "groupMember.txt": members,
        "groupRatingTrain.txt": train,
        "groupRatingTest.txt": test,
        "groupRatingNegative.txt": negatives,
    }
    for name, text in files.items():
        (directory / name).write_bytes(text.encode())
    return directory


def test_the_run_scores_exactly_the_listed_negatives_and_caches_them(tmp_path):
    from gprec.config import load_config
    from gprec.data.dataset import load_dataset
    from gprec.evaluation.ranking import rank_metrics, sampled_ranks
    from gprec.training.load import load_run

    data = write_wide_agree(tmp_path / "wide")
    out = tmp_path / "run"
    sets = [
        f"data.path={data}", f"data.cache_dir={tmp_path / 'cache'}", "train.eval_negatives=3",
        "data.split_ratios=[0.7, 0.3, 0]", "train.max_epochs=3", "train.progress=false",
    ]  # fmt: skip
    assert main(["train", "-c", str(MAFENGWO_CONFIG), *[a for s in sets for a in ("--set", s)],
                 "--out", str(out)]) == 0  # fmt: skip
    cfg = load_config(MAFENGWO_CONFIG, sets)
    ds = load_dataset(cfg.data, cfg.split_seed())
    assert ds.from_cache and ds.negatives["test"].shape[0] == len(ds.y["test"]) == 6
    assert ds.fields[1].cardinality == 13  # every catalogue item has an index (12 + unseen)
    run = load_run(out)
    X, lists = ds.X["test"], ds.negatives["test"]
    pos = run.predict(X)
    rows = np.repeat(X, lists.shape[1], axis=0)
    rows[:, 1] = np.maximum(lists.ravel(), 0)
    neg = run.predict(rows).reshape(lists.shape)
    expected = rank_metrics(sampled_ranks(pos, neg, lists >= 0))
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    assert metrics["ndcg@5"] == pytest.approx(expected["ndcg@5"].mean(), abs=1e-12)


def test_leaks_and_unsupported_settings_are_refused(tmp_path, capsys):
    data = write_agree(tmp_path / "g")
    (data / "groupRatingTrain.txt").write_text(
        (data / "groupRatingTrain.txt").read_text() + "0 3\n"
    )  # group 0's held-out item 3 is also a training row
    base = ["train", "-c", str(MAFENGWO_CONFIG), "--set", f"data.path={data}",
            "--set", f"data.cache_dir={tmp_path / 'c'}", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(base) == 2
    assert "1 held-out (group, item) pairs are also rows of groupRatingTrain.txt" in (
        capsys.readouterr().err
    )
    clean = write_agree(tmp_path / "clean")
    base[base.index(f"data.path={data}")] = f"data.path={clean}"
    for setting, message in (
        ("data.split_ratios=[0.8, 0.1, 0.1]", "give [train, valid, 0]"),
        ("data.duplicates=drop", "data.duplicates: drop would remove rows"),
    ):
        assert main([*base, "--set", setting]) == 2
        assert message in capsys.readouterr().err
