"""Sliced evaluation: a finished run's test metrics per bucket of how much the training split
knows about each test row's user (user activity) and item (item popularity).

Does group modeling help users with little history? Overall test AUC cannot say; the same
metrics on the rows of light users can. A run is read back through `load_run` and its data
through its own config (`inspection.runs.run_data`: the same split seed, the cache), so nothing
here encodes anything; the predictions are the loaded model's, and the metrics are the task's
own (`training.tasks`): AUC and LogLoss for CTR, RMSE and MAE for ratings, HR and NDCG for the
implicit task (its ranks per held-out positive, as the run's evaluation ranked them).

A bucket is a range of counts. A row's count is the number of training rows (interactions, any
label) of its user, or of its item. Buckets are given by their upper edges, inclusive: edges
20,50,150 make the buckets 0-20, 21-50, 51-150 and 151+. A user or item unseen in training has
count 0 and so falls in the lowest bucket (an edge 0 first gives the unseen rows a bucket of
their own, "0"). Edges are fixed numbers, not quantiles, so that a bucket means the same counts
for every model, every seed (each seed draws its own split) and every dataset.

Default item buckets 20,100,500: the lowest, items with at most 20 training interactions (as
few as the lightest users' bucket), still holds about 800 of ML-1M's 100k test rows, enough for
an AUC whose seed-to-seed spread a paired test can use (1-10 would hold about 280); the highest
(501+, the blockbusters) holds about half of the test rows.

`slice_run` slices one run; `compare_slices` slices every run of a comparison and tests each
model against a reference model per bucket, paired by seed (a seed fixes the split), with the
grid runner's `against_reference` (one-sided tests of `evaluation.significance`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gprec.data.schema import EncodedField, Role, fields_of_role
from gprec.errors import ConfigError


@dataclass(frozen=True)
class SliceKind:
    name: str  # as --slices names it
    entity: str  # user | item
    title: str
    option: str  # the command-line option of its edges


SLICES = {
    "user_activity": SliceKind("user_activity", "user", "User activity", "--user-buckets"),
    "item_popularity": SliceKind("item_popularity", "item", "Item popularity", "--item-buckets"),
}
DEFAULT_EDGES: dict[str, tuple[int, ...]] = {
    "user_activity": (20, 50, 150),
    "item_popularity": (20, 100, 500),
}
STEM = "slices"  # slices.md|csv|json
REPORT_FILES = tuple(f"{STEM}.{ext}" for ext in ("md", "csv", "json"))
ALL = "all"  # the bucket label of every test row (the run's own test metrics)


# -- settings -------------------------------------------------------------------------------


def parse_slices(text: str, option: str = "--slices") -> list[str]:
    """`user_activity,item_popularity` -> the slice names, each known and listed once."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"{option} {text!r}: name a slice: {', '.join(SLICES)}")
    for name in names:
        if name not in SLICES:
            raise ConfigError(f"{option}: {name!r} is not a slice; choose from {', '.join(SLICES)}")
    repeated = [n for n in SLICES if names.count(n) > 1]
    if repeated:
        raise ConfigError(f"{option} lists {repeated[0]} more than once")
    return names


def parse_edges(text: str, option: str) -> tuple[int, ...]:
    """`20,50,150` -> (20, 50, 150): whole numbers >= 0, strictly increasing (the buckets'
    upper edges, inclusive)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise ConfigError(f"{option} is empty: give upper bucket edges, e.g. 20,50,150")
    edges = []
    for p in parts:
        if not re.fullmatch(r"\d+", p):
            raise ConfigError(
                f"{option} {text!r}: {p!r} is not a whole number >= 0; give upper bucket "
                "edges, e.g. 20,50,150"
            )
        edges.append(int(p))
    for a, b in zip(edges, edges[1:], strict=False):
        if b <= a:
            raise ConfigError(
                f"{option} {text!r}: edges must increase ({a} then {b}); give upper bucket "
                "edges, e.g. 20,50,150"
            )
    return tuple(edges)


def slice_settings(
    slices: str | None, user_buckets: str | None, item_buckets: str | None
) -> dict[str, tuple[int, ...]]:
    """The command line's `--slices` and bucket edges as `{slice: edges}` (defaults filled
    in); edges given for a slice that is not asked for are refused, not ignored."""
    names = parse_slices(slices) if slices is not None else []
    given = {"user_activity": user_buckets, "item_popularity": item_buckets}
    out = {}
    for name, text in given.items():
        option = SLICES[name].option
        if text is not None and name not in names:
            raise ConfigError(
                f"{option} sets the buckets of the {name} slice, which --slices does not ask "
                f"for ({', '.join(names) if names else 'no --slices given'})"
            )
    for name in names:
        text = given[name]
        out[name] = DEFAULT_EDGES[name] if text is None else parse_edges(text, SLICES[name].option)
    return out


# -- buckets ----------------------------------------------------------------------------------


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """(20, 50, 150) -> ['0-20', '21-50', '51-150', '151+']; (0, 20) -> ['0', '1-20', '21+']."""
    labels, low = [], 0
    for e in edges:
        labels.append(str(e) if e == low else f"{low}-{e}")
        low = e + 1
    return [*labels, f"{low}+"]


def bucket_ranges(edges: Sequence[int]) -> list[tuple[int, int | None]]:
    """Each bucket's (lowest, highest) count, inclusive; None: no upper end."""
    lows = [0, *(e + 1 for e in edges)]
    return list(zip(lows, [*edges, None], strict=True))


def assign_buckets(counts: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Bucket index of each count: 0 for counts <= edges[0], k for edges[k-1] < count <=
    edges[k], len(edges) above the last edge."""
    return np.digitize(np.asarray(counts), np.asarray(edges), right=True)


def training_counts(column: np.ndarray, cardinality: int) -> np.ndarray:
    """Training rows per encoded value of one field (`column`: the field's training column).
    Index 0 is the value unseen in training, so its count is 0 whatever the column holds."""
    counts = np.bincount(np.asarray(column, dtype=np.int64), minlength=cardinality)
    counts[0] = 0
    return counts


def slice_column(fields: Sequence[EncodedField], entity: str) -> int:
    """The column of the user's id (`user_id`, else the first personal field) or the item's id
    (`item_id`, else the first item field); one `ConfigError` line when the data has none."""
    from gprec.models.wrapper import user_field_index

    names = [f.name for f in fields]
    if entity == "user":
        if "user_id" in names:
            return user_field_index(
                list(fields), "user_id", "user_activity", "it counts each user's interactions; "
            )
        personal = fields_of_role(list(fields), Role.PERSONAL)
        if personal:
            return personal[0]
        raise ConfigError(
            "--slices user_activity needs the user's id: a field named user_id or one with role "
            f"'personal'; this data's fields: {', '.join(names)}"
        )
    for i, f in enumerate(fields):
        if f.name == "item_id" and f.role == Role.ITEM:
            return i
    items = fields_of_role(list(fields), Role.ITEM)
    if items:
        return items[0]
    raise ConfigError(
        "--slices item_popularity needs the item's id: a field named item_id or one with role "
        f"'item'; this data's fields: {', '.join(names)}"
    )


def check_sliceable(fields: Sequence[EncodedField], slices: Mapping[str, Sequence[int]]) -> None:
    """Refuse, before any training, data without the fields the slices count on."""
    for name in slices:
        slice_column(fields, SLICES[name].entity)


def bucket_table(
    values: np.ndarray,
    counts: np.ndarray,
    edges: Sequence[int],
    measure: Callable[[np.ndarray], dict[str, float]],
    entity: str = "user",
) -> list[dict[str, Any]]:
    """One row per bucket of the cases whose encoded `values` (user or item ids) have training
    `counts[value]`: rows, distinct users (items), rows unseen in training (count 0) and
    `measure`'s metrics of those rows (`measure` takes a boolean mask over the cases)."""
    values = np.asarray(values, dtype=np.int64)
    k = len(edges) + 1
    c = counts[values]
    bucket = assign_buckets(c, edges)
    rows = np.bincount(bucket, minlength=k)
    unseen = np.bincount(bucket[c == 0], minlength=k)
    # A value has one count, so one bucket: distinct values per bucket without pairs. Index 0
    # (every value unseen in training, indistinguishable once encoded) is not one value.
    known = np.unique(values[values > 0])
    distinct = np.bincount(assign_buckets(counts[known], edges), minlength=k)
    out = []
    for b, (label, (low, high)) in enumerate(
        zip(bucket_labels(edges), bucket_ranges(edges), strict=True)
    ):
        out.append(
            {
                "bucket": label,
                "low": low,
                "high": high,
                "rows": int(rows[b]),
                f"{entity}s": int(distinct[b]),
                "unseen_rows": int(unseen[b]),
                **measure(bucket == b),
            }
        )
    return out


# -- one run ---------------------------------------------------------------------------------


def _cases(run, data) -> tuple[np.ndarray, Callable[[np.ndarray], dict[str, float]]]:
    """The rows the task's test metrics average over (every test row; the implicit task: the
    held-out positives) and the metrics of any subset of them, from one scoring pass."""
    from gprec.training.tasks import ImplicitTask, ranking_summary
    from gprec.training.trainer import as_tensors

    X, y = np.asarray(data.X["test"]), np.asarray(data.y["test"])
    batch = run.config.train.eval_batch_size
    task = run.task
    if isinstance(task, ImplicitTask):
        # Fitted as the trainer fits it: every pair of the data is never a negative.
        train, valid, test = (as_tensors(data.X[s], data.y[s]) for s in ("train", "valid", "test"))
        fitted = task.fit(*train, run.fields, (valid[0], test[0]))
        ranks = fitted.ranks(
            lambda rows: run.predict(rows, batch), *test, negatives=data.negatives.get("test")
        )
        return X[y == 1], lambda mask: ranking_summary(ranks[mask])
    pred = run.predict(X, batch)
    return X, lambda mask: task.metrics(y[mask], pred[mask])


def _difference(overall: dict[str, float], recorded: dict[str, float]) -> float:
    """The largest absolute difference between two sets of metrics (NaN and NaN agree)."""
    out = 0.0
    for m, v in overall.items():
        r = float(recorded.get(m, math.nan))
        if math.isnan(v) and math.isnan(r):
            continue
        d = abs(v - r)
        out = max(out, math.inf if math.isnan(d) else d)
    return out


def slice_run(run, slices: Mapping[str, Sequence[int]] | None = None, data=None) -> dict[str, Any]:
    """The test metrics of a loaded run (`training.load.load_run`), overall and per bucket of
    each slice (`{name: edges}`; by default both slices with their default edges). `data`: the
    run's data when the caller already holds it (`inspection.runs.run_data(run)`)."""
    import json

    from gprec.evaluation.significance import TASK_METRICS
    from gprec.inspection.runs import run_data

    slices = dict(DEFAULT_EDGES) if slices is None else dict(slices)
    check_sliceable(run.fields, slices)
    data = run_data(run) if data is None else data
    values, measure = _cases(run, data)
    overall = measure(np.ones(len(values), dtype=bool))
    recorded = None
    metrics_file = Path(run.path) / "metrics.json"
    if metrics_file.is_file():
        recorded = json.loads(metrics_file.read_text()).get("test")
    train = np.asarray(data.X["train"])
    out: dict[str, Any] = {
        "run": str(run.path),
        "model": run.config.model.get("name"),
        "task": run.config.train.task,
        "seed": run.config.train.seed,
        "split_seed": run.config.split_seed(),
        "metrics": list(TASK_METRICS[run.config.train.task]),
        "rows": len(values),
        "overall": overall,
        "recorded": recorded,
        # Bit-equal predictions give equal metrics; 1e-9 leaves room for summation order only.
        "recorded_difference": None if recorded is None else _difference(overall, recorded),
        "slices": {},
    }
    for name, edges in slices.items():
        kind = SLICES[name]
        col = slice_column(run.fields, kind.entity)
        field = run.fields[col]
        counts = training_counts(train[:, col], field.cardinality)
        out["slices"][name] = {
            "field": field.name,
            "entity": kind.entity,
            "edges": list(edges),
            "buckets": bucket_table(values[:, col], counts, edges, measure, kind.entity),
        }
    return out


def matches_recorded(result: dict[str, Any], tol: float = 1e-9) -> bool:
    """Whether a sliced run's overall metrics are its metrics.json test metrics."""
    return result["recorded_difference"] is not None and result["recorded_difference"] <= tol


# -- tables ----------------------------------------------------------------------------------


def _label(metric: str) -> str:
    from gprec.evaluation.significance import LABELS

    return LABELS.get(metric, metric)


def _num(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.4f}"


def _counts_note(rows_word: str) -> str:
    return (
        f"A bucket holds the {rows_word} whose user (item) has that many training interactions "
        "(training rows, any label); edges are inclusive, and a user or item unseen in training "
        "counts 0, so its rows are in the lowest bucket (`unseen` says how many)."
    )


def run_markdown(result: dict[str, Any]) -> str:
    """One run's slices as Markdown: the overall line, then a table per slice."""
    metrics = result["metrics"]
    rows_word = "held-out positives" if result["task"] == "implicit" else "test rows"
    shown = ", ".join(f"{_label(m)} {_num(result['overall'][m])}" for m in metrics)
    if result["recorded"] is None:
        check = "the run has no metrics.json to check them against"
    elif matches_recorded(result):
        check = "equal to the run's metrics.json"
    else:
        check = (
            f"**not** the run's metrics.json (up to {result['recorded_difference']:.1e} apart): "
            "the data, gprec or the device changed since it was trained"
        )
    lines = [
        f"## Sliced test metrics: {result['run']}",
        "",
        f"Model {result['model']}, task {result['task']}, seed {result['seed']}. "
        f"Overall, {result['rows']:,d} {rows_word}: {shown} ({check}).",
    ]
    for name, s in result["slices"].items():
        kind = SLICES[name]
        lines += [
            "",
            f"### {kind.title}: training interactions of the row's {kind.entity} "
            f"(field {s['field']})",
            "",
            f"| bucket | rows | share | {kind.entity}s | unseen | "
            + " | ".join(_label(m) for m in metrics)
            + " |",
            "|---|---|---|---|---|" + "---|" * len(metrics),
        ]
        for b in s["buckets"]:
            share = b["rows"] / result["rows"] if result["rows"] else math.nan
            lines.append(
                f"| {b['bucket']} | {b['rows']:,d} | {share:.1%} | {b[kind.entity + 's']:,d} "
                f"| {b['unseen_rows']:,d} | " + " | ".join(_num(b[m]) for m in metrics) + " |"
            )
    lines += ["", _counts_note(rows_word)]
    return "\n".join(lines) + "\n"


def run_csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per slice and bucket (the overall first, as bucket `all`)."""
    head = {"slice": ALL, "field": "", "bucket": ALL, "low": "", "high": "", "rows": result["rows"]}
    rows = [head | {"users": "", "items": "", "unseen_rows": ""} | result["overall"]]
    for name, s in result["slices"].items():
        for b in s["buckets"]:
            rows.append({"slice": name, "field": s["field"], **b})
    return rows


# -- a comparison's runs ----------------------------------------------------------------------


def compare_slices(
    run_dirs: Mapping[str, Mapping[int, str | Path]],
    reference: str,
    slices: Mapping[str, Sequence[int]],
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Slice every run (`run_dirs[label][seed]`) and test, per slice and bucket, each model
    against `reference`: mean and std over seeds of each metric, the mean paired difference
    (model - reference) and one-sided p-values that the model is better (paired by seed, and
    Welch's beside it; `experiments.grid.against_reference`, Holm over the models)."""
    import json

    from gprec.evaluation.significance import TASK_METRICS
    from gprec.experiments.grid import against_reference
    from gprec.inspection.runs import run_data
    from gprec.training.load import load_run

    if reference not in run_dirs:
        raise ConfigError(f"the reference model {reference!r} is not among the runs")
    seeds = sorted({s for by_seed in run_dirs.values() for s in by_seed})
    per_run: dict[str, dict[str, dict]] = {label: {} for label in run_dirs}
    for seed in seeds:  # one seed's data at a time: every model of a seed shares its split
        cached: dict[str, Any] = {}
        for label, by_seed in run_dirs.items():
            if seed not in by_seed:
                continue
            run = load_run(by_seed[seed])
            key = (
                json.dumps(
                    run.config.data.model_dump(mode="json", exclude={"cache_dir"}), sort_keys=True
                )
                + f"/{run.config.split_seed()}"
            )
            if key not in cached:
                cached[key] = run_data(run)
            if log:
                log(f"slicing {label} seed {seed}")
            per_run[label][str(seed)] = slice_run(run, slices, cached[key])
    tasks = {r["task"] for by_seed in per_run.values() for r in by_seed.values()}
    if len(tasks) != 1:
        raise ConfigError(f"the runs mix train.task {' and '.join(sorted(tasks))}")
    task = tasks.pop()
    metrics = TASK_METRICS[task]
    ref_runs = per_run[reference]

    def tested(name: str | None, b: int = 0) -> list[dict]:
        """Every model against the reference on one bucket (`name` None: every test row)."""
        runs = {
            label: {
                s: {"test": r["overall"] if name is None else r["slices"][name]["buckets"][b]}
                for s, r in by_seed.items()
            }
            for label, by_seed in per_run.items()
        }
        return against_reference(runs, reference, metrics, reference_better=False)

    summary_slices: dict[str, Any] = {}
    for name, edges in slices.items():
        buckets = [
            {
                "bucket": ALL,
                "low": None,
                "high": None,
                "rows_mean": float(np.mean([r["rows"] for r in ref_runs.values()])),
                "models": tested(None),
            }
        ]
        for b, (label, (low, high)) in enumerate(
            zip(bucket_labels(edges), bucket_ranges(edges), strict=True)
        ):
            rows = [r["slices"][name]["buckets"][b]["rows"] for r in ref_runs.values()]
            buckets.append(
                {
                    "bucket": label,
                    "low": low,
                    "high": high,
                    "rows_mean": float(np.mean(rows)),
                    "models": tested(name, b),
                }
            )
        fields = {r["slices"][name]["field"] for by in per_run.values() for r in by.values()}
        summary_slices[name] = {
            "field": ", ".join(sorted(fields)),
            "entity": SLICES[name].entity,
            "edges": list(edges),
            "buckets": buckets,
        }
    return {
        "reference": reference,
        "task": task,
        "metrics": list(metrics),
        "seeds": seeds,
        "alternative": "each model is better than the reference (one-sided; paired by seed)",
        "slices": summary_slices,
        "runs": per_run,
    }


def _p(p: float | None) -> str:
    from gprec.experiments.grid import fmt_p

    return fmt_p(p)


def compare_markdown(summary: dict[str, Any], title: str = "Sliced comparison") -> str:
    """Per slice one table: per bucket and model the mean ± std over seeds of each metric, and
    for every model but the reference its mean paired difference and the one-sided p-values."""
    metrics, ref = summary["metrics"], summary["reference"]
    rows_word = "held-out positives" if summary["task"] == "implicit" else "test rows"
    lines = [
        f"## {title}",
        "",
        f"Test metrics per bucket, mean ± std over seeds {', '.join(map(str, summary['seeds']))}; "
        f"each model against the reference **{ref}**: the mean per-seed difference (model - "
        f"{ref}) and one-sided p-values that the model is better (paired t-test over seeds, "
        "which share a split; Welch's beside it; Holm over the models in "
        f"{STEM}.json|csv). `all` is every test row (the comparison's own numbers).",
    ]
    for name, s in summary["slices"].items():
        kind = SLICES[name]
        head = " | ".join(f"{_label(m)} | Δ{_label(m)} | paired p | Welch p" for m in metrics)
        lines += [
            "",
            f"### {kind.title}: training interactions of the row's {kind.entity} "
            f"(field {s['field']})",
            "",
            f"| bucket | {rows_word} (mean) | model | {head} |",
            "|---|---|---|" + "---|---|---|---|" * len(metrics),
        ]
        for b in s["buckets"]:
            for i, row in enumerate(b["models"]):
                cells = []
                for m in metrics:
                    mean = row[f"{m}_mean"]
                    cells.append(
                        "n/a" if math.isnan(mean) else f"{mean:.4f} ± {_num(row[f'{m}_std'])}"
                    )
                    if row["label"] == ref:
                        cells += ["", "", ""]
                    else:
                        d, sd = row[f"{m}_diff_mean"], row[f"{m}_diff_std"]
                        diff = "n/a" if math.isnan(d) else f"{d:+.4f} ± {_num(sd)}"
                        cells += [diff, _p(row[f"{m}_paired_p"]), _p(row[f"{m}_welch_p"])]
                rows_cell = f"{b['rows_mean']:,.0f}" if i == 0 else ""
                bucket_cell = b["bucket"] if i == 0 else ""
                lines.append(
                    f"| {bucket_cell} | {rows_cell} | {row['label']} | " + " | ".join(cells) + " |"
                )
    lines += ["", _counts_note(rows_word)]
    return "\n".join(lines) + "\n"


def compare_csv_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per slice, bucket and model."""
    out = []
    for name, s in summary["slices"].items():
        for b in s["buckets"]:
            for row in b["models"]:
                out.append(
                    {
                        "slice": name,
                        "bucket": b["bucket"],
                        "low": b["low"],
                        "high": b["high"],
                        "rows_mean": b["rows_mean"],
                        "reference": summary["reference"],
                        **row,
                    }
                )
    return out


def write_run_slices(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from gprec.experiments.grid import write_tables

    write_tables(out_dir, STEM, run_markdown(result), run_csv_rows(result), result)
    return [out_dir / f for f in REPORT_FILES]


def write_compare_slices(summary: dict[str, Any], out_dir: Path, title: str) -> list[Path]:
    from gprec.experiments.grid import write_tables

    write_tables(
        out_dir, STEM, compare_markdown(summary, title), compare_csv_rows(summary), summary
    )
    return [out_dir / f for f in REPORT_FILES]
