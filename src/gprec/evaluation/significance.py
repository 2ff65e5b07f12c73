"""Summaries of multi-seed runs with significance tests, in the shape of the paper's Table II.

Runs that share a seed share the data split, so models are paired by seed:
the paired t-test (per-seed differences) is reported beside Welch's test,
which ignores the pairing and is what the paper reports.

Two kinds of tests. The exploratory table tests the model with the best *test*
mean against every other one: its direction comes from the test split and it
runs many tests, so its paired p-values are also given Holm-adjusted. The
pre-specified test (`baselines` given) picks, on mean *validation* AUC, one
model among the baselines and one among the rest, and tests once, on the test
split, that the candidate beats the baseline: the protocol a paper's claim
needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

# metric -> whether larger is better. The first of a task's metrics is its primary one (what
# models are chosen by on validation and what the pre-specified test is about).
METRICS = {"auc": True, "logloss": False}  # binary (CTR), the default
TASK_METRICS = {
    "binary": METRICS,
    "regression": {"rmse": False, "mae": False},
    "implicit": {"ndcg@10": True, "hr@10": True, "ndcg@5": True, "hr@5": True},
}
LABELS = {
    "auc": "AUC", "logloss": "LogLoss", "rmse": "RMSE", "mae": "MAE",
    "ndcg@10": "NDCG@10", "hr@10": "HR@10", "ndcg@5": "NDCG@5", "hr@5": "HR@5",
}  # fmt: skip


def _label(metric: str) -> str:
    return LABELS.get(metric, metric)


def _model_row(model: str, by_seed: dict, metrics: dict[str, bool]) -> dict:
    """`{model, n, <m>_mean, <m>_std ... , <m>_rank ...}` (ranks filled in later)."""
    row: dict = {"model": model, "n": len(by_seed)}
    for metric in metrics:
        values = np.array([m[metric] for m in by_seed.values()])
        row[f"{metric}_mean"], row[f"{metric}_std"] = float(values.mean()), _std(values)
    for metric in metrics:
        row[f"{metric}_rank"] = 0
    return row


@dataclass
class Test:
    metric: str
    best: str
    other: str
    n_paired: int
    mean_difference: float  # best - other, on the paired seeds
    welch_p: float  # one-sided: best is better
    paired_p: float  # one-sided, per-seed differences (ttest_rel)
    holm_paired_p: float = math.nan  # paired_p, Holm-adjusted over its family of tests


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error); NaNs stay NaN and do not count."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * p))
        adjusted[i] = running
    return adjusted


def _with_holm(tests: list[Test]) -> list[Test]:
    for t, adj in zip(tests, holm([t.paired_p for t in tests]), strict=True):
        t.holm_paired_p = adj
    return tests


def _metric_by_model(
    results: dict[str, dict[int, dict[str, float]]], metric: str
) -> dict[str, dict[int, float]]:
    """`results[model][seed][metric]` -> `{model: {seed: value}}` for one metric."""
    return {m: {s: v[metric] for s, v in by_seed.items()} for m, by_seed in results.items()}


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def one_sided_tests(
    metric: str,
    best: str,
    other: str,
    a: dict[int, float],
    b: dict[int, float],
    larger_better: bool | None = None,
) -> Test:
    """One-sided tests that `a` (best) beats `b` on `metric`; inputs map seed -> value."""
    if larger_better is None:
        larger_better = METRICS[metric]
    alternative = "greater" if larger_better else "less"
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


def summarize(
    results: dict[str, dict[int, dict[str, float]]],
    valid: dict[str, dict[int, float]] | None = None,
    baselines: list[str] | None = None,
    metrics: dict[str, bool] = METRICS,
) -> dict:
    """`results[model][seed] = {"auc": .., "logloss": ..}` (a task's `metrics`) -> per-model
    stats and tests.

    Each metric ranks models by mean; the best is tested against every other
    model, the runner-up first (exploratory; Holm-adjusted per metric). With
    `baselines` (and `valid[model][seed]`, the primary metric on validation), also the
    pre-specified test: see `prespecified`.
    """
    rows = [_model_row(model, by_seed, metrics) for model, by_seed in results.items()]
    tests: list[Test] = []
    for metric, larger_better in metrics.items():
        ordered = sorted(rows, key=lambda r: r[f"{metric}_mean"], reverse=larger_better)
        for rank, row in enumerate(ordered, start=1):
            row[f"{metric}_rank"] = rank
        best = ordered[0]["model"]
        values = _metric_by_model(results, metric)
        tests += _with_holm(
            [
                one_sided_tests(
                    metric, best, r["model"], values[best], values[r["model"]], larger_better
                )
                for r in ordered[1:]
            ]
        )
    summary = {"models": rows, "tests": [asdict(t) for t in tests]}
    if baselines:
        summary["prespecified"] = prespecified(results, valid or {}, baselines, metrics)
    return summary


def prespecified(
    results: dict[str, dict[int, dict[str, float]]],
    valid: dict[str, dict[int, float]],
    baselines: list[str],
    metrics: dict[str, bool] = METRICS,
) -> dict:
    """Choose on validation, test once on test.

    The baseline is the member of `baselines` with the best mean validation value of the
    primary metric (the first of `metrics`: AUC for CTR), the candidate the best of the other
    models; the test is one-sided (candidate better). Every other model is also tested against
    the chosen baseline, with Holm-adjusted paired p-values (that family is exploratory again).
    """
    primary = next(iter(metrics))
    label = _label(primary)
    unknown = [b for b in baselines if b not in results]
    if unknown:
        raise ValueError(f"baseline {unknown[0]!r} is not one of the compared models")
    others = [m for m in results if m not in baselines]
    if not others:
        raise ValueError("every model is a baseline: nothing to test against them")
    missing = [m for m in results if not valid.get(m)]
    if missing:
        raise ValueError(f"no validation {label} for {missing[0]!r}: cannot choose on validation")
    mean_valid = {m: float(np.mean(list(valid[m].values()))) for m in results}
    undefined = [m for m, v in mean_valid.items() if math.isnan(v)]
    if undefined:  # max() over a NaN would choose by list order
        raise ValueError(
            f"validation {label} of {undefined[0]!r} is NaN: cannot choose on validation"
        )

    def by_valid(models: list[str]) -> str:
        best = max if metrics[primary] else min
        return best(models, key=mean_valid.__getitem__)

    base, cand = by_valid(baselines), by_valid(others)
    values = {metric: _metric_by_model(results, metric) for metric in metrics}
    chosen = [
        one_sided_tests(mt, cand, base, values[mt][cand], values[mt][base], hb)
        for mt, hb in metrics.items()
    ]
    each = []
    for metric, hb in metrics.items():
        each += _with_holm(
            [
                one_sided_tests(metric, m, base, values[metric][m], values[metric][base], hb)
                for m in others
            ]
        )
    return {
        "baselines": list(baselines),
        "baseline": base,
        "candidate": cand,
        f"valid_{primary}": {"baseline": mean_valid[base], "candidate": mean_valid[cand]},
        "tests": [asdict(t) for t in chosen],
        "each_vs_baseline": [asdict(t) for t in each],
    }


def _fmt_p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.2e}" if p < 1e-3 else f"{p:.4f}")


def _cell(mean: float, std: float, rank: int) -> str:
    text = f"{mean:.4f} ± {std:.4f}"
    return f"**{text}**" if rank == 1 else (f"_{text}_" if rank == 2 else text)


def summary_metrics(summary: dict) -> dict[str, bool]:
    """The metrics a summary holds, in order (the primary first), with their directions."""
    first = summary["models"][0]
    names = [k[: -len("_mean")] for k in first if k.endswith("_mean")]
    directions = {m: hb for metrics in TASK_METRICS.values() for m, hb in metrics.items()}
    return {m: directions[m] for m in names}


def to_markdown(summary: dict, title: str = "Comparison") -> str:
    metrics = summary_metrics(summary)
    primary, *others = metrics
    P = _label(primary)
    lower = [_label(m) for m in metrics if not metrics[m]]
    lines = [
        f"## {title}",
        "",
        "Mean ± std over seeds (test split); **best**, _runner-up_. p-values are one-sided.",
        "",
        "| model | seeds | " + " | ".join(_label(m) for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for r in summary["models"]:
        cells = [_cell(r[f"{m}_mean"], r[f"{m}_std"], r[f"{m}_rank"]) for m in metrics]
        lines.append(f"| {r['model']} | {r['n']} | " + " | ".join(cells) + " |")
    pre = summary.get("prespecified")
    if pre:
        valid = pre[f"valid_{primary}"]
        beside = ", ".join(
            f"{_label(m)} ({'higher' if metrics[m] else 'lower'} is better)" for m in others
        )
        lines += [
            "",
            f"Pre-specified test: each side chosen on mean validation {P}, tested once on test "
            f"(one-sided: the candidate is better). Baseline **{pre['baseline']}** (valid "
            f"{valid['baseline']:.4f}, chosen among {', '.join(pre['baselines'])}); "
            f"candidate **{pre['candidate']}** (valid {valid['candidate']:.4f}). "
            f"{P} is the primary test; {beside} is reported beside it, "
            "unadjusted. Every other model against this baseline, Holm-adjusted: "
            "`each_vs_baseline` in comparison.json.",
            "",
            "| metric | candidate | baseline | paired seeds | mean diff (candidate - baseline) "
            "| Welch p | paired p |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_test_row(t, holm=False) for t in pre["tests"]]
    lines += [
        "",
        "Exploratory: the best test mean against each other model (the direction comes from "
        "the test split); Holm adjusts the paired p-values per metric."
        + (
            f" {', '.join(lower)}: lower is better, so the best model's difference is negative."
            if lower
            else ""
        ),
        "",
        "| metric | best | vs | paired seeds | mean diff (best - vs) | Welch p | paired p "
        "| Holm paired p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_test_row(t) for t in summary["tests"]]
    return "\n".join(lines) + "\n"


def _test_row(t: dict, holm: bool = True) -> str:
    row = (
        f"| {t['metric']} | {t['best']} | {t['other']} | {t['n_paired']} "
        f"| {t['mean_difference']:+.4f} | {_fmt_p(t['welch_p'])} | {_fmt_p(t['paired_p'])} |"
    )
    return row + f" {_fmt_p(t.get('holm_paired_p', math.nan))} |" if holm else row


def to_csv_rows(summary: dict) -> list[dict]:
    """One row per model, with the tests of the best model against it on each metric."""
    tests = {(t["metric"], t["other"]): t for t in summary["tests"]}
    out = []
    for r in summary["models"]:
        row = dict(r)
        for metric in summary_metrics(summary):
            t = tests.get((metric, r["model"]))
            row[f"{metric}_welch_p_vs_best"] = t["welch_p"] if t else ""
            row[f"{metric}_paired_p_vs_best"] = t["paired_p"] if t else ""
            row[f"{metric}_holm_paired_p_vs_best"] = t.get("holm_paired_p", "") if t else ""
        out.append(row)
    return out
