"""`gprec compare`: every model with every seed, resumable, then a table with tests.

A model is given as a registered name (`mlp`), a name with option overrides
(`mlp[dropout=0.2]`, keys relative to the `model` section unless they start
with `data.` or `train.`), or a YAML file holding config sections to lay over
the base config. Run directories are `OUT/<label>/seed-<seed>`; a run whose
`metrics.json` exists is not repeated, so an interrupted comparison resumes.
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

from gprec.config import (
    SEED_MAX,
    apply_overrides,
    dump_config,
    merge_sections,
    parse_config,
    read_config,
)
from gprec.errors import ConfigError
from gprec.evaluation.significance import (
    LABELS,
    TASK_METRICS,
    summarize,
    summary_metrics,
    to_csv_rows,
    to_markdown,
)
from gprec.io import write_text_atomic
from gprec.training.run import resolve_device, run_training
from gprec.training.run_dir import claim_run_dir, run_state
from gprec.training.trainer import Logger

SECTIONS = ("data", "model", "train")


@dataclass
class ModelSpec:
    label: str
    overlay: dict[str, Any]  # config sections laid over the base config
    overrides: list[str]  # dotted key=value strings applied after the overlay


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


def run_comparison(
    base_raw: dict[str, Any],
    specs: list[ModelSpec],
    seeds: list[int],
    out_dir: Path,
    log: Logger,
    title: str = "Comparison",
    overrides: list[str] | None = None,
    baselines: list[str] | None = None,
) -> dict:
    """Run every spec with every seed in `out_dir`; return the summary.

    `baselines` (labels among `specs`) adds the pre-specified test: the best
    baseline on validation AUC against the best other model on validation AUC.

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
    # Validate every config before the first run, so a typo fails in seconds, not hours.
    configs = {}
    for spec in specs:
        raw = apply_overrides(
            merge_sections(base_raw, spec.overlay), [*(overrides or []), *spec.overrides]
        )
        for seed in seeds:
            configs[spec.label, seed] = parse_config(
                apply_overrides(raw, [f"train.seed={seed}"]), f"model {spec.label}", overrides or []
            )
    run_dirs = {key: out_dir / safe_dirname(key[0]) / f"seed-{key[1]}" for key in configs}
    # Every run directory is checked before the first run, so a clash in the last one does
    # not surface hours in; the device too, since every config names one.
    tasks = {cfg.train.task for cfg in configs.values()}
    if len(tasks) > 1:
        # Their metrics differ (AUC vs RMSE): nothing to put in one table or test.
        raise ConfigError(
            f"--models mixes train.task {' and '.join(sorted(tasks))}: compare one task"
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
            "--models differ in their data sections: implicit models are compared on the same lists"
        )
    if task == "implicit" and len(lists) > 1:
        # HR/NDCG against 50 negatives and against 100 are different numbers.
        raise ConfigError(
            f"--models differ in train.eval_negatives ({', '.join(map(str, sorted(lists)))}): "
            "implicit models are compared on the same lists"
        )
    for key, cfg in configs.items():
        resolve_device(cfg.train.device)
        claim_run_dir(run_dirs[key], dump_config(cfg), remedy="use another --out")
    check_experiment_dir(out_dir)
    log(f"comparing {', '.join(labels)} over seeds {seeds} -> {out_dir}")
    results: dict[str, dict[int, dict]] = {s.label: {} for s in specs}
    to_train = [k for k in configs if run_state(run_dirs[k]) != "finished"]
    trained_seconds: list[float] = []
    for k, ((label, seed), cfg) in enumerate(configs.items(), start=1):
        run_dir = run_dirs[label, seed]
        done = run_dir / "metrics.json"
        where = f"[run {k}/{len(configs)}: {label} seed {seed}]"
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
    monitor = next(iter(TASK_METRICS[task]))  # the task's primary metric
    runs = {
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
    summary = summary_from_runs(runs, seeds, baselines, task)
    summary["wall_seconds"] = time.perf_counter() - started
    write_report(summary, out_dir, title)
    return summary


REPORT_FILES = ("comparison.json", "comparison.md", "comparison.csv")


def check_experiment_dir(out_dir: Path) -> None:
    """An experiment directory holds run directories (one folder per model) and the report:
    a directory with other files, or a single run's directory, is refused, never written into."""
    if not out_dir.is_dir():
        return
    if (out_dir / "config.yaml").is_file():
        raise ConfigError(f"{out_dir} is a run directory of gprec train; use another --out")
    other = sorted(p.name for p in out_dir.iterdir() if p.is_file() and p.name not in REPORT_FILES)
    if other:
        shown = ", ".join(other[:3]) + (" ..." if len(other) > 3 else "")
        raise ConfigError(
            f"{out_dir} holds files that are not a gprec comparison's ({shown}); "
            "use another --out (gprec never deletes files it did not write)"
        )


def _eta(trained_seconds: list[float], to_train: list) -> str:
    """`, about 12 min left` once a run has been timed: the mean run times the runs to go."""
    if not trained_seconds:
        return ""
    left = statistics.fmean(trained_seconds) * len(to_train)
    return f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"


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
