import numpy as np
import pytest
from scipy import stats

from gprec.evaluation.metrics import ctr_metrics
from gprec.evaluation.significance import summarize, to_csv_rows, to_markdown


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
