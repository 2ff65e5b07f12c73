"""DMTL against the classic CF baselines on MovieLens-100K, on one split per seed (issue 19,
acceptance 2 and 5).

Why: the DMTL paper (arXiv 2504.06274) reports P@10 0.6867 / R@10 0.8063 on ML-100K and says it
beats SVD++, the k-NN family and MF, but its split, its baselines' settings and the bounds of its
metric are not given. Here, for each seed (a seed fixes gprec's random 80/10/10 split):

1. DMTL is trained by gprec itself on ratings (`gprec train -c configs/ml-100k/mlp.yaml --set
   model.name=dmtl --set train.task=regression --set data.target=value --set
   data.user_groups=20 --set train.seed=S`); its test predictions come from the run's best
   checkpoint (`model.pt`): the model's output plus the regression offset stored with it.
2. SVD, SVD++, NMF, KNNBasic, KNNWithMeans, KNNBaseline (scikit-surprise 1.1.5, its defaults,
   seeded) and the popularity, random and perfect predictors are fitted on the training rows
   of the *same* dataset (loaded from the DMTL run's own resolved `config.yaml`, so the rows
   are identical; `gprec.baselines.surprise_models`).
3. Every model is scored on the test rows with gprec's metrics: RMSE / MAE
   (`evaluation.metrics.regression_metrics`); the paper's per-user P@10 / R@10 over each
   user's test ratings, threshold 3.5 (`evaluation.ranking.dmtl_precision_recall`, with its
   perfect and random rankers); and the full ranking over every item the user has not rated
   in train or valid, relevant = the user's test items rated >= 3.5, P@10 / R@10 / NDCG@10
   (`evaluation.ranking.full_ranking_report`, ties against the relevant items, with bounds).
   Validation RMSE is kept to pick the best baseline for the paired test.

The summary (`--out`, default `benchmarks/results/dmtl-ml100k/summary.{json,md}`) gives per model
the mean ± std over seeds, the one-sided paired t-test (scipy `ttest_rel`) of DMTL's test RMSE
against the baseline with the best mean validation RMSE, the paper's figures beside the
per-user protocol, and one run's training time of DMTL and of SVD++.

Resumable: a finished DMTL run is not retrained, and each seed's scores are cached per model
in `<runs>/seed-<S>/scores.json` (recomputed if the DMTL checkpoint or the protocol changed).

    python benchmarks/dmtl_ml100k.py                      # seeds 2024-2028, CPU
    python benchmarks/dmtl_ml100k.py --seeds 2024 --out runs/dmtl-ml100k-smoke   # smoke test
    python benchmarks/dmtl_ml100k.py --set train.device=cuda                     # DMTL on a GPU

Needs scikit-surprise (`pip install -e .[baselines]`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from gprec.baselines.surprise_models import (  # noqa: E402
    BASELINES,
    SURPRISE_MODELS,
    RatingModel,
    RatingSplit,
    make_baseline,
)
from gprec.data.schema import Role  # noqa: E402
from gprec.evaluation.metrics import regression_metrics  # noqa: E402
from gprec.evaluation.ranking import dmtl_precision_recall, full_ranking_report  # noqa: E402
from gprec.io import write_text_atomic  # noqa: E402

SEEDS = "2024,2025,2026,2027,2028"
# DMTL with its own documented defaults: its model config laid over the dataset's (a plain
# `--set model.name=dmtl` would keep the MLP config's head [64, 32, 16] instead of DMTL's [16]).
CONFIGS = ["configs/ml-100k/mlp.yaml", "configs/models/dmtl.yaml"]
DMTL_SETTINGS = [
    "train.task=regression",
    "data.target=value",
    "data.user_groups=20",
]
PAPER = {"precision@10": 0.6867, "recall@10": 0.8063}  # DMTL paper, ML-100K
K = 10
THRESHOLD = 3.5
PROTOCOL_VERSION = 1  # bump when a metric's definition changes: cached scores are recomputed
MODELS = ("dmtl", *BASELINES)
LABELS = {"dmtl": "DMTL", **{k: v[1] for k, v in SURPRISE_MODELS.items()}}
LEARNED_BASELINES = [*SURPRISE_MODELS, "popularity", "random"]  # candidates for the paired test


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default=SEEDS, help=f"comma-separated (default {SEEDS})")
    default_data = Path(os.environ.get("GPREC_DATA", ROOT.parent / "shared" / "data")) / "ml-100k"
    p.add_argument("--data", type=Path, default=default_data, help="the ml-100k folder")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "dmtl-ml100k")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dmtl-ml100k")
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override for DMTL's `gprec train` (e.g. train.device=cuda, train.threads=2)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads for DMTL's scoring")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- DMTL


def gprec_command() -> list[str]:
    exe = Path(sys.executable).parent / "gprec"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("gprec")
    return [found] if found else [sys.executable, "-m", "gprec.cli.main"]


def train_dmtl(run_dir: Path, seed: int, args) -> dict:
    """Train DMTL for `seed` unless `run_dir` already holds a finished run; its timing."""
    from gprec.training.run_dir import read_metrics, read_status

    status = read_status(run_dir)
    if status and status.get("state") == "finished" and read_metrics(run_dir):
        print(f"[seed {seed}] DMTL: finished run in {run_dir}, reused", flush=True)
        return {"reused": True}
    sets = [*DMTL_SETTINGS, f"train.seed={seed}", f"data.path={args.data.resolve()}", *args.extra]
    cmd = [
        *gprec_command(),
        "train",
        *[a for c in CONFIGS for a in ("-c", c)],
        "--out",
        str(run_dir),
    ]
    for s in sets:
        cmd += ["--set", s]
    print(f"[seed {seed}] DMTL: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return {"reused": False, "command_seconds": time.perf_counter() - t0}


class GprecRunModel(RatingModel):
    """A finished `gprec train` run (regression) as a rating model: its best checkpoint.

    Prediction = the model's output + the regression offset in the checkpoint's `task` entry
    (the training ratings' mean), unclipped. Pairs are turned into gprec rows from each user's
    and each item's encoded fields as they appear in training (user-side fields: PERSONAL and
    USER roles, the KMeans `group` included; item-side: ITEM), so every (user, item) of the
    catalogue can be scored for the full ranking.
    """

    key = "dmtl"
    name = "DMTL"

    def __init__(self, run_dir: Path, data, threads: int | None = None):
        import torch

        from gprec.config import load_config
        from gprec.models.registry import build_model

        if threads:
            torch.set_num_threads(threads)
        self.cfg = load_config(run_dir / "config.yaml")
        ckpt = torch.load(run_dir / "model.pt", map_location="cpu")
        task = ckpt["task"]
        if task.get("name") != "regression":
            raise ValueError(f"{run_dir}: not a regression run ({task})")
        self.offset = float(task["offset"])
        self.model = build_model(self.cfg.model, data.fields)
        self.model.load_state_dict(ckpt["state_dict"])
        self.model.eval()
        self.data = data
        self.split = RatingSplit.from_dataset(data)
        if any(f.role == Role.CONTEXT for f in data.fields):
            raise ValueError("context fields cannot be filled in for unseen pairs")
        names = [f.name for f in data.fields]
        self._u_col = names.index(self.split.user_field)
        self._i_col = names.index(self.split.item_field)
        self._item_cols = [k for k, f in enumerate(data.fields) if f.role == Role.ITEM]
        X = data.X["train"]
        self._user_rows = np.zeros((self.split.n_users, X.shape[1]), np.int64)
        self._user_rows[X[:, self._u_col]] = X
        self._item_rows = np.zeros((self.split.n_items, X.shape[1]), np.int64)
        self._item_rows[X[:, self._i_col]] = X

    def _run(self, X: np.ndarray) -> np.ndarray:
        import torch

        from gprec.training.trainer import predict

        return predict(self.model, torch.from_numpy(np.ascontiguousarray(X)), transform=self._t)

    def _t(self, output):
        return output + self.offset

    def predict_split(self, split: str) -> np.ndarray:
        return self._run(self.data.X[split]).astype(np.float64)

    def predict(self, users, items) -> np.ndarray:
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        X = self._user_rows[users].copy()
        X[:, self._item_cols] = self._item_rows[items][:, self._item_cols]
        X[:, self._u_col] = users
        return self._run(X).astype(np.float64)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- scoring


def ranking_masks(split: RatingSplit):
    """Users and items of the full ranking, what each user has seen, and what is relevant.

    Candidates: every item known from training (index >= 1) that the user rated neither in
    train nor in valid (valid ratings are known interactions, used for early stopping: they
    are neither candidates nor relevant). Relevant: the user's test items rated >= 3.5.
    Users: every user known from training. Rows with an unseen user or item (index 0) cannot
    be placed in this matrix and are counted as left out.
    """
    users = np.arange(1, split.n_users)
    items = np.arange(1, split.n_items)
    seen = np.zeros((len(users), len(items)), bool)
    for s in ("train", "valid"):
        u, i = split.users[s], split.items[s]
        ok = (u > 0) & (i > 0)
        seen[u[ok] - 1, i[ok] - 1] = True
    u, i, r = split.users["test"], split.items["test"], split.ratings["test"]
    ok = (u > 0) & (i > 0)
    test = np.zeros_like(seen)
    liked = ok & (r >= THRESHOLD)
    test[u[liked] - 1, i[liked] - 1] = True
    left_out = {"test_rows_unseen_user_or_item": int((~ok).sum())}
    return users, items, seen, test, left_out


def score_model(model: RatingModel, split: RatingSplit, masks) -> dict:
    """Every metric of one fitted model on one split."""
    out: dict = {}
    for s in ("valid", "test"):
        pred = model.predict_split(s)
        if np.isnan(pred).any():
            raise ValueError(f"{model.name}: NaN predictions on {s}")
        out[s] = regression_metrics(split.ratings[s], pred)
        if s == "test":
            test_pred = pred
    keep = split.users["test"] > 0  # per-user protocol: a user must be identifiable
    paper = dmtl_precision_recall(
        split.users["test"][keep], split.ratings["test"][keep], test_pred[keep], K, THRESHOLD
    )
    out["paper"] = paper.to_dict() | {"rows_left_out_unseen_user": int((~keep).sum())}
    users, items, seen, test, left_out = masks
    t0 = time.perf_counter()
    scores = model.grid(users, items)
    full = full_ranking_report(scores, seen, test, ks=(K,))
    out["full"] = full.to_dict() | left_out
    out["score_seconds"] = time.perf_counter() - t0
    return out


def run_seed(seed: int, args) -> dict:
    """Train (or reuse) DMTL and score every model on this seed's split; cached per model."""
    seed_dir = args.runs / f"seed-{seed}"
    run_dir = seed_dir / "dmtl"
    seed_dir.mkdir(parents=True, exist_ok=True)
    train_info = train_dmtl(run_dir, seed, args)
    cache_file = seed_dir / "scores.json"
    fingerprint = {
        "protocol": PROTOCOL_VERSION,
        "k": K,
        "threshold": THRESHOLD,
        "checkpoint": file_sha(run_dir / "model.pt"),
        "config": file_sha(run_dir / "config.yaml"),
    }
    cached = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    if cached.get("fingerprint") != fingerprint:
        cached = {"fingerprint": fingerprint, "models": {}}
    if train_info.get("command_seconds") is not None:
        cached["dmtl_command_seconds"] = train_info["command_seconds"]
    done = cached["models"]
    todo = [m for m in MODELS if m not in done]
    if not todo:
        print(f"[seed {seed}] all models scored, reused {cache_file}", flush=True)
        return cached

    from gprec.config import load_config
    from gprec.data.dataset import load_dataset
    from gprec.training.run_dir import read_metrics

    cfg = load_config(run_dir / "config.yaml")  # the run's resolved config: the same rows
    data = load_dataset(cfg.data, cfg.split_seed())
    split = RatingSplit.from_dataset(data)
    metrics = read_metrics(run_dir)
    rows = {s: len(split.ratings[s]) for s in ("train", "valid", "test")}
    if metrics["data"]["rows"] != rows:
        raise RuntimeError(
            f"split differs from the DMTL run's: {rows} vs {metrics['data']['rows']}"
        )
    masks = ranking_masks(split)
    cached["split"] = {
        "rows": rows,
        "n_users": split.n_users - 1,
        "n_items": split.n_items - 1,
        "unseen_test": split.unseen("test"),
        "unseen_valid": split.unseen("valid"),
    }
    for key in todo:
        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        if key == "dmtl":
            model = GprecRunModel(run_dir, data, args.threads)
            fit = {
                "fit_seconds": (
                    metrics["train"]["seconds_per_epoch"]
                    + metrics["train"]["eval_seconds_per_epoch"]
                )
                * metrics["epochs_run"],
                "epochs_run": metrics["epochs_run"],
                "best_epoch": metrics["valid"]["best_epoch"],
                "wall_seconds": metrics["wall_seconds"],
                "threads": metrics["environment"]["threads"],
                "device": metrics["environment"]["device"],
                "run_test_rmse": metrics["test"]["rmse"],
            }
        else:
            model = make_baseline(key, seed).fit(split)
            fit = {"fit_seconds": model.fit_seconds}
        result = score_model(model, split, masks) | fit | {"load_average_at_fit": load}
        if key == "dmtl":
            # The checkpoint reproduces the run's own test RMSE: same rows, same model.
            if abs(result["test"]["rmse"] - metrics["test"]["rmse"]) > 1e-4:
                raise RuntimeError(
                    f"DMTL test RMSE {result['test']['rmse']:.6f} from the checkpoint differs "
                    f"from the run's {metrics['test']['rmse']:.6f}"
                )
            clipped = np.clip(model.predict_split("test"), *split.rating_scale)
            result["test_clipped_to_scale"] = regression_metrics(split.ratings["test"], clipped)
        done[key] = result
        write_text_atomic(cache_file, json.dumps(cached, indent=1))
        print(
            f"[seed {seed}] {LABELS.get(key, key):13s} test RMSE {result['test']['rmse']:.4f} "
            f"P@10 {result['paper']['precision@10']:.4f} full NDCG@10 {result['full']['ndcg@10']:.4f} "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
    return cached


# --------------------------------------------------------------------------- summary


def _stats(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else None,
        "n": len(v),
        "values": v.tolist(),
    }


METRIC_PATHS = {
    "rmse": ("test", "rmse"),
    "mae": ("test", "mae"),
    "valid_rmse": ("valid", "rmse"),
    "paper_precision@10": ("paper", "precision@10"),
    "paper_recall@10": ("paper", "recall@10"),
    "full_precision@10": ("full", "precision@10"),
    "full_recall@10": ("full", "recall@10"),
    "full_ndcg@10": ("full", "ndcg@10"),
}


def summarise(by_seed: dict[int, dict]) -> dict:
    from scipy.stats import ttest_rel

    seeds = sorted(by_seed)
    models = {}
    for key in MODELS:
        runs = [by_seed[s]["models"][key] for s in seeds]
        models[key] = {
            "label": LABELS.get(key, key),
            **{name: _stats([r[a][b] for r in runs]) for name, (a, b) in METRIC_PATHS.items()},
            "fit_seconds": _stats([r["fit_seconds"] for r in runs]),
        }
    first = by_seed[seeds[0]]["models"]
    bounds = {}
    for proto, names in (
        ("paper", ("precision@10", "recall@10")),
        ("full", ("precision@10", "recall@10", "ndcg@10")),
    ):
        for name in names:
            for bound in ("perfect", "random"):
                vals = [by_seed[s]["models"]["dmtl"][proto][f"{name}_{bound}"] for s in seeds]
                bounds[f"{proto}_{name}_{bound}"] = _stats(vals)
    best = min(LEARNED_BASELINES, key=lambda k: models[k]["valid_rmse"]["mean"])
    a = np.array(models["dmtl"]["rmse"]["values"])
    b = np.array(models[best]["rmse"]["values"])
    test = {
        "metric": "test RMSE",
        "candidate": "dmtl",
        "baseline": best,
        "baseline_chosen_by": "lowest mean validation RMSE among the learned baselines",
        "alternative": "DMTL's test RMSE is lower (one-sided, paired by seed, scipy ttest_rel)",
        "n_seeds": len(seeds),
        "mean_difference": float((a - b).mean()),
        "p_value": None,
    }
    if len(seeds) >= 2:
        p = ttest_rel(a, b, alternative="less").pvalue
        test["p_value"] = None if np.isnan(p) else float(p)
    else:
        test["note"] = "one seed: no test (needs at least two paired seeds)"
    d = first["dmtl"]
    timing = {
        "seed": seeds[0],
        "dmtl_train_seconds": d["fit_seconds"],
        "dmtl_epochs": d["epochs_run"],
        "dmtl_wall_seconds": d["wall_seconds"],
        "dmtl_threads": d["threads"],
        "dmtl_device": d["device"],
        "svdpp_fit_seconds": first["svdpp"]["fit_seconds"],
        "load_average_at_fit": {
            "dmtl_scoring": d["load_average_at_fit"],
            "svdpp": first["svdpp"]["load_average_at_fit"],
        },
    }
    import surprise
    import torch

    return {
        "seeds": seeds,
        "split": {s: by_seed[s]["split"] for s in seeds},
        "models": models,
        "bounds": bounds,
        "paper": PAPER,
        "paired_test": test,
        "timing": timing,
        "dmtl_test_rmse_clipped": _stats(
            [by_seed[s]["models"]["dmtl"]["test_clipped_to_scale"]["rmse"] for s in seeds]
        ),
        "protocol": {
            "split": "gprec's random 80/10/10 split of ML-100K; the seed fixes it (data.split_seed = train.seed)",
            "dmtl": "gprec train "
            + " ".join(f"-c {c}" for c in CONFIGS)
            + " "
            + " ".join(f"--set {s}" for s in DMTL_SETTINGS)
            + " --set train.seed=S; best epoch on validation RMSE; prediction = output + offset, unclipped",
            "baselines": "scikit-surprise defaults, random_state = seed; fitted on the training rows; "
            "ratings clipped to the training scale (Surprise's predict), ranking scores unclipped",
            "paper_protocol": f"per user over the test ratings: relevant = rating >= {THRESHOLD}, "
            f"recommended = top-{K} by prediction with prediction >= {THRESHOLD}; ties against the "
            "model; users without relevant / recommended items count 0 (Surprise's convention)",
            "full_ranking": f"all items known from training that the user rated neither in train nor "
            f"in valid; relevant = test items rated >= {THRESHOLD}; ties against relevant items",
            "popularity": "rating = item's training mean; ranking score = its training count",
            "random": "N(mean, std) of training ratings, a fixed seeded function of the pair",
            "perfect": "the true ratings (valid/test) of each pair; 0 for unrated pairs",
        },
        "environment": {
            "python": platform.python_version(),
            "surprise": surprise.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
    }


def _fmt(stat: dict | None, digits: int = 4) -> str:
    if stat is None:
        return ""
    if stat["std"] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown(summary: dict) -> str:
    seeds = summary["seeds"]
    n = len(seeds)
    head = (
        f"{n} seed{'s' if n > 1 else ''} ({', '.join(map(str, seeds))}): mean ± std (ddof 1)"
        if n > 1
        else f"ONE SEED ({seeds[0]}): single values, no spread, no test"
    )
    m, bd = summary["models"], summary["bounds"]
    lines = [
        "# DMTL vs classic CF baselines on MovieLens-100K",
        "",
        f"{head}. Generated by `benchmarks/dmtl_ml100k.py`; every model on the same gprec split "
        "per seed. Protocol details in `summary.json` (`protocol`).",
        "",
        "## Rating prediction (test)",
        "",
        "| model | RMSE | MAE | valid RMSE |",
        "|---|---|---|---|",
    ]
    for r in m.values():
        lines.append(
            f"| {r['label']} | {_fmt(r['rmse'])} | {_fmt(r['mae'])} | {_fmt(r['valid_rmse'])} |"
        )
    lines += [
        "",
        f"DMTL's predictions are unclipped; clipped to the rating scale its test RMSE would be "
        f"{_fmt(summary['dmtl_test_rmse_clipped'])}. Surprise's models are clipped (its `predict`).",
        "",
        "## The DMTL paper's per-user P@10 / R@10 (threshold 3.5, over each user's test ratings)",
        "",
        "| model | P@10 | R@10 |",
        "|---|---|---|",
    ]
    for r in m.values():
        lines.append(
            f"| {r['label']} | {_fmt(r['paper_precision@10'])} | {_fmt(r['paper_recall@10'])} |"
        )
    lines += [
        f"| *perfect ranker (bound)* | {_fmt(bd['paper_precision@10_perfect'])} | "
        f"{_fmt(bd['paper_recall@10_perfect'])} |",
        f"| *recommend-all reference (a random order, no threshold)* | {_fmt(bd['paper_precision@10_random'])} | "
        f"{_fmt(bd['paper_recall@10_random'])} |",
        f"| *DMTL paper (its own split and code)* | {summary['paper']['precision@10']:.4f} | "
        f"{summary['paper']['recall@10']:.4f} |",
        "",
        "## Full ranking over unseen items (relevant = test items rated >= 3.5)",
        "",
        "| model | P@10 | R@10 | NDCG@10 |",
        "|---|---|---|---|",
    ]
    for r in m.values():
        lines.append(
            f"| {r['label']} | {_fmt(r['full_precision@10'])} | {_fmt(r['full_recall@10'])} | "
            f"{_fmt(r['full_ndcg@10'])} |"
        )
    for bound in ("perfect", "random"):
        lines.append(
            f"| *{bound} ranker (bound)* | {_fmt(bd[f'full_precision@10_{bound}'])} | "
            f"{_fmt(bd[f'full_recall@10_{bound}'])} | {_fmt(bd[f'full_ndcg@10_{bound}'])} |"
        )
    t, tm = summary["paired_test"], summary["timing"]
    p = "n/a (" + t.get("note", "") + ")" if t["p_value"] is None else f"{t['p_value']:.4g}"
    lines += [
        "",
        "## Paired test",
        "",
        f"DMTL vs {LABELS.get(t['baseline'], t['baseline'])} (the baseline with the lowest mean "
        f"validation RMSE), test RMSE, one-sided paired t-test over {t['n_seeds']} seed(s): "
        f"mean difference {t['mean_difference']:+.4f}, p = {p}.",
        "",
        "## Training time (one run, seed " + str(tm["seed"]) + ")",
        "",
        f"- DMTL: {tm['dmtl_train_seconds']:.1f} s of training and validation over "
        f"{tm['dmtl_epochs']} epochs ({tm['dmtl_wall_seconds']:.1f} s for the whole `gprec train`, "
        f"data loading included; {tm['dmtl_threads']} torch thread(s), {tm['dmtl_device']})",
        f"- SVD++: {tm['svdpp_fit_seconds']:.1f} s to fit (Surprise, one core)",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not (args.data / "u.data").is_file():
        print(f"error: no ML-100K at {args.data} (set --data)", file=sys.stderr)
        return 2
    by_seed = {s: run_seed(s, args) for s in seeds}
    summary = summarise(by_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(args.out / "summary.md", markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
