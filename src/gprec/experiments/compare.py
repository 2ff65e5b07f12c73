"""`gprec compare`: every model with every seed, resumable, then a table with tests.

A model is given as a registered name (`mlp`), a name with option overrides
(`mlp[dropout=0.2]`, keys relative to the `model` section unless they start
with `data.` or `train.`), or a YAML file holding config sections to lay over
the base config. Run directories are `OUT/<label>/seed-<seed>`; a run whose
`metrics.json` exists is not repeated, and a half-finished one goes on from its last
epoch, so an interrupted comparison resumes.
The runs themselves are the shared grid runner's (`experiments/grid.py`); this
module turns `--models` into grid points and writes the comparison table.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gprec.config import apply_overrides, merge_sections, read_config
from gprec.errors import ConfigError
from gprec.evaluation.significance import (
    LABELS,
    TASK_METRICS,
    summarize,
    summary_metrics,
    to_csv_rows,
    to_markdown,
)
from gprec.evaluation.slices import REPORT_FILES as SLICE_FILES
from gprec.evaluation.slices import check_sliceable, compare_slices, write_compare_slices
from gprec.experiments.grid import (
    MAX_SEEDS,
    GridPoint,
    parse_seeds,
    prepare_grid,
    run_grid,
    run_records,
    safe_dirname,
    split_top_level,
)
from gprec.io import write_text_atomic
from gprec.training.trainer import Logger

# Moved to grid.py, still importable from here (benchmarks/ and the CLI use these names).
__all__ = [
    "MAX_SEEDS",
    "ModelSpec",
    "parse_model_spec",
    "parse_seeds",
    "run_comparison",
    "safe_dirname",
    "split_top_level",
    "summary_from_runs",
    "write_report",
]

SECTIONS = ("data", "model", "train")


@dataclass
class ModelSpec:
    label: str
    overlay: dict[str, Any]  # config sections laid over the base config
    overrides: list[str]  # dotted key=value strings applied after the overlay


def parse_model_spec(text: str) -> ModelSpec:
    match = re.fullmatch(r"([^\[\]]+?)(?:\[(.*)\])?", text.strip())
    if not match:
        raise ConfigError(
            f"--models: cannot read {text!r}; use name, name[key=value,...] or a .yaml file"
        )
    head, inner = match.group(1).strip(), match.group(2)
    if head.endswith((".yaml", ".yml")):
        overlay = read_config(head)
        unknown = set(overlay) - set(SECTIONS)
        if unknown:
            raise ConfigError(
                f"{head}: unknown section(s) {sorted(unknown)}; expected {list(SECTIONS)}"
            )
        label = Path(head).stem
    else:
        overlay, label = {"model": {"name": head}}, head
    overrides = []
    for item in split_top_level(inner or ""):
        key = item.split("=", 1)[0].strip()
        overrides.append(item if key.split(".")[0] in SECTIONS else f"model.{item}")
    if inner:
        label = f"{label}[{inner}]"
    return ModelSpec(label, overlay, overrides)


def run_comparison(
    base_raw: dict[str, Any],
    specs: list[ModelSpec],
    seeds: list[int],
    out_dir: Path,
    log: Logger,
    title: str = "Comparison",
    overrides: list[str] | None = None,
    baselines: list[str] | None = None,
    slices: dict[str, tuple[int, ...]] | None = None,
) -> dict:
    """Run every spec with every seed in `out_dir`; return the summary.

    `baselines` (labels among `specs`) adds the pre-specified test: the best
    baseline on validation AUC against the best other model on validation AUC.

    `slices` (`{slice: bucket edges}`, `evaluation.slices`) also slices every run's test
    metrics and writes slices.md|csv|json: per bucket each model against the reference (the
    baseline chosen on validation when `baselines` are given, else the first model), paired by
    seed. The data is checked for the fields the slices count on before the first run.

    `overrides` (the command line's `--set`) apply after each model's overlay,
    so `--set data.path=...` reaches a model whose YAML has its own data section;
    a spec's own `[key=value]` options come last.
    """
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--models lists a model twice: {labels}")
    for b in baselines or []:
        if b not in labels:
            raise ConfigError(f"--baseline {b!r} is not one of --models: {', '.join(labels)}")
    if baselines and set(labels) <= set(baselines):
        raise ConfigError("--baseline names every model: nothing is left to test against it")
    started = time.perf_counter()
    points = [
        GridPoint(
            spec.label,
            apply_overrides(
                merge_sections(base_raw, spec.overlay), [*(overrides or []), *spec.overrides]
            ),
            f"model {spec.label}",
            overrides or [],
        )
        for spec in specs
    ]
    grid = prepare_grid(points, seeds, out_dir, REPORT_FILES, "comparison")
    if slices:
        check_grid_sliceable(grid, slices)
    log(f"comparing {', '.join(labels)} over seeds {seeds} -> {out_dir}")
    runs = run_records(run_grid(grid, log), grid.task)
    summary = summary_from_runs(runs, seeds, baselines, grid.task)
    summary["wall_seconds"] = time.perf_counter() - started
    write_report(summary, out_dir, title)
    if slices:
        reference = summary["prespecified"]["baseline"] if baselines else labels[0]
        run_dirs = {label: {s: grid.run_dirs[label, s] for s in seeds} for label in labels}
        sliced = compare_slices(run_dirs, reference, slices, log)
        write_compare_slices(sliced, out_dir, f"{title}: sliced")
    return summary


REPORT_FILES = ("comparison.json", "comparison.md", "comparison.csv", *SLICE_FILES)


def check_grid_sliceable(grid, slices: dict[str, tuple[int, ...]]) -> None:
    """Refuse, before any run, data without the user or item field a slice counts on: each
    distinct data section is encoded once (the cache then serves the runs)."""
    from gprec.data.dataset import load_dataset

    seen = set()
    for cfg in grid.configs.values():
        key = json.dumps(cfg.data.model_dump(mode="json", exclude={"cache_dir"}), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        check_sliceable(load_dataset(cfg.data, cfg.split_seed()).fields, slices)


def summary_from_runs(
    runs: dict[str, dict[str, dict]],
    seeds: list[int],
    baselines: list[str] | None = None,
    task: str | None = None,
) -> dict:
    """The comparison summary from per-run records (`runs[model][seed]`, as in comparison.json).

    Also re-scores a finished comparison, e.g. with baselines it was run without; the task,
    when not given, is the one whose primary metric the runs hold on validation.
    """
    if task is None:
        first = next(iter(next(iter(runs.values())).values()))
        task = next(
            (t for t, m in TASK_METRICS.items() if f"valid_{next(iter(m))}" in first), "binary"
        )
    metrics = TASK_METRICS[task]
    key = f"valid_{next(iter(metrics))}"
    summary = summarize(
        {m: {int(s): r["test"] for s, r in by_seed.items()} for m, by_seed in runs.items()},
        {m: {int(s): r[key] for s, r in by_seed.items()} for m, by_seed in runs.items()},
        baselines,
        metrics,
    )
    summary["seeds"] = seeds
    summary["runs"] = runs
    return summary


def speed_markdown(summary: dict) -> str:
    """Per-model validation value of the primary metric (what a model is chosen by, never the
    test split), training cost averaged over seeds, and the comparison's wall time."""
    primary = next(iter(summary_metrics(summary)))
    lines = [
        "",
        f"| model | valid {LABELS.get(primary, primary)} | epochs run (mean) | seconds / epoch "
        "| samples / second |",
        "|---|---|---|---|---|",
    ]
    for model, runs in summary["runs"].items():
        valid, epochs, seconds, speed = (
            statistics.fmean(r[key] for r in runs.values())
            for key in (f"valid_{primary}", "epochs_run", "seconds_per_epoch", "samples_per_second")
        )
        lines.append(f"| {model} | {valid:.4f} | {epochs:.1f} | {seconds:.2f} | {speed:,.0f} |")
    lines += [
        "",
        f"Wall time of this comparison: {summary['wall_seconds']:.0f} s "
        "(runs finished earlier and reused are not counted).",
    ]
    walls = [r.get("wall_seconds") for runs in summary["runs"].values() for r in runs.values()]
    if walls and None not in walls:
        lines[-1] += (
            f" All {len(walls)} runs, reused ones included, took {sum(walls):.0f} s "
            "(sum of each run's wall time, data loading included)."
        )
    return "\n".join(lines) + "\n"


def write_report(summary: dict, out_dir: Path, title: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "comparison.json", json.dumps(summary, indent=2))
    write_text_atomic(
        out_dir / "comparison.md", to_markdown(summary, title) + speed_markdown(summary)
    )
    rows = to_csv_rows(summary)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / "comparison.csv", buf.getvalue())
