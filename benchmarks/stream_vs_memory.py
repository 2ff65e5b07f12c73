"""data.format parquet-stream against the in-memory path: peak memory, speed, and metrics.

Part 1, a dataset 10x the size of MovieLens-1M, generated: 60,400 users (10x ML-1M's 6,040)
with ML-1M's user fields (gender, age, occupation, zip), its 3,706 items with genre
combinations and a year, and 10,002,090 ratings (10x ML-1M's 1,000,209, the same density per
user), each (user, item) pair once, sorted by user as ML-1M's ratings.dat is. A rating is
above 3 with a probability planted from user and item biases and a taste of each of 8 latent
user groups for each genre, so AUC means something. It is written as Parquet in the ML-1M
layout (ratings in row groups of a million rows, users, items) into a scratch folder outside
the repository, described by a generic schema, and trained twice with the ML-1M MLP config
(fixed epochs, high patience), each path in its own processes:

- `prepare`: the dataset cache is filled from scratch (`load_dataset`): seconds, peak RSS;
- `train`: `gprec train`'s `run_training` on the cached dataset: peak RSS over the whole run
  (its data loaded from the cache, the model trained, evaluated and written), and the run's
  samples/second, valid and test AUC and LogLoss from its metrics.

Peak RSS is the process's own VmHWM (resident set, anonymous and mapped pages both).

Part 2, the same metrics on data small enough for both: MovieLens-1M itself (read by gprec's
ML-1M loader, written as one Parquet file with its eight fields and the rating) through the
generic source, both paths with `data.split: hash` (the same rows in every split), the ML-1M
MLP config trained to early stopping, with several training seeds on one split: the two
paths differ only in the order of training rows (a bounded shuffle buffer vs a full
permutation), so the seed-to-seed spread of each path is the noise to judge them against.

Run from the repository root on a quiet machine (it takes several minutes):

    python benchmarks/stream_vs_memory.py [--rows 10002090] [--epochs 3] [--threads 2]
        [--scratch /tmp/gprec-stream-bench] [--ml1m ../shared/data/ml-1m] [--seeds 3]

It writes benchmarks/results/stream-vs-memory/{results.json,results.md} (each atomically).
Checking it at a small scale: `--rows 1000000 --epochs 1 --threads 1 --seeds 1 --out /tmp/x`
(about 2 minutes). The generated data stays in --scratch and is reused by a later run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks/machine.py
from machine import cpu_model, log, machine_busy_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ML1M_ROWS = 1_000_209
ML1M_USERS, ML1M_ITEMS = 6_040, 3_706
GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western"]  # fmt: skip
AGES = [1, 18, 25, 35, 45, 50, 56]
AGE_SHARES = [0.04, 0.18, 0.35, 0.20, 0.09, 0.08, 0.06]
ROW_GROUP = 1_000_000
# The ML-1M MLP config's model and train settings (configs/ml-1m/mlp.yaml).
MODEL = {"name": "mlp", "embedding_dim": 16, "head_units": [64, 32, 16], "dropout": 0.0}
TRAIN = {
    "lr": 0.002,
    "weight_decay": 1.0e-6,
    "batch_size": 4096,
    "lr_step": 8,
    "lr_gamma": 0.8,
    "seed": 2024,
    "progress": False,
}
PATHS = ("memory", "parquet-stream")


# ---- the generated dataset --------------------------------------------------------------


def generate(out: Path, n_rows: int, seed: int = 0) -> dict:
    """ML-1M-shaped ratings, users and items as Parquet in `out` (vectorised numpy)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_users = max(1, round(ML1M_USERS * n_rows / ML1M_ROWS))
    n_items = ML1M_ITEMS
    out.mkdir(parents=True, exist_ok=True)
    # Users: ML-1M's fields, a latent taste group and a bias; activity heavy-tailed.
    group = rng.integers(0, 8, n_users)
    zips = np.char.zfill(rng.choice(100_000, 9_000, replace=False).astype(str), 5)
    users = pa.table(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int32),
            "gender": rng.choice(["F", "M"], n_users, p=[0.28, 0.72]),
            "age": rng.choice(AGES, n_users, p=AGE_SHARES).astype(np.int16),
            "occupation": rng.integers(0, 21, n_users).astype(np.int16),
            "zip": zips[np.minimum(rng.zipf(1.3, n_users) - 1, len(zips) - 1)],
        }
    )
    activity = rng.lognormal(0.0, 0.8, n_users)
    # Items: 1-3 genres from ~300 combinations, a year, a popularity and a bias.
    combos = []
    while len(combos) < 300:
        k = rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])
        combo = "|".join(sorted(rng.choice(GENRES, k, replace=False)))
        if combo not in combos:
            combos.append(combo)
    item_combo = np.minimum(rng.zipf(1.2, n_items) - 1, len(combos) - 1)
    items = pa.table(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int32),
            "genres": np.array(combos)[item_combo],
            "year": (2000 - np.minimum(rng.exponential(8, n_items), 81)).astype(np.int16),
        }
    )
    popularity = 1.0 / (np.arange(n_items) + 20.0) ** 0.9
    popularity = rng.permutation(popularity)
    membership = np.zeros((len(combos), len(GENRES)))
    for c, combo in enumerate(combos):
        for g in combo.split("|"):
            membership[c, GENRES.index(g)] = 1.0 / len(combo.split("|"))
    taste = rng.normal(0.0, 1.0, (8, len(GENRES)))
    user_bias, item_bias = rng.normal(0, 0.6, n_users), rng.normal(0, 0.6, n_items)
    # Distinct (user, item) pairs: draw until there are enough, keep each once, trim.
    pairs = np.zeros(0, dtype=np.int64)
    while len(pairs) < n_rows:
        draw = int((n_rows - len(pairs)) * 1.2) + 1000
        u = rng.choice(n_users, draw, p=activity / activity.sum())
        i = rng.choice(n_items, draw, p=popularity / popularity.sum())
        pairs = np.unique(np.concatenate([pairs, u.astype(np.int64) * n_items + i]))
    pairs = np.sort(rng.choice(pairs, n_rows, replace=False))  # sorted by user, as ML-1M
    u, i = pairs // n_items, pairs % n_items
    del pairs
    affinity = (taste @ membership.T)[group[u], item_combo[i]]
    logit = 1.2 * affinity + user_bias[u] + item_bias[i] + 0.6
    liked = rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))
    rating = np.where(liked, rng.integers(4, 6, n_rows), rng.integers(1, 4, n_rows)).astype(np.int8)
    schema = pa.schema([("user_id", pa.int32()), ("item_id", pa.int32()), ("rating", pa.int8())])
    with pq.ParquetWriter(out / "ratings.parquet", schema) as writer:
        for start in range(0, n_rows, ROW_GROUP):
            stop = min(start + ROW_GROUP, n_rows)
            writer.write_table(
                pa.table(
                    {
                        "user_id": (u[start:stop] + 1).astype(np.int32),
                        "item_id": (i[start:stop] + 1).astype(np.int32),
                        "rating": rating[start:stop],
                    },
                    schema=schema,
                )
            )
    pq.write_table(users, out / "users.parquet")
    pq.write_table(items, out / "items.parquet")
    (out / "schema.yaml").write_text(
        "interactions: ratings.parquet\n"
        "users: {path: users.parquet, key: user_id}\n"
        "items: {path: items.parquet, key: item_id}\n"
        "target: rating\n"
        "fields: {item_id: item, genres: item, year: item, user_id: personal, age: user, "
        "gender: user, occupation: user, zip: user}\n"
    )
    return {
        "rows": n_rows,
        "users": n_users,
        "items": n_items,
        "positive_rate": float(liked.mean()),
        "row_groups": -(-n_rows // ROW_GROUP),
        "parquet_bytes": sum(
            (out / f).stat().st_size for f in ("ratings.parquet", "users.parquet", "items.parquet")
        ),
        "seed": seed,
    }


def ml1m_as_parquet(ml1m: Path, out: Path) -> dict:
    """MovieLens-1M through gprec's own loader, as one Parquet file of its fields + rating."""
    from gprec.data.movielens import FIELDS, load_ml1m

    ratings = "ratings.dat" if (ml1m / "ratings.dat").is_file() else "ratings_no_timestamp.dat"
    raw = load_ml1m(ml1m, ratings)
    out.mkdir(parents=True, exist_ok=True)
    table = raw.table.select(*(f.name for f in FIELDS), "target").rename({"target": "rating"})
    table.write_parquet(out / "ratings.parquet", row_group_size=200_000)
    (out / "schema.yaml").write_text(
        "interactions: ratings.parquet\ntarget: rating\nfields: {"
        + ", ".join(f"{f.name}: {f.role.value}" for f in FIELDS)
        + "}\n"
    )
    return {"rows": table.height, "ratings_file": str(ml1m / ratings)}


# ---- one measured process --------------------------------------------------------------


def config(schema: Path, fmt: str, cache: Path, args, **train) -> dict:
    data = {
        "source": "generic",
        "path": str(schema),
        "label_threshold": 3,
        "split": "hash",
        "format": fmt,
        "cache_dir": str(cache),
        "shuffle_buffer": args.shuffle_buffer,
    }
    return {"data": data, "model": MODEL, "train": TRAIN | {"threads": args.threads} | train}


def child(job: dict) -> dict:
    """Run one job in this process and report it with this process's peak RSS."""
    import torch

    from gprec.config import parse_config
    from gprec.data.dataset import load_dataset
    from gprec.training.run import run_training

    torch.set_num_threads(job["threads"])
    cfg = parse_config(job["config"])
    started = time.perf_counter()
    out = {}
    if job["kind"] == "baseline":  # the imports alone: what every process starts from
        pass
    elif job["kind"] == "prepare":
        data = load_dataset(cfg.data, cfg.split_seed())
        out["rows"] = {s: data.size(s) for s in ("train", "valid", "test")}
        out["from_cache"] = data.from_cache
    else:
        metrics = run_training(cfg, Path(job["run_dir"]), log=lambda m: None, overwrite=True)
        out["metrics"] = metrics
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set: Linux's VmHWM, the high-water mark of this process's
    own memory map. Not `ru_maxrss`: Linux carries that across exec from the parent's memory
    at the fork, so a child of a big parent (this script after generating the data) would
    report the parent's peak as its own."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured(job: dict) -> dict:
    """`job` in a fresh Python process; adds how much of the machine others used meanwhile."""
    env = os.environ | {
        "OMP_NUM_THREADS": str(job["threads"]),
        "MKL_NUM_THREADS": str(job["threads"]),
    }
    t0, busy0 = time.perf_counter(), machine_busy_seconds()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{job['kind']} ({job['label']}) failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    busy = machine_busy_seconds()
    if busy is not None and busy0 is not None and wall > 1:
        others = max(0.0, busy - busy0 - cpu) / (wall * (os.cpu_count() or 1))
        result["others_cpu_share"] = round(others, 3)
    return result


# ---- the two parts ---------------------------------------------------------------------


def large(args) -> dict:
    data_dir = args.scratch / f"generated-{args.rows}"
    marker = data_dir / "generated.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        log(f"using the generated dataset in {data_dir}")
    else:
        log(f"generating {args.rows:,d} ratings in {data_dir}")
        t0 = time.perf_counter()
        info = generate(data_dir, args.rows)
        info["seconds"] = time.perf_counter() - t0
        marker.write_text(json.dumps(info, indent=1))
    out = {"dataset": info, "epochs": args.epochs, "paths": {}}
    out["baseline_peak_rss_mb"] = measured(
        {"kind": "baseline", "config": {}, "threads": args.threads, "label": "baseline"}
    )["peak_rss_mb"]
    for fmt in PATHS:
        cache = args.scratch / f"cache-{fmt}"
        shutil.rmtree(cache, ignore_errors=True)
        cfg = config(
            data_dir / "schema.yaml", fmt, cache, args, max_epochs=args.epochs, patience=100
        )
        common = {"config": cfg, "threads": args.threads, "label": fmt}
        log(f"{fmt}: preparing the dataset cache")
        prep = measured(common | {"kind": "prepare"})
        log(f"{fmt}: training {args.epochs} epochs")
        run_dir = args.scratch / f"run-{fmt}"
        train = measured(common | {"kind": "train", "run_dir": str(run_dir)})
        m = train["metrics"]
        out["paths"][fmt] = {
            "prepare": {
                "seconds": prep["seconds"],
                "peak_rss_mb": prep["peak_rss_mb"],
                "rows": prep["rows"],
                "others_cpu_share": prep.get("others_cpu_share"),
            },
            "train": {
                "peak_rss_mb": train["peak_rss_mb"],
                "wall_seconds": train["seconds"],
                "data_load_seconds": m["data"]["load_seconds"],
                "samples_per_second": m["train"]["samples_per_second"],
                "seconds_per_epoch": m["train"]["seconds_per_epoch"],
                "eval_seconds_per_epoch": m["train"]["eval_seconds_per_epoch"],
                "epochs_run": m["epochs_run"],
                "valid": m["valid"],
                "test": m["test"],
                "others_cpu_share": train.get("others_cpu_share"),
            },
            "cache_bytes": sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()),
        }
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        log(f"{fmt}: {json.dumps(out['paths'][fmt]['train'], default=str)[:300]}")
    mem, st = out["paths"]["memory"], out["paths"]["parquet-stream"]
    out["stream_over_memory"] = {
        "train_peak_rss": st["train"]["peak_rss_mb"] / mem["train"]["peak_rss_mb"],
        "prepare_peak_rss": st["prepare"]["peak_rss_mb"] / mem["prepare"]["peak_rss_mb"],
        "samples_per_second": st["train"]["samples_per_second"]
        / mem["train"]["samples_per_second"],
        "prepare_seconds": st["prepare"]["seconds"] / mem["prepare"]["seconds"],
    }
    return out


def small(args) -> dict:
    data_dir = args.scratch / "ml-1m-parquet"
    info = ml1m_as_parquet(args.ml1m, data_dir)
    out = {"dataset": info, "seeds": [], "runs": {fmt: [] for fmt in PATHS}}
    for k in range(args.seeds):
        seed = TRAIN["seed"] + k
        out["seeds"].append(seed)
        for fmt in PATHS:
            cache = args.scratch / f"cache-ml1m-{fmt}"
            # The split is fixed (data.split_seed); the training seed varies.
            cfg = config(data_dir / "schema.yaml", fmt, cache, args, seed=seed)
            cfg["data"]["split_seed"] = TRAIN["seed"]
            run_dir = args.scratch / f"run-ml1m-{fmt}-{seed}"
            log(f"ML-1M {fmt}, seed {seed}")
            res = measured(
                {
                    "config": cfg,
                    "threads": args.threads,
                    "label": fmt,
                    "kind": "train",
                    "run_dir": str(run_dir),
                }
            )
            m = res["metrics"]
            out["runs"][fmt].append(
                {
                    "seed": seed,
                    "test": m["test"],
                    "valid": m["valid"],
                    "epochs_run": m["epochs_run"],
                    "samples_per_second": m["train"]["samples_per_second"],
                    "rows": m["data"]["rows"],
                    "peak_rss_mb": res["peak_rss_mb"],
                    "others_cpu_share": res.get("others_cpu_share"),
                }
            )
            shutil.rmtree(run_dir, ignore_errors=True)
    for fmt in PATHS:
        shutil.rmtree(args.scratch / f"cache-ml1m-{fmt}", ignore_errors=True)
    summary = {}
    for metric in ("auc", "logloss"):
        per = {fmt: np.array([r["test"][metric] for r in out["runs"][fmt]]) for fmt in PATHS}
        diff = per["parquet-stream"] - per["memory"]
        summary[metric] = {
            **{
                fmt: {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None}
                for fmt, v in per.items()
            },
            "paired_difference_mean": float(diff.mean()),
            "paired_difference_std": float(diff.std(ddof=1)) if len(diff) > 1 else None,
        }
    out["summary"] = summary
    return out


def machine(threads: int) -> dict:
    import torch

    cpu = cpu_model()
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass

    def git(*a: str) -> str | None:
        p = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(mem, 1) if mem else None,
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
    }


# ---- report ----------------------------------------------------------------------------


# Other processes' share of the machine's CPUs above which a measurement is flagged.
LOADED = 0.1
LOADED_LINE = "**Other processes used over 10% of the CPUs during a measurement.**"


def _mb(x: float) -> str:
    return f"{x:,.0f} MB"


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "## data.format parquet-stream vs the in-memory path",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, {m['memory_gib']} GiB; "
        f"torch {m['torch']}, {m['torch_threads']} threads; commit {m['git_commit']}"
        f"{' (dirty)' if m['git_dirty'] else ''}; {m['date']}. Peak RSS is each process's own "
        "VmHWM (its memory map's high-water mark; `ru_maxrss` would carry this script's own "
        "peak into every child).",
        "",
    ]
    if "large" in res:
        big = res["large"]
        d = big["dataset"]
        lines += [
            f"### Generated, {d['rows'] / ML1M_ROWS:.3g}x ML-1M: {d['rows']:,d} ratings, "
            f"{d['users']:,d} users, {d['items']:,d} items",
            "",
            f"Parquet {d['parquet_bytes'] / 1e6:,.0f} MB in {d['row_groups']} row groups; "
            f"positive rate {d['positive_rate']:.3f}; ML-1M MLP, {big['epochs']} epochs, "
            "data.split: hash, shuffle buffer "
            f"{res['args']['shuffle_buffer']:,d} rows.",
            "",
            "| path | prepare s | prepare peak RSS | train peak RSS | cache on disk | "
            "samples/s | s/epoch | valid AUC | test AUC | test LogLoss | others' CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for fmt, p in big["paths"].items():
            t = p["train"]
            share = max(p["prepare"]["others_cpu_share"] or 0, t["others_cpu_share"] or 0)
            lines.append(
                f"| {fmt} | {p['prepare']['seconds']:.1f} | {_mb(p['prepare']['peak_rss_mb'])} | "
                f"{_mb(t['peak_rss_mb'])} | {p['cache_bytes'] / 1e6:,.0f} MB | "
                f"{t['samples_per_second']:,.0f} | {t['seconds_per_epoch']:.1f} | "
                f"{t['valid']['auc']:.4f} | {t['test']['auc']:.4f} | {t['test']['logloss']:.4f} | "
                f"{share:.0%} |"
            )
        r = big["stream_over_memory"]
        mem, st = big["paths"]["memory"], big["paths"]["parquet-stream"]
        lines += [
            "",
            f"Stream / memory: training peak RSS {r['train_peak_rss']:.2f}x, preparation peak "
            f"RSS {r['prepare_peak_rss']:.2f}x, samples/s {r['samples_per_second']:.2f}x, "
            f"preparation time {r['prepare_seconds']:.2f}x. A process that has imported "
            f"torch and gprec and loaded nothing peaks at {_mb(big['baseline_peak_rss_mb'])}.",
            "",
        ]
        loaded = any(
            (p[k]["others_cpu_share"] or 0) > LOADED
            for p in big["paths"].values()
            for k in ("prepare", "train")
        )
        met = "met" if r["samples_per_second"] >= 0.8 else "NOT met"
        if loaded:
            met += " (not conclusive: measured on a loaded machine, see below)"
        lines += [
            f"Acceptance (issue 21): streamed throughput within 20% of in-memory: "
            f"{r['samples_per_second']:.2f}x, {met}. Peak RSS while training: streamed "
            f"{_mb(st['train']['peak_rss_mb'])}, in-memory {_mb(mem['train']['peak_rss_mb'])}; "
            f"while preparing: {_mb(st['prepare']['peak_rss_mb'])} vs "
            f"{_mb(mem['prepare']['peak_rss_mb'])}.",
            "",
            "The streamed path read back a training file it had just written, with no cache "
            "dropped: where the file fits in the OS page cache its reads come from memory; on "
            "data larger than memory they come from the disk, whose speed then bounds the "
            "throughput.",
            "",
        ]
        if loaded:
            lines += [LOADED_LINE, ""]
    if "small" in res:
        sm = res["small"]
        lines += [
            f"### ML-1M ({sm['dataset']['rows']:,d} ratings) through the generic source, "
            "both paths with data.split: hash",
            "",
            f"Seeds {', '.join(map(str, sm['seeds']))} (training seed; one split), ML-1M MLP "
            "to early stopping (patience 4).",
            "",
            "| path | seed | test AUC | test LogLoss | valid AUC | epochs | samples/s | "
            "others' CPU |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for fmt, runs in sm["runs"].items():
            for r in runs:
                lines.append(
                    f"| {fmt} | {r['seed']} | {r['test']['auc']:.4f} | "
                    f"{r['test']['logloss']:.4f} | {r['valid']['auc']:.4f} | {r['epochs_run']} | "
                    f"{r['samples_per_second']:,.0f} | {r['others_cpu_share'] or 0:.0%} |"
                )
        lines += ["", "| metric | memory | parquet-stream | stream - memory (paired) |"]
        lines += ["|---|---|---|---|"]
        for metric, s in sm["summary"].items():

            def ms(x):
                return f"{x['mean']:.4f}" + (f" ± {x['std']:.4f}" if x["std"] is not None else "")

            spread = s["paired_difference_std"]
            lines.append(
                f"| {metric} | {ms(s['memory'])} | {ms(s['parquet-stream'])} | "
                f"{s['paired_difference_mean']:+.4f}"
                + (f" ± {spread:.4f}" if spread is not None else "")
                + " |"
            )
        lines += ["", noise_verdict(sm["summary"]), ""]
        if any((r["others_cpu_share"] or 0) > LOADED for runs in sm["runs"].values() for r in runs):
            lines += [LOADED_LINE + " (The metrics do not depend on it; samples/s does.)", ""]
    return "\n".join(lines)


def noise_verdict(summary: dict) -> str:
    """Whether the paths' test metrics agree within the seed-to-seed spread: the mean paired
    difference within twice the larger of the two paths' standard deviations over seeds."""
    if any(s["memory"]["std"] is None for s in summary.values()):
        return (
            "Within noise: not judged (one training seed gives no seed-to-seed spread; "
            "run with --seeds 2 or more)."
        )
    parts, within = [], True
    for metric, s in summary.items():
        noise = 2 * max(s["memory"]["std"], s["parquet-stream"]["std"])
        ok = abs(s["paired_difference_mean"]) <= noise
        within &= ok
        said = "within" if ok else "OUTSIDE"
        parts.append(f"{metric} {s['paired_difference_mean']:+.4f} vs {noise:.4f} ({said})")
    return (
        f"Same metrics within noise (issue 21): {'yes' if within else 'NO'}: the mean paired "
        "difference (stream - memory) against twice the larger seed-to-seed standard "
        f"deviation of the two paths: {'; '.join(parts)}."
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, default=10 * ML1M_ROWS)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shuffle-buffer", type=int, default=262_144)
    p.add_argument("--scratch", type=Path, default=Path("/tmp/gprec-stream-bench"))
    p.add_argument("--ml1m", type=Path, default=ROOT.parent / "shared" / "data" / "ml-1m")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--skip-small", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/stream-vs-memory")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child)), default=str))
        return 0
    args.scratch = args.scratch.resolve()
    if ROOT in (args.scratch, *args.scratch.parents):
        raise SystemExit("--scratch must be outside the repository")
    if not args.skip_small and not (args.ml1m / "users.dat").is_file():
        # Found now rather than after the generated dataset's part, which takes long.
        raise SystemExit(
            f"--ml1m {args.ml1m}: no MovieLens-1M there (users.dat, movies.dat, ratings.dat); "
            "give its directory, or --skip-small"
        )
    args.scratch.mkdir(parents=True, exist_ok=True)
    res = {
        "machine": machine(args.threads),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    t0 = time.perf_counter()
    if not args.skip_large:
        res["large"] = large(args)
    if not args.skip_small:
        res["small"] = small(args)
    res["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(res)
    for name, text in (
        ("results.json", json.dumps(res, indent=1, default=str)),
        ("results.md", md),
    ):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(text + "\n")
        os.replace(tmp, args.out / name)  # whole or not at all
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
