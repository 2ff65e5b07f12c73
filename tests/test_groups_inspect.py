"""Group inspection (gprec.inspection, `gprec groups similarity|report`): membership from user
fields alone, the similarity, lift and recovery computations against hand computations, both
commands end to end on tiny runs trained here, and every error as one line."""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from gprec.cli import groups_report, groups_similarity
from gprec.cli.main import main
from gprec.errors import GprecError
from gprec.inspection import recovery as rec
from gprec.inspection import report as rep
from gprec.inspection import similarity as sim
from gprec.inspection.runs import load_gprec_run, run_data, training_users, untrained_model

SYNTH = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "mlp.yaml"
TINY = (
    "data.synthetic.n_users=80", "data.synthetic.n_items=40", "data.synthetic.n_interactions=1200",
    "data.synthetic.n_groups=3", "train.max_epochs=2", "train.progress=false", "train.batch_size=256",
)  # fmt: skip


def _train(root: Path, name: str, *sets: str) -> Path:
    out = root / name
    args = ["train", "-c", str(SYNTH), "--set", f"data.cache_dir={root / 'cache'}"]
    for s in (*TINY, *sets):
        args += ["--set", s]
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups-inspect")
    return {
        "dual": _train(root, "dual", "model.name=gprec", "model.n_groups=4"),
        "single": _train(
            root, "single", "model.name=gprec", "model.n_groups=3", "model.group_embedding=single"
        ),
        "mlp": _train(root, "mlp", "train.max_epochs=1"),
    }


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`gprec groups ACTION ...` through the actions' own parsers, with main's error handling."""
    parser = argparse.ArgumentParser(prog="gprec groups")
    sub = parser.add_subparsers(dest="action", required=True)
    groups_similarity.add_parser(sub)
    groups_report.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except GprecError as e:
        print(f"gprec: error: {e}", file=__import__("sys").stderr)
        code = 2
    out, err = capsys.readouterr()
    return code, out, err


# -- membership from user fields alone ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["dual", "single"])
def test_user_fields_alone_give_the_masks_of_full_rows(runs, kind):
    run = load_gprec_run(runs[kind], "test")
    model, X = run.model, torch.as_tensor(run_data(run).X["test"][:300])
    cols = model.user_columns
    assert [run.fields[c].role.value for c in cols] == ["personal"] + ["user"] * (len(cols) - 1)
    full = model.group_masks(X)
    assert torch.equal(model.user_group_masks(X[:, cols]), full)
    # item fields are never read: scrambling them changes nothing
    scrambled = X.clone()
    item = [i for i in range(X.shape[1]) if i not in cols]
    scrambled[:, item] = 0
    assert torch.equal(model.group_masks(scrambled), full)
    model.options.dedup_users = False  # the classifier row by row gives the same numbers
    try:
        assert torch.allclose(model.user_group_masks(X[:, cols]), full, atol=1e-6)
    finally:
        model.options.dedup_users = True
    with pytest.raises(ValueError, match=r"takes \(batch, 5\) user columns \(user_id, age"):
        model.user_group_masks(X)


# -- similarity ------------------------------------------------------------------------------


def test_similarity_summary_against_a_hand_computation():
    P = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    N = np.array([[0.0, 1.0], [0.0, -1.0], [-1.0, -1.0]])
    r = 1 / math.sqrt(2)
    # cos(p_i, n_i): 0, -1, -1
    s = sim.summary(P, N)
    assert s["mean_cos_p_n"] == pytest.approx(-2 / 3)
    # among p: (p0,p1) 0, (p0,p2) r, (p1,p2) r; each pair twice off the diagonal
    assert s["p"]["mean_off_diagonal"] == pytest.approx(2 * r / 3)
    assert s["p"]["max_off_diagonal"] == pytest.approx(r)
    # among n: (n0,n1) -1, (n0,n2) -r, (n1,n2) r
    assert s["n"]["mean_off_diagonal"] == pytest.approx(-1 / 3)
    assert s["n"]["max_off_diagonal"] == pytest.approx(r)
    study = sim.similarity_study(P, N, [0, 2])
    assert study["labels"] == ["p0", "p2", "n0", "n2"]
    expected = [[1, r, 0, -r], [r, 1, r, -1], [0, r, 1, -r], [-r, -1, -r, 1]]
    assert np.allclose(study["matrix"], expected)
    assert study["chosen_groups"]["mean_cos_p_n"] == pytest.approx(-0.5)
    single = sim.similarity_study(P, None, [1])
    assert single["labels"] == ["p1"] and single["all_groups"]["mean_cos_p_n"] is None
    assert single["chosen_groups"]["p"]["max_off_diagonal"] is None  # one group: no pairs
    assert sim.cosine_matrix(np.zeros((1, 3)))[0, 0] == 0.0


def test_groups_are_drawn_seeded_or_given():
    a = sim.choose_groups(60, 5, seed=1)
    assert a == sim.choose_groups(60, 5, seed=1) and len(set(a)) == 5 and a == sorted(a)
    assert sim.choose_groups(60, 5, seed=2) != a
    assert sim.choose_groups(4) == [0, 1, 2, 3]  # default: 8 or all when fewer
    assert sim.choose_groups(10, ids=[9, 0]) == [0, 9]


def test_similarity_command_writes_its_files(runs, tmp_path, capsys):
    out = tmp_path / "sim"
    code, stdout, _ = cli(
        ["similarity", str(runs["dual"]), "--ids", "3,1", "--out", str(out)], capsys
    )
    assert code == 0 and "| all (4) |" in stdout
    assert (out / "similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "similarity.json").read_text())
    assert result["chosen"] == [1, 3] and result["labels"] == ["p1", "p3", "n1", "n3"]
    P, N = load_gprec_run(runs["dual"], "test").model.group_embeddings()
    P, N = P.double().numpy(), N.double().numpy()
    hand = np.mean([P[i] @ N[i] / np.linalg.norm(P[i]) / np.linalg.norm(N[i]) for i in range(4)])
    assert result["all_groups"]["mean_cos_p_n"] == pytest.approx(hand)
    assert "mean cos(p_i, n_i)" in (out / "similarity.md").read_text()
    # default: random groups (all 4 here), written beside the run
    code, _, _ = cli(["similarity", str(runs["dual"]), "--groups", "2", "--seed", "3"], capsys)
    default = runs["dual"].with_name("dual-groups")
    assert code == 0 and len(json.loads((default / "similarity.json").read_text())["chosen"]) == 2


def test_similarity_of_single_group_embeddings_shows_p_only(runs, tmp_path, capsys):
    out = tmp_path / "sim1"
    code, _, err = cli(["similarity", str(runs["single"]), "--out", str(out)], capsys)
    assert code == 0 and "single group embeddings (no n_i)" in err
    result = json.loads((out / "similarity.json").read_text())
    assert result["labels"] == ["p0", "p1", "p2"] and not result["dual"]
    assert "no n_i" in (out / "similarity.md").read_text()


# -- lift and membership ---------------------------------------------------------------------


def test_lift_against_a_hand_computation():
    # 6 users, attribute values a=1, b=2 (index 0 unused); group 0 = users 0,1,2, group 1 = 3,4
    values = np.array([1, 1, 2, 2, 2, 1])
    member = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 0]], dtype=bool)
    t = rep.lift(member, rep.one_hot(values, 3))
    # P(a) = 3/6, P(b) = 3/6; group 0: a 2/3, b 1/3; group 1: a 0, b 2/2
    assert t["count"][:, 1:].tolist() == [[2, 1], [0, 2]]
    assert t["in_group"].tolist() == [3, 2]
    assert np.allclose(t["lift"][:, 1:], [[(2 / 3) / 0.5, (1 / 3) / 0.5], [0.0, 2.0]])
    assert np.isnan(t["lift"][0, 0])  # a value nobody has
    top = rep.top_values(t, ["-", "a", "b"], top=5, min_count=2)
    assert top[0] == [
        {"value": "a", "count": 2, "share_in_group": 2 / 3, "share_overall": 0.5, "lift": 4 / 3}
    ]
    assert [e["value"] for e in top[1]] == ["b"]
    assert rep.top_values(t, ["-", "a", "b"], top=5, min_count=3) == [[], []]  # too few
    # items: per user counts of liked values (rows), user 0 liked item 1 twice
    rows_user, items = np.array([0, 0, 3, 5]), np.array([1, 1, 2, 2])
    t = rep.lift(member, rep.one_hot(items, 3, rows_user, 6))
    # all positives: item1 2/4, item2 2/4; group 0's: item1 2/2 -> lift 2; group 1's: item2 1/1
    assert t["in_group"].tolist() == [2, 1]
    assert np.allclose(t["lift"][:, 1:], [[2.0, 0.0], [0.0, 2.0]])


def test_membership_rules():
    masks = np.array([[0.9, 0.6, 0.1], [0.2, 0.4, 0.3]])
    assert rep.memberships(masks, "threshold").tolist() == [[1, 1, 0], [0, 0, 0]]
    assert rep.memberships(masks, "threshold", 0.7).tolist() == [[1, 0, 0], [0, 0, 0]]
    assert rep.memberships(masks, "argmax").tolist() == [[1, 0, 0], [0, 1, 0]]
    s = rep.membership_summary(rep.memberships(masks, "threshold"), near_all=0.5)
    assert s["mean_groups_per_user"] == 1.0 and s["groups_per_user"] == {"0": 1, "2": 1}
    assert s["empty_groups"] == [2] and s["near_all_groups"] == [0, 1]
    assert s["share_in_no_group"] == 0.5


# -- recovery --------------------------------------------------------------------------------


def _ami_by_hand(a: list, b: list) -> float:
    """AMI with the arithmetic mean (scikit-learn's default), from its definition."""
    n = len(a)
    ca, cb, cab = Counter(a), Counter(b), Counter(zip(a, b, strict=True))
    h = lambda c: -sum(v / n * math.log(v / n) for v in c.values())  # noqa: E731
    mi = sum(v / n * math.log(n * v / (ca[x] * cb[y])) for (x, y), v in cab.items())
    emi = 0.0  # expected MI under random labellings with these cluster sizes (hypergeometric)
    for ai in ca.values():
        for bj in cb.values():
            for k in range(max(1, ai + bj - n), min(ai, bj) + 1):
                p = math.comb(bj, k) * math.comb(n - bj, ai - k) / math.comb(n, ai)
                emi += k / n * math.log(n * k / (ai * bj)) * p
    return (mi - emi) / ((h(ca) + h(cb)) / 2 - emi)


def test_recovery_against_hand_computations():
    planted = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 1]], dtype=bool)
    learned = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], bool)
    # planted 0 = {0,1,2}: vs learned 0 {0,1} 2/3, learned 1 {2,3,4} 1/5; best 2/3
    # planted 1 = {2,3,4,5}: vs learned 1 {2,3,4} 3/4, learned 2 {5} 1/4; best 3/4
    assert np.allclose(rec.jaccard_matrix(planted, learned), [[2 / 3, 1 / 5, 0], [0, 3 / 4, 1 / 4]])
    r = rec.recovery(planted, learned)
    assert r["best_match_jaccard"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert [(p["planted"], p["learned"]) for p in r["per_planted"]] == [(0, 0), (1, 1)]
    # sets as clusters: planted {0},{0},{0,1},{1},{1},{1}; learned {0},{0},{1},{1},{1},{2}
    hand = _ami_by_hand(["0", "0", "01", "1", "1", "1"], [0, 0, 1, 1, 1, 2])
    assert r["ami"] == pytest.approx(hand, abs=1e-9)
    assert rec.set_labels(planted).tolist() in ([0, 0, 1, 2, 2, 2], [1, 1, 2, 0, 0, 0])
    same = rec.recovery(planted, planted[:, ::-1])
    assert same["ami"] == pytest.approx(1.0) and same["best_match_jaccard"] == 1.0
    everyone = rec.recovery(planted, np.ones((6, 1), dtype=bool))
    assert everyone["ami"] == pytest.approx(0.0) and everyone["distinct_sets"] == 1
    assert r["distinct_sets"] == 3
    assert rec.jaccard_matrix(np.zeros((3, 1), bool), np.zeros((3, 1), bool)).tolist() == [[0.0]]
    shuffled = rec.shuffled(learned, seed=0)
    assert sorted(map(tuple, shuffled.tolist())) == sorted(map(tuple, learned.tolist()))


def test_planted_groups_are_those_of_the_generator(runs):
    from gprec.data.synth import SynthConfig, generate_with_truth

    run = load_gprec_run(runs["dual"], "test")
    raw, truth = generate_with_truth(SynthConfig(**run.config.data.synthetic.model_dump()))
    ids = raw.table["user_id"].to_list()
    planted = rec.planted_membership(run.config, [ids[5], ids[0]])
    assert planted.tolist() == truth.membership[[truth.user[5], truth.user[0]]].tolist()
    with pytest.raises(GprecError, match="not one of the synthetic generator's users"):
        rec.planted_membership(run.config, ["nobody"])


def test_the_untrained_model_is_the_runs_initialisation(runs):
    run = load_gprec_run(runs["dual"], "test")
    state = torch.random.get_rng_state()
    a, b = untrained_model(run), untrained_model(run)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.pos, run.model.pos)  # trained weights differ from the initial ones


# -- report ----------------------------------------------------------------------------------


def test_report_command_writes_its_files(runs, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["report", str(runs["dual"]), "--out", str(out), "--top", "2", "--min-count", "2"]
    code, stdout, _ = cli(argv, capsys)
    assert code == 0 and "recovery of 3 planted groups, trained: AMI" in stdout
    report = json.loads((out / "report.json").read_text())
    run = load_gprec_run(runs["dual"], "test")
    users = training_users(run, run_data(run))
    assert report["summary"]["users"] == len(users) == len(np.unique(users.X[:, 3]))
    assert report["membership"] == {"rule": "threshold", "threshold": 0.5, "default": True}
    assert len(report["groups"]) == 4
    sizes = [g["users"] for g in report["groups"]]
    member = rep.memberships(rep.user_masks(run.model, users.values), "threshold")
    assert sizes == member.sum(0).tolist()
    assert report["summary"]["mean_groups_per_user"] == pytest.approx(member.sum(1).mean())
    for g in report["groups"]:
        assert set(g["user_attributes"]) == {"age", "gender", "occupation", "region"}
        assert set(g["liked"]) == {"item_id", "genre", "year"}
        for entries in (*g["user_attributes"].values(), *g["liked"].values()):
            assert len(entries) <= 2 and all(e["count"] >= 2 and e["lift"] > 1 for e in entries)
    r = report["recovery"]
    assert set(r) >= {"trained", "untrained", "shuffled"} and r["planted_groups"] == 3
    for key in ("trained", "untrained", "shuffled"):
        assert -1 <= r[key]["ami"] <= 1 and 0 <= r[key]["best_match_jaccard"] <= 1
    md = (out / "report.md").read_text()
    assert "## Recovery of the 3 planted groups" in md and "| group | users |" in md
    code, _, _ = cli(["report", str(runs["single"]), "--out", str(out)], capsys)
    report = json.loads((out / "report.json").read_text())
    assert code == 0 and report["membership"]["rule"] == "argmax"
    assert report["summary"]["mean_groups_per_user"] == 1.0
    code, _, _ = cli(
        ["report", str(runs["dual"]), "--out", str(out), "--membership", "argmax"], capsys
    )
    assert (
        code == 0
        and json.loads((out / "report.json").read_text())["membership"]["rule"] == "argmax"
    )


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["similarity", "{mlp}"], "a 'mlp' run, not GPRec: groups similarity needs"),
        (["report", "{mlp}"], "a 'mlp' run, not GPRec: groups report needs"),
        (["similarity", "{missing}"], "no such run directory"),
        (["report", "{missing}"], "no such run directory"),
        (["similarity", "{dual}", "--ids", "1,9"], "--ids: no group 9 in this run (its groups are 0..3)"),
        (["similarity", "{dual}", "--ids", "1,x"], "--ids: 'x' is not a group number"),
        (["similarity", "{dual}", "--ids", "1,1"], "--ids: a group is named twice"),
        (["similarity", "{dual}", "--ids", ","], "--ids: give at least one group number"),
        (["similarity", "{dual}", "--groups", "5"], "--groups 5: must be between 1 and the run's 4"),
        (["similarity", "{dual}", "--out", "{dual}"], "is the run directory"),
        (["report", "{dual}", "--out", "{dual}"], "is the run directory"),
        (["report", "{dual}", "--top", "0"], "--top 0: must be at least 1"),
        (["report", "{dual}", "--threshold", "1.5"], "--threshold 1.5: must be strictly between"),
    ],
)  # fmt: skip
def test_errors_are_one_line(runs, tmp_path, capsys, argv, message):
    paths = {k: str(v) for k, v in runs.items()} | {"missing": str(tmp_path / "nope")}
    argv = [a.format(**paths) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code, stdout, err = cli(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("gprec: error:")
    assert not (tmp_path / "out").exists()


def test_both_actions_are_registered_on_gprec_groups(tmp_path, capsys):
    for action in ("similarity", "report"):
        assert main(["groups", action, str(tmp_path / "nope")]) == 2
        assert "no such run directory" in capsys.readouterr().err
