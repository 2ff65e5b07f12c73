"""`gprec experiment sweep`: one config key over a list of values, every value over the same
seeds, then a table and a line plot with the bare backbone as reference (the paper's
Figure 3: G and tau).

The key is any dotted config key (`model.n_groups`, `model.tau`, `train.lr`,
`model.backbone.dropout`); each value is read as YAML (`3` an int, `0.5` a float, `true` a
bool, `[64, 32]` a list) and set over the config after `--set`. When the config's model wraps
a backbone (GPRec and the other wrappers: `model.backbone`), that backbone trained bare, with
the config's own data and training settings, is the reference line.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gprec.config import RunConfig, parse_config
from gprec.errors import ConfigError
from gprec.evaluation.significance import LABELS, TASK_METRICS
from gprec.experiments.grid import (
    GridPoint,
    against_reference,
    cost_markdown,
    fmt_p,
    new_figure,
    prepare_grid,
    require_matplotlib,
    run_grid,
    run_records,
    save_figure,
    split_top_level,
    with_settings,
    write_tables,
)
from gprec.training.trainer import Logger

REPORT_FILES = ("sweep.md", "sweep.csv", "sweep.json", "sweep.png")


def config_tree(cfg: RunConfig) -> dict[str, Any]:
    """A validated config as nested mappings, every default filled in (the model's too)."""
    return {
        "data": cfg.data.model_dump(mode="json"),
        "model": cfg.model,
        "train": cfg.train.model_dump(mode="json"),
    }


def param_keys(cfg: RunConfig, key: str) -> list[str]:
    """The dotted keys a sweep of `key` sets, or one error line naming it.

    A backbone option named at the model's top level (`model.head_units` of a GPRec config) is
    the backbone's (`model.backbone.head_units`); an option the wrapper shares with its
    backbone (`model.embedding_dim`) is set at both levels, as they must agree.
    """
    parts = [p.strip() for p in key.strip().split(".")]
    if not key.strip() or not all(parts):
        raise ConfigError(f"--param {key!r}: give a dotted config key, e.g. model.n_groups")
    key = ".".join(parts)
    if parts == ["train", "seed"]:
        raise ConfigError("--param train.seed: seeds are what --seeds gives each point")
    tree = config_tree(cfg)
    backbone = tree["model"].get("backbone")
    wrapped = isinstance(backbone, dict) and parts[0] == "model" and len(parts) > 1
    routed = parts
    if wrapped and parts[1] not in tree["model"] and parts[1] in backbone:
        routed = ["model", "backbone", *parts[1:]]
    node: Any = tree
    for depth, part in enumerate(routed):
        if not isinstance(node, dict):
            here = ".".join(routed[:depth])
            raise ConfigError(f"--param {key}: {here} is a value, not a section")
        if part not in node:
            close = difflib.get_close_matches(part, [str(k) for k in node], n=1)
            hint = f"; did you mean {'.'.join([*routed[:depth], close[0]])}?" if close else ""
            if depth == 0:
                where = "the config (its sections: data, model, train)"
            elif routed[0] == "model":
                where = f"model {cfg.model['name']}"
            else:
                where = ".".join(routed[:depth])
            raise ConfigError(f"--param {key}: no such config key in {where}{hint}")
        node = node[part]
    keys = [".".join(routed)]
    shared = wrapped and routed is parts and len(parts) == 2 and parts[1] in backbone
    if shared and parts[1] != "name":
        keys.append(f"model.backbone.{parts[1]}")  # e.g. embedding_dim: both levels agree
    return keys


def parse_values(text: str) -> list[tuple[str, Any]]:
    """`3,7,20` -> [("3", 3), ("7", 7), ("20", 20)]: each value read as YAML, brackets kept
    together (`[64,32],[32,16]` is two lists)."""
    items = split_top_level(text)
    if not items:
        raise ConfigError(f"--values {text!r}: give values separated by commas, e.g. 3,7,20")
    out = []
    for item in items:
        try:
            value = yaml.safe_load(item)
        except yaml.YAMLError:
            raise ConfigError(f"--values: cannot read {item!r} as a YAML value") from None
        out.append((item, value))
    return out


@dataclass
class SweepPlan:
    points: list[GridPoint]  # one per value, then the bare backbone when there is one
    keys: list[str]  # the dotted keys each value is set at
    values: dict[str, Any]  # label -> the value as the validated config holds it (the x axis)
    model: str  # the config's model.name
    backbone: str | None  # its backbone's name, when it wraps one
    reference: str | None  # the backbone point's label


def sweep_plan(
    base_raw: dict[str, Any], source: str, overrides: list[str], key: str, values_text: str
) -> SweepPlan:
    """One grid point per value (label `key=value`), then the bare backbone when the model wraps
    one (the config's validated `model.backbone` section as the model, everything else the
    config's own); every key and value is checked here, before anything trains."""
    cfg = parse_config(base_raw, source, overrides)
    keys = param_keys(cfg, key)
    points, validated = [], {}
    for text, value in parse_values(values_text):
        label, where = f"{key}={text}", f"--param {key}={text}"
        raw = with_settings(base_raw, dict.fromkeys(keys, value))
        node: Any = config_tree(parse_config(raw, where))
        for part in keys[0].split("."):
            node = node[part]
        same = [t for t, v in validated.items() if _same_value(v, node)]
        if same:  # two runs of one config: the table would show it twice
            twice = f"{same[0][len(key) + 1 :]} and {text}"
            raise ConfigError(f"--values gives {key} the same value twice ({twice})")
        validated[label] = node
        points.append(GridPoint(label, raw, where))
    backbone = cfg.model.get("backbone")
    if not isinstance(backbone, dict):
        return SweepPlan(points, keys, validated, cfg.model["name"], None, None)
    reference = f"{backbone['name']} (backbone)"
    bare = copy.deepcopy(base_raw) | {"model": copy.deepcopy(backbone)}
    points.append(GridPoint(reference, bare, f"{source} with its backbone bare"))
    return SweepPlan(points, keys, validated, cfg.model["name"], backbone["name"], reference)


def run_sweep(
    base_raw: dict[str, Any],
    source: str,
    key: str,
    values_text: str,
    seeds: list[int],
    out_dir: Path,
    log: Logger,
    overrides: list[str] | None = None,
    title: str | None = None,
) -> dict:
    """Train every value of `key` and the bare backbone with every seed in `out_dir` (finished
    runs reused), then write sweep.md|csv|json and sweep.png; return the summary."""
    started = time.perf_counter()
    overrides = list(overrides or [])
    require_matplotlib("gprec experiment sweep")
    plan = sweep_plan(base_raw, source, overrides, key, values_text)
    grid = prepare_grid(plan.points, seeds, out_dir, REPORT_FILES, "sweep", what="--values")
    reference = plan.reference
    shown = ", ".join(_value_text(v) for v in plan.values.values())
    log(f"sweeping {key} over {shown} "
        f"({'reference: ' + reference if reference else 'no backbone to refer to'}) "
        f"with seeds {seeds} -> {out_dir}")  # fmt: skip
    runs = run_records(run_grid(grid, log), grid.task)
    metrics = TASK_METRICS[grid.task]
    rows = [
        {"label": row["label"], "value": plan.values.get(row["label"]), **row}
        for row in against_reference(runs, reference, metrics, reference_better=False)
    ]
    summary = {
        "experiment": "sweep",
        "config": source,
        "overrides": overrides,
        "param": key,
        "keys": plan.keys,
        "model": plan.model,
        "backbone": plan.backbone,
        "values": list(plan.values.values()),
        "task": grid.task,
        "metrics": list(metrics),
        "seeds": seeds,
        "reference": reference,
        "rows": rows,
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
    }
    title = title or f"Sweep of {key} ({source})"
    markdown = sweep_markdown(summary, title) + cost_markdown(
        runs, grid.task, "point", summary["wall_seconds"]
    )
    write_tables(out_dir, "sweep", markdown, rows, summary)
    plot_sweep(summary, out_dir / "sweep.png", title)
    return summary


def sweep_markdown(summary: dict, title: str) -> str:
    metrics = {m: TASK_METRICS[summary["task"]][m] for m in summary["metrics"]}
    reference, key = summary["reference"], summary["param"]
    n = len(summary["seeds"])
    text = f"Test split, mean ± std over {n} seeds ({', '.join(map(str, summary['seeds']))}). "
    if reference:
        backbone = summary["backbone"]
        text += (
            f"Reference: the bare backbone, {backbone} (the config's model.backbone trained "
            f"as the model, {summary['model']} removed), with the config's own data and "
            "training settings and the same seeds"
            + (
                f"; it keeps the config's own {key}. "
                if not all(
                    k.startswith("model.") and not k.startswith("model.backbone.")
                    for k in summary["keys"]
                )
                else ". "
            )  # fmt: skip
            + f"Δ: point − {backbone}, per seed (a seed fixes the data split, so the runs are "
            "paired), mean ± std over the seeds; p-values are one-sided, that the point is "
            "better: the paired t-test on the per-seed differences, Holm-adjusted over the "
            "values per metric, and Welch's test beside it."
        )
    else:
        text += "The config's model wraps no backbone, so there is no reference line."
    header = f"| {key} | seeds | " + " | ".join(
        f"{LABELS.get(m, m)}" + (f" | Δ {LABELS.get(m, m)} | paired p | Holm p | Welch p" if reference else "")
        for m in metrics
    ) + " |"  # fmt: skip
    per_metric = 5 if reference else 1
    lines = [f"## {title}", "", text, "", header, "|---|---|" + "---|" * per_metric * len(metrics)]
    for row in summary["rows"]:
        cells = []
        for m in metrics:
            cells.append(f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}")
            if not reference:
                continue
            if row["label"] == reference:
                cells += ["", "", "", ""]
                continue
            cells += [
                f"{row[f'{m}_diff_mean']:+.4f} ± {row[f'{m}_diff_std']:.4f}",
                fmt_p(row[f"{m}_paired_p"]),
                fmt_p(row[f"{m}_holm_paired_p"]),
                fmt_p(row[f"{m}_welch_p"]),
            ]
        shown = row["label"] if row["label"] == reference else _value_text(row["value"])
        lines.append(f"| {shown} | {row['n']} | " + " | ".join(cells) + " |")
    lines += ["", "![sweep](sweep.png)", ""]
    return "\n".join(lines)


def _same_value(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _value_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_sweep(summary: dict, path: Path, title: str) -> None:
    """The paper's Figure 3: each metric against the value, mean ± std over seeds, with the bare
    backbone's mean as a dashed line (its std as a band). Numbers sit at their value (on a log
    axis when they span 20x or more and are positive), anything else at even steps."""
    metrics = {m: TASK_METRICS[summary["task"]][m] for m in summary["metrics"]}
    reference = summary["reference"]
    points = [r for r in summary["rows"] if r["label"] != reference]
    values = [r["value"] for r in points]
    numeric = _numeric(values)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    log_axis = numeric and min(xs) > 0 and max(xs) / min(xs) >= 20
    ref_row = next((r for r in summary["rows"] if r["label"] == reference), None)
    fig, axes = new_figure(len(metrics))
    for ax, (m, larger_better) in zip(axes, metrics.items(), strict=True):
        order = sorted(range(len(xs)), key=xs.__getitem__) if numeric else range(len(xs))
        ax.errorbar(
            [xs[i] for i in order],
            [points[i][f"{m}_mean"] for i in order],
            yerr=[points[i][f"{m}_std"] for i in order],
            marker="o",
            capsize=4,
            color="tab:blue",
            label=summary["model"]
            + (f"({summary['backbone']})" if summary.get("backbone") else ""),
        )
        if ref_row is not None:
            mean, std = ref_row[f"{m}_mean"], ref_row[f"{m}_std"]
            ax.axhline(mean, color="tab:gray", linestyle="--", label=reference)
            if std > 0 and not math.isnan(std):
                ax.axhspan(mean - std, mean + std, color="tab:gray", alpha=0.15, linewidth=0)
        if log_axis:
            ax.set_xscale("log")
        ax.set_xticks(xs, [_value_text(v) for v in values])
        ax.minorticks_off()
        label = LABELS.get(m, m)
        ax.set_xlabel(summary["param"])
        ax.set_ylabel(f"test {label}")
        ax.set_title(f"{label} ({'higher' if larger_better else 'lower'} is better)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}\nmean ± std over {len(summary['seeds'])} seeds", fontsize=9)
    save_figure(fig, path)
