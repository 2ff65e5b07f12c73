"""The grid runner that `gprec compare`, `gprec experiment ablation` and `sweep` share.

An experiment is a list of labelled points, each a complete raw config, times a list of
seeds. Every (point, seed) is one run directory, `OUT/<label>/seed-<seed>`. Every config,
the device and every run directory are checked before the first run, so a typo or a
clash fails in seconds, not hours in; a run whose `metrics.json` exists is reused, not
repeated, so an interrupted experiment resumes; an unfinished run of the same config goes on
from its last epoch's `resume.pt` (`training.run.run_training`: the metrics of an
uninterrupted run), and a run directory holding another config is refused
(`training.run_dir.claim_run_dir`). The commands differ only in the points they build
and the report they write.

Also here: the per-seed records the reports keep (`run_records`), and the paired tests of
every point against one reference point (the full model of an ablation, the bare backbone
of a sweep) that both of those reports show.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gprec.config import SEED_MAX, RunConfig, apply_overrides, dump_config, parse_config
from gprec.errors import ConfigError
from gprec.evaluation.significance import LABELS, TASK_METRICS, holm, one_sided_tests
from gprec.io import write_bytes_atomic, write_text_atomic
from gprec.training.run import resolve_device, run_training
from gprec.training.run_dir import claim_run_dir, run_state
from gprec.training.trainer import Logger


@dataclass
class GridPoint:
    """One labelled config of an experiment; it runs once per seed."""

    label: str
    raw: dict[str, Any]  # the complete raw config (train.seed is set per run)
    source: str  # how a config error names this point, e.g. `model mlp`
    overrides: list[str] = field(default_factory=list)  # the --set items `raw` holds (blame)


@dataclass
class Grid:
    """A checked experiment: every run's config and directory, in run order."""

    labels: list[str]
    seeds: list[int]
    configs: dict[tuple[str, int], RunConfig]  # (label, seed) -> config
    run_dirs: dict[tuple[str, int], Path]
    task: str
    out_dir: Path


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets, so `mlp[units=[64,32]],dcn` gives two parts."""
    parts, depth, current = [], 0, []
    for ch in text:
        depth += ch in "[({"
        depth -= ch in "])}"
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def safe_dirname(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", label).strip("_") or "model"


MAX_SEEDS = 1000


def parse_seeds(text: str, base_seed: int) -> list[int]:
    """`5` -> five seeds from the base seed; `1,2,7` -> exactly those."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            count = int(text)
            if count < 1:
                raise ConfigError("--seeds must be at least 1")
            if count > MAX_SEEDS:  # a typo for a seed list, not a plan: refuse before range()
                raise ConfigError(f"--seeds {count}: at most {MAX_SEEDS} seeds (or give a list)")
            seeds = [base_seed + i for i in range(count)]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (5) or a list (1,2,3)") from None
    if not seeds:
        raise ConfigError(f"--seeds {text!r}: give a count (5) or a list (1,2,3)")
    bad = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if bad:
        raise ConfigError(f"--seeds: {bad[0]} is not a seed between 0 and {SEED_MAX}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        # A repeated seed repeats a run and its split: the paired tests would count it twice.
        raise ConfigError(f"--seeds lists {repeated[0]} more than once")
    return seeds


def check_experiment_dir(out_dir: Path, report_files: tuple[str, ...], kind: str) -> None:
    """An experiment directory holds run directories (one folder per point) and the report:
    a directory with other files, or a single run's directory, is refused, never written into."""
    if not out_dir.is_dir():
        return
    if (out_dir / "config.yaml").is_file():
        raise ConfigError(f"{out_dir} is a run directory of gprec train; use another --out")
    other = sorted(p.name for p in out_dir.iterdir() if p.is_file() and p.name not in report_files)
    if other:
        shown = ", ".join(other[:3]) + (" ..." if len(other) > 3 else "")
        raise ConfigError(
            f"{out_dir} holds files that are not a gprec {kind}'s ({shown}); "
            "use another --out (gprec never deletes files it did not write)"
        )


def prepare_grid(
    points: list[GridPoint],
    seeds: list[int],
    out_dir: Path,
    report_files: tuple[str, ...],
    kind: str,
    what: str = "--models",
) -> Grid:
    """Validate every (point, seed) config and claim every run directory; nothing is written.

    `what` names the command-line option the points come from in error messages, `kind` and
    `report_files` say what else the experiment directory may hold.
    """
    labels = [p.label for p in points]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{what} lists a model twice: {labels}")
    configs: dict[tuple[str, int], RunConfig] = {}
    for point in points:
        for seed in seeds:
            configs[point.label, seed] = parse_config(
                apply_overrides(point.raw, [f"train.seed={seed}"]), point.source, point.overrides
            )
    run_dirs = {key: out_dir / safe_dirname(key[0]) / f"seed-{key[1]}" for key in configs}
    # Every run directory is checked before the first run, so a clash in the last one does
    # not surface hours in; the device too, since every config names one.
    tasks = {cfg.train.task for cfg in configs.values()}
    if len(tasks) > 1:
        # Their metrics differ (AUC vs RMSE): nothing to put in one table or test.
        raise ConfigError(
            f"{what} mixes train.task {' and '.join(sorted(tasks))}: compare one task"
        )
    task = tasks.pop()
    lists = {cfg.train.eval_negatives for cfg in configs.values()}
    datas = {
        json.dumps(cfg.data.model_dump(mode="json", exclude={"cache_dir"}), sort_keys=True)
        for cfg in configs.values()
    }
    if task == "implicit" and len(datas) > 1:
        # The negative lists come from the data (its split, catalogue and pairs).
        raise ConfigError(
            f"{what} differ in their data sections: implicit models are compared on the same lists"
        )
    if task == "implicit" and len(lists) > 1:
        # HR/NDCG against 50 negatives and against 100 are different numbers.
        raise ConfigError(
            f"{what} differ in train.eval_negatives ({', '.join(map(str, sorted(lists)))}): "
            "implicit models are compared on the same lists"
        )
    for key, cfg in configs.items():
        resolve_device(cfg.train.device)
        claim_run_dir(run_dirs[key], dump_config(cfg), remedy="use another --out")
    check_experiment_dir(out_dir, report_files, kind)
    return Grid(labels, list(seeds), configs, run_dirs, task, out_dir)


def run_grid(grid: Grid, log: Logger) -> dict[str, dict[int, dict]]:
    """Train every run of `grid` not finished before, in order, showing `run k/N` and the time
    left; return `metrics[label][seed]` (each run's metrics.json)."""
    results: dict[str, dict[int, dict]] = {label: {} for label in grid.labels}
    to_train = [k for k in grid.configs if run_state(grid.run_dirs[k]) != "finished"]
    trained_seconds: list[float] = []
    for k, ((label, seed), cfg) in enumerate(grid.configs.items(), start=1):
        run_dir = grid.run_dirs[label, seed]
        done = run_dir / "metrics.json"
        where = f"[run {k}/{len(grid.configs)}: {label} seed {seed}]"
        if done.is_file():
            log(f"{where} finished before, reusing {done}")
            metrics = json.loads(done.read_text())
        else:
            log(f"{where} training{_eta(trained_seconds, to_train)}")
            t0 = time.perf_counter()
            metrics = run_training(cfg, run_dir, log)
            trained_seconds.append(time.perf_counter() - t0)
            to_train.remove((label, seed))
            shown = " ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items())
            log(f"{where} test {shown}")
        results[label][seed] = metrics
    return results


def _eta(trained_seconds: list[float], to_train: list) -> str:
    """`, about 12 min left` once a run has been timed: the mean run times the runs to go."""
    if not trained_seconds:
        return ""
    left = statistics.fmean(trained_seconds) * len(to_train)
    return f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"


def run_records(results: dict[str, dict[int, dict]], task: str) -> dict[str, dict[str, dict]]:
    """What a report keeps of each run, `records[label][str(seed)]`: its test metrics, the
    primary metric on validation, epochs and speed (the `runs` of comparison.json)."""
    monitor = next(iter(TASK_METRICS[task]))  # the task's primary metric
    return {
        m: {
            str(s): {
                "test": r["test"],
                f"valid_{monitor}": r["valid"][monitor],
                "epochs_run": r["epochs_run"],
                "seconds_per_epoch": r["train"]["seconds_per_epoch"],
                "samples_per_second": r["train"]["samples_per_second"],
                "wall_seconds": r.get("wall_seconds"),
            }
            for s, r in by_seed.items()
        }
        for m, by_seed in results.items()
    }


def with_settings(raw: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """`raw` with each dotted key of `settings` set to its (already typed) value."""
    out = copy.deepcopy(raw)
    for key, value in settings.items():
        node, parts = out, key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:  # absent, or an empty `section:` in the file
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out


def against_reference(
    runs: dict[str, dict[str, dict]],
    reference: str | None,
    metrics: dict[str, bool],
    reference_better: bool = True,
) -> list[dict]:
    """One row per label of `runs` (the reference's first): mean and std over seeds of each
    test metric, and for every other label the paired difference to the reference.

    `{m}_diff_mean` and `{m}_diff_std` are the mean and std over the shared seeds of
    (label - reference); `{m}_paired_p` and `{m}_welch_p` are one-sided p-values that the
    reference is better (`reference_better`, an ablation's question) or that the label is (a
    sweep's: does this setting beat the backbone?). A seed fixes the split, so runs with one
    seed are paired; Welch's test ignores the pairing and is what the GPRec paper reports.
    `{m}_holm_paired_p` adjusts the paired p-values over the labels, per metric. Without a
    reference, only the means and stds.
    """
    values = {
        m: {
            label: {int(s): r["test"][m] for s, r in by_seed.items()}
            for label, by_seed in runs.items()
        }
        for m in metrics
    }
    order = [*([reference] if reference else []), *(k for k in runs if k != reference)]
    rows = []
    for label in order:
        row: dict[str, Any] = {"label": label, "n": len(runs[label])}
        for m, larger_better in metrics.items():
            v = np.array(list(values[m][label].values()))
            row[f"{m}_mean"] = float(v.mean())
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            if reference is None or label == reference:
                continue
            ref, this = values[m][reference], values[m][label]
            if reference_better:
                t = one_sided_tests(m, reference, label, ref, this, larger_better)
            else:
                t = one_sided_tests(m, label, reference, this, ref, larger_better)
            seeds = sorted(set(ref) & set(this))
            diffs = np.array([this[s] - ref[s] for s in seeds])
            row[f"{m}_diff_mean"] = float(diffs.mean()) if len(diffs) else math.nan
            row[f"{m}_diff_std"] = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
            row[f"{m}_paired_p"] = t.paired_p
            row[f"{m}_welch_p"] = t.welch_p
            row["n_paired"] = t.n_paired
        rows.append(row)
    if reference is not None:
        others = rows[1:]
        for m in metrics:
            for row, p in zip(others, holm([r[f"{m}_paired_p"] for r in others]), strict=True):
                row[f"{m}_holm_paired_p"] = p
    return rows


def cost_markdown(runs: dict[str, dict[str, dict]], task: str, header: str, wall: float) -> str:
    """Per point: the primary metric on validation (what is chosen by, never the test split),
    epochs and seconds per epoch averaged over seeds; then the experiment's wall time."""
    primary = next(iter(TASK_METRICS[task]))
    lines = [
        "",
        f"| {header} | valid {LABELS.get(primary, primary)} | epochs run (mean) "
        "| seconds / epoch |",
        "|---|---|---|---|",
    ]
    for label, by_seed in runs.items():
        valid, epochs, seconds = (
            statistics.fmean(r[key] for r in by_seed.values())
            for key in (f"valid_{primary}", "epochs_run", "seconds_per_epoch")
        )
        lines.append(f"| {label} | {valid:.4f} | {epochs:.1f} | {seconds:.2f} |")
    walls = [r.get("wall_seconds") for by_seed in runs.values() for r in by_seed.values()]
    lines += ["", f"Wall time of this call: {wall:.0f} s (runs reused from before not counted)."]
    if walls and None not in walls:
        lines[-1] += f" All {len(walls)} runs took {sum(walls):.0f} s together."
    return "\n".join(lines) + "\n"


def fmt_p(p: float | None) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.2e}" if p < 1e-3 else f"{p:.4f}")


def write_tables(out_dir: Path, stem: str, markdown: str, rows: list[dict], summary: dict) -> None:
    """`stem.md`, `stem.csv` (one line per row) and `stem.json` (the summary), each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"{stem}.json", json.dumps(summary, indent=2))
    write_text_atomic(out_dir / f"{stem}.md", markdown)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / f"{stem}.csv", buf.getvalue())


PLOTS_HINT = "pip install 'gprec[plots]'"


def require_matplotlib(what: str) -> None:
    """Refuse before any training when the figure could not be drawn at the end."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(
            f"{what} draws its figure with matplotlib, which is not installed: {PLOTS_HINT}"
        )


def new_figure(n_panels: int, width: float = 4.6, height: float = 3.6):
    """A headless matplotlib figure (the Agg canvas; pyplot and its global backend are never
    touched) with `n_panels` axes side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def save_figure(fig, path: Path) -> None:
    """Write the PNG atomically, so a killed write leaves no half picture."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    write_bytes_atomic(path, buf.getvalue())
