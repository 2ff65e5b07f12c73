import numpy as np
import pytest
from scipy import stats

from gprec.evaluation.metrics import ctr_metrics
from gprec.evaluation.significance import holm, summarize, to_csv_rows, to_markdown


def test_ctr_metrics_match_hand_values():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = ctr_metrics(y, p)
    assert m["auc"] == pytest.approx(0.75)
    expected = -np.mean([np.log(0.9), np.log(0.6), np.log(0.35), np.log(0.8)])
    assert m["logloss"] == pytest.approx(expected)
    assert np.isnan(ctr_metrics(np.array([1, 1]), np.array([0.2, 0.3]))["auc"])


def test_summary_ranks_and_tests_best_against_runner_up():
    a = {1: 0.80, 2: 0.81, 3: 0.79}
    b = {1: 0.78, 2: 0.80, 3: 0.775}
    c = {1: 0.70, 2: 0.72, 3: 0.69}
    res = {
        m: {s: {"auc": v, "logloss": 1 - v} for s, v in d.items()}
        for m, d in {"a": a, "b": b, "c": c}.items()
    }
    summary = summarize(res)
    rows = {r["model"]: r for r in summary["models"]}
    assert rows["a"]["auc_rank"] == 1 and rows["b"]["auc_rank"] == 2 and rows["c"]["auc_rank"] == 3
    assert rows["a"]["auc_std"] == pytest.approx(np.std([0.80, 0.81, 0.79], ddof=1))
    t = next(t for t in summary["tests"] if t["metric"] == "auc" and t["other"] == "b")
    va, vb = np.array(list(a.values())), np.array(list(b.values()))
    assert t["welch_p"] == pytest.approx(
        stats.ttest_ind(va, vb, equal_var=False, alternative="greater").pvalue
    )
    assert t["paired_p"] == pytest.approx(stats.ttest_rel(va, vb, alternative="greater").pvalue)
    assert t["paired_p"] < t["welch_p"]  # the pairing removes the shared split noise
    ll = next(t for t in summary["tests"] if t["metric"] == "logloss" and t["other"] == "b")
    assert ll["best"] == "a" and ll["mean_difference"] < 0
    md = to_markdown(summary)
    assert "**0.8000 ± 0.0100**" in md and "_0.7850" in md
    assert to_csv_rows(summary)[1]["auc_paired_p_vs_best"] == pytest.approx(t["paired_p"])


def test_holm_matches_hand_computation_and_skips_nan():
    # sorted 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, float("nan"), 0.02]) == pytest.approx(
        [0.04, 0.03, np.nan, 0.04], nan_ok=True
    )
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])


def test_prespecified_test_chooses_both_sides_on_validation_not_test():
    seeds = [1, 2, 3, 4]
    test = {
        "base_a": [0.780, 0.790, 0.785, 0.775],
        "base_b": [0.782, 0.791, 0.788, 0.776],
        "cand_x": [0.791, 0.801, 0.797, 0.785],  # best on test ...
        "cand_y": [0.784, 0.797, 0.788, 0.781],
    }
    valid = {"base_a": 0.79, "base_b": 0.78, "cand_x": 0.70, "cand_y": 0.80}  # ... not on valid
    res = {
        m: {s: {"auc": v, "logloss": 1 - v} for s, v in zip(seeds, vals, strict=True)}
        for m, vals in test.items()
    }
    va = {m: dict.fromkeys(seeds, v) for m, v in valid.items()}
    summary = summarize(res, va, ["base_a", "base_b"])
    pre = summary["prespecified"]
    assert pre["baseline"] == "base_a" and pre["candidate"] == "cand_y"
    auc = next(t for t in pre["tests"] if t["metric"] == "auc")
    expected = stats.ttest_rel(test["cand_y"], test["base_a"], alternative="greater").pvalue
    assert auc["best"] == "cand_y" and auc["other"] == "base_a"
    assert auc["paired_p"] == pytest.approx(expected)
    each = [t for t in pre["each_vs_baseline"] if t["metric"] == "auc"]
    assert {t["best"] for t in each} == {"cand_x", "cand_y"}
    assert all(t["holm_paired_p"] >= t["paired_p"] for t in each)
    assert "Pre-specified test" in to_markdown(summary)
    # the exploratory table still tests the best test mean, Holm-adjusted
    explo = [t for t in summary["tests"] if t["metric"] == "auc"]
    assert {t["best"] for t in explo} == {"cand_x"} and len(explo) == 3
    with pytest.raises(ValueError, match="not one of"):
        summarize(res, va, ["nope"])
    with pytest.raises(ValueError, match="every model is a baseline"):
        summarize(res, va, list(test))


def test_logloss_is_tested_for_lower_and_pairs_only_shared_seeds():
    # "a" has seeds 1-4, "b" only 2-5: the paired test uses 2-4, Welch all of each.
    a = {1: 0.50, 2: 0.52, 3: 0.49, 4: 0.51}
    b = {2: 0.55, 3: 0.53, 4: 0.56, 5: 0.54}
    res = {
        m: {s: {"auc": 1 - v, "logloss": v} for s, v in d.items()}
        for m, d in {"a": a, "b": b}.items()
    }
    ll = next(t for t in summarize(res)["tests"] if t["metric"] == "logloss")
    assert ll["best"] == "a" and ll["n_paired"] == 3
    shared = [2, 3, 4]
    pa, pb = [a[s] for s in shared], [b[s] for s in shared]
    assert ll["paired_p"] == pytest.approx(stats.ttest_rel(pa, pb, alternative="less").pvalue)
    assert ll["welch_p"] == pytest.approx(
        stats.ttest_ind(
            list(a.values()), list(b.values()), equal_var=False, alternative="less"
        ).pvalue
    )
    assert ll["mean_difference"] == pytest.approx(np.mean(np.subtract(pa, pb)))
    assert ll["paired_p"] < 0.05  # a one-sided "greater" test here would give p > 0.95


def test_prespecified_refuses_a_nan_validation_auc():
    res = {
        "a": {1: {"auc": 0.70, "logloss": 0.50}, 2: {"auc": 0.72, "logloss": 0.49}},
        "b": {1: {"auc": 0.69, "logloss": 0.52}, 2: {"auc": 0.73, "logloss": 0.47}},
    }
    valid = {"a": {1: float("nan"), 2: 0.7}, "b": {1: 0.7, 2: 0.7}}
    with pytest.raises(ValueError, match="'a' is NaN"):
        summarize(res, valid, ["a"])
