"""Summaries of multi-seed runs with significance tests, in the shape of the paper's Table II.

Runs that share a seed share the data split, so models are paired by seed:
the paired t-test (per-seed differences) is reported beside Welch's test,
which ignores the pairing and is what the paper reports.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

# metric -> whether larger is better
METRICS = {"auc": True, "logloss": False}


@dataclass
class ModelSummary:
    model: str
    n: int
    auc_mean: float
    auc_std: float
    logloss_mean: float
    logloss_std: float
    auc_rank: int = 0
    logloss_rank: int = 0


@dataclass
class Test:
    metric: str
    best: str
    other: str
    n_paired: int
    mean_difference: float  # best - other, on the paired seeds
    welch_p: float  # one-sided: best is better
    paired_p: float  # one-sided, per-seed differences (ttest_rel)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def one_sided_tests(
    metric: str, best: str, other: str, a: dict[int, float], b: dict[int, float]
) -> Test:
    """One-sided tests that `a` (best) beats `b` on `metric`; inputs map seed -> value."""
    alternative = "greater" if METRICS[metric] else "less"
    va, vb = np.array(list(a.values())), np.array(list(b.values()))
    welch = math.nan
    if len(va) > 1 and len(vb) > 1:
        welch = float(stats.ttest_ind(va, vb, equal_var=False, alternative=alternative).pvalue)
    seeds = sorted(set(a) & set(b))
    pa, pb = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    paired = math.nan
    if len(seeds) > 1:
        paired = float(stats.ttest_rel(pa, pb, alternative=alternative).pvalue)
    diff = float(np.mean(pa - pb)) if seeds else math.nan
    return Test(metric, best, other, len(seeds), diff, welch, paired)


def summarize(results: dict[str, dict[int, dict[str, float]]]) -> dict:
    """`results[model][seed] = {"auc": .., "logloss": ..}` -> per-model stats and tests.

    Each metric ranks models by mean; the best is tested against every other
    model, the runner-up first.
    """
    rows = []
    for model, by_seed in results.items():
        auc = np.array([m["auc"] for m in by_seed.values()])
        ll = np.array([m["logloss"] for m in by_seed.values()])
        rows.append(
            ModelSummary(model, len(auc), float(auc.mean()), _std(auc), float(ll.mean()), _std(ll))
        )
    tests: list[Test] = []
    for metric, larger_better in METRICS.items():
        ordered = sorted(rows, key=lambda r: getattr(r, f"{metric}_mean"), reverse=larger_better)
        for rank, row in enumerate(ordered, start=1):
            setattr(row, f"{metric}_rank", rank)
        best = ordered[0].model
        values = {m: {s: v[metric] for s, v in by_seed.items()} for m, by_seed in results.items()}
        tests += [
            one_sided_tests(metric, best, r.model, values[best], values[r.model])
            for r in ordered[1:]
        ]
    return {"models": [asdict(r) for r in rows], "tests": [asdict(t) for t in tests]}


def _fmt_p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.2e}" if p < 1e-3 else f"{p:.4f}")


def _cell(mean: float, std: float, rank: int) -> str:
    text = f"{mean:.4f} ± {std:.4f}"
    return f"**{text}**" if rank == 1 else (f"_{text}_" if rank == 2 else text)


def to_markdown(summary: dict, title: str = "Comparison") -> str:
    lines = [
        f"## {title}",
        "",
        "Mean ± std over seeds; **best**, _runner-up_. p-values are one-sided (best is better).",
        "",
        "| model | seeds | AUC | LogLoss |",
        "|---|---|---|---|",
    ]
    for r in summary["models"]:
        lines.append(
            f"| {r['model']} | {r['n']} | {_cell(r['auc_mean'], r['auc_std'], r['auc_rank'])} "
            f"| {_cell(r['logloss_mean'], r['logloss_std'], r['logloss_rank'])} |"
        )
    lines += [
        "",
        "| metric | best | vs | paired seeds | mean diff | Welch p | paired p |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in summary["tests"]:
        lines.append(
            f"| {t['metric']} | {t['best']} | {t['other']} | {t['n_paired']} | {t['mean_difference']:+.4f} "
            f"| {_fmt_p(t['welch_p'])} | {_fmt_p(t['paired_p'])} |"
        )
    return "\n".join(lines) + "\n"


def to_csv_rows(summary: dict) -> list[dict]:
    """One row per model, with the tests of the best model against it (AUC and LogLoss)."""
    tests = {(t["metric"], t["other"]): t for t in summary["tests"]}
    out = []
    for r in summary["models"]:
        row = dict(r)
        for metric in METRICS:
            t = tests.get((metric, r["model"]))
            row[f"{metric}_welch_p_vs_best"] = t["welch_p"] if t else ""
            row[f"{metric}_paired_p_vs_best"] = t["paired_p"] if t else ""
        out.append(row)
    return out
