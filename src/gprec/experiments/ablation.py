"""`gprec experiment ablation`: a GPRec config and its ablations GPRec-1..5 (the paper's
Section IV-C), every one over the same seeds, then a table and the paper's Figure 2.

The variants are defined once, here, as model options set over *any* GPRec config (the
dataset, backbone and strategy are the config's): what each removes follows the GPRec
paper and docs/gprec.md section 7. `configs/ml-100k/ablations/*.yaml` hold the same
settings as overlays for `gprec compare` (a test keeps the two equal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gprec.config import dump_config, parse_config
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
    with_settings,
    write_tables,
)
from gprec.training.trainer import Logger


@dataclass(frozen=True)
class Variant:
    label: str
    removes: str
    settings: dict[str, Any]  # GPRec model options, set over the full model's


FULL = "GPRec"
VARIANTS = (
    Variant(
        "GPRec-1",
        "dual group embeddings and Gumbel masks (a softmax over single embeddings, as DGPM; "
        "so no L_con)",
        {"group_embedding": "single"},
    ),
    Variant("GPRec-2", "the individual representation r_P (and so L_O)", {"individual": False}),
    Variant("GPRec-3", "the group loss L_G", {"lambda_group": 0.0}),
    Variant("GPRec-4", "the contrastive loss L_con", {"lambda_contrastive": 0.0}),
    Variant("GPRec-5", "the orthogonal loss L_O", {"lambda_orthogonal": 0.0}),
)
REPORT_FILES = ("ablation.md", "ablation.csv", "ablation.json", "ablation.png")


def settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(
        f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()
    )


def ablation_points(base_raw: dict[str, Any], source: str, overrides: list[str]) -> list[GridPoint]:
    """The full model of `base_raw` and its five variants, each checked: the config must be a
    GPRec one, and no variant may equal the full model (a config that already switches a
    component off has nothing left to ablate there)."""
    cfg = parse_config(base_raw, source, overrides)
    if cfg.model["name"] != "gprec":
        raise ConfigError(
            f"{source}: model.name is {cfg.model['name']}; the ablation takes a GPRec config "
            "(model.name: gprec, e.g. configs/ml-100k/gprec-dynamic.yaml)"
        )
    full = dump_config(cfg)
    points = [GridPoint(FULL, base_raw, source, overrides)]
    for v in VARIANTS:
        raw = with_settings(base_raw, {f"model.{k}": value for k, value in v.settings.items()})
        where = f"{source} as {v.label} ({settings_text(v.settings)})"
        if dump_config(parse_config(raw, where, overrides)) == full:
            raise ConfigError(
                f"{v.label} ({settings_text(v.settings)}) equals the full model of {source}, "
                f"which already goes without {v.removes}: ablate a config with every component on"
            )
        points.append(GridPoint(v.label, raw, where, overrides))
    return points


def run_ablation(
    base_raw: dict[str, Any],
    source: str,
    seeds: list[int],
    out_dir: Path,
    log: Logger,
    overrides: list[str] | None = None,
    title: str | None = None,
) -> dict:
    """Train the full model and GPRec-1..5 with every seed in `out_dir` (finished runs reused),
    then write ablation.md|csv|json and ablation.png; return the summary."""
    started = time.perf_counter()
    overrides = list(overrides or [])
    require_matplotlib("gprec experiment ablation")
    points = ablation_points(base_raw, source, overrides)
    grid = prepare_grid(points, seeds, out_dir, REPORT_FILES, "ablation", what="the ablation")
    log(f"ablating {source}: {', '.join(grid.labels)} over seeds {seeds} -> {out_dir}")
    runs = run_records(run_grid(grid, log), grid.task)
    metrics = TASK_METRICS[grid.task]
    by_label = {v.label: v for v in VARIANTS}
    rows = []
    for row in against_reference(runs, FULL, metrics):
        v = by_label.get(row["label"])
        rows.append(
            {
                "label": row["label"],
                "removes": v.removes if v else "",
                "settings": settings_text(v.settings) if v else "",
                **row,
            }
        )
    summary = {
        "experiment": "ablation",
        "config": source,
        "overrides": overrides,
        "task": grid.task,
        "metrics": list(metrics),
        "seeds": seeds,
        "reference": FULL,
        "rows": rows,
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
    }
    title = title or f"Ablation of GPRec ({source})"
    markdown = ablation_markdown(summary, title) + cost_markdown(
        runs, grid.task, "model", summary["wall_seconds"]
    )
    write_tables(out_dir, "ablation", markdown, rows, summary)
    plot_ablation(summary, out_dir / "ablation.png", title)
    return summary


def ablation_markdown(summary: dict, title: str) -> str:
    metrics = {m: TASK_METRICS[summary["task"]][m] for m in summary["metrics"]}
    lower = [LABELS.get(m, m) for m, larger in metrics.items() if not larger]
    n = len(summary["seeds"])
    lines = [
        f"## {title}",
        "",
        f"Test split, mean ± std over {n} seeds ({', '.join(map(str, summary['seeds']))}). "
        "Δ: variant − full model, per seed (a seed fixes the data split, so the runs are "
        "paired), mean ± std over the seeds. p-values are one-sided, that the full model is "
        "better: the paired t-test on the per-seed differences, Holm-adjusted over the five "
        "variants per metric, and Welch's test (what the paper reports) beside it."
        + (
            f" {', '.join(lower)}: lower is better, so a positive Δ is a worse variant."
            if lower
            else ""
        ),
        "",
        "| model | removes | seeds | "
        + " | ".join(
            f"{LABELS.get(m, m)} | Δ {LABELS.get(m, m)} | paired p | Holm p | Welch p"
            for m in metrics
        )
        + " |",
        "|---|---|---|" + "---|---|---|---|---|" * len(metrics),
    ]
    for row in summary["rows"]:
        cells = []
        for m in metrics:
            cells.append(f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}")
            if row["label"] == summary["reference"]:
                cells += ["", "", "", ""]
                continue
            cells += [
                f"{row[f'{m}_diff_mean']:+.4f} ± {row[f'{m}_diff_std']:.4f}",
                fmt_p(row[f"{m}_paired_p"]),
                fmt_p(row[f"{m}_holm_paired_p"]),
                fmt_p(row[f"{m}_welch_p"]),
            ]
        label = row["label"] + (" (full)" if row["label"] == summary["reference"] else "")
        removes = row["removes"] or "nothing"
        lines.append(f"| {label} | {removes} | {row['n']} | " + " | ".join(cells) + " |")
    lines += ["", "![ablation](ablation.png)", ""]
    return "\n".join(lines)


def plot_ablation(summary: dict, path: Path, title: str) -> None:
    """The paper's Figure 2: each variant's difference to the full model, one panel per metric,
    bars at the mean per-seed difference with the std over seeds as error bars."""
    metrics = {m: TASK_METRICS[summary["task"]][m] for m in summary["metrics"]}
    variants = [r for r in summary["rows"] if r["label"] != summary["reference"]]
    fig, axes = new_figure(len(metrics))
    xs = list(range(len(variants)))
    for ax, (m, larger_better) in zip(axes, metrics.items(), strict=True):
        means = [r[f"{m}_diff_mean"] for r in variants]
        stds = [r[f"{m}_diff_std"] for r in variants]
        worse = [(d < 0) if larger_better else (d > 0) for d in means]
        colors = ["tab:red" if w else "tab:blue" for w in worse]
        ax.bar(xs, means, yerr=stds, color=colors, capsize=4, alpha=0.85)
        ax.axhline(0.0, color="black", linewidth=0.8)
        for x, mean, std, row in zip(xs, means, stds, variants, strict=True):
            top = mean + std if mean >= 0 else mean - std
            ax.annotate(
                f"p={fmt_p(row[f'{m}_paired_p'])}",
                (x, top),
                textcoords="offset points",
                xytext=(0, 3 if mean >= 0 else -10),
                ha="center",
                fontsize=7,
            )
        ax.set_xticks(xs, [r["label"] for r in variants])
        label = LABELS.get(m, m)
        ax.set_ylabel(f"Δ {label} (variant − {summary['reference']})")
        ax.set_title(f"{label} ({'higher' if larger_better else 'lower'} is better)")
        ax.margins(y=0.15)
    fig.suptitle(
        f"{title}\nmean ± std of the paired difference over {len(summary['seeds'])} seeds; "
        "red: worse than the full model; p: paired, one-sided",
        fontsize=9,
    )
    save_figure(fig, path)
