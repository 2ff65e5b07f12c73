"""Parallel, resumable training of an accuracy plan: many `gprec train` runs, one per
(dataset, model, seed), in the layout of `gprec compare` (`OUT/<dataset>/<experiment>/<model>/
seed-<seed>/`), with each dataset's shipped config and each model's defaults.

Plans:
- `zoo` (issue 17, acceptance 3 and 4): every backbone bare and under GPRec (each strategy it
  declares) on ML-100K, five seeds; all eight bare on ML-1M, three seeds, with GPRec around
  the paper's two headline rows (MLP and GDCN). One experiment per backbone; tables:
  `zoo_tables.py`.
- `user-modeling` (issue 18, acceptance 2 and 3): MMoE, PLE, STAR, APG, PEPNet and DGPM by
  name, same datasets and seeds, in experiment `table-ii`; MLP and GPRec(MLP) are the zoo
  plan's `mlp` experiment. Tables: `user_modeling_tables.py`.

The runs are independent, so they run as parallel processes (longest first). On a CPU
machine use `--workers 1` (two torch processes on two cores slow each other many times
over); on a machine with a GPU and many cores, `--device cuda --workers 15` (the zoo plan's
192 runs took about 9 minutes on one H200 with 16 cores). A run already finished is not
repeated, so a second call with the same `--out` completes an interrupted plan.

    python benchmarks/accuracy_runs.py --data-root ../shared/data --out runs/accuracy
    python benchmarks/accuracy_runs.py --plan user-modeling --data-root ../shared/data --out runs/accuracy
    python benchmarks/zoo_tables.py runs/accuracy
    python benchmarks/user_modeling_tables.py runs/accuracy

`--deadline SECONDS` stops starting new runs after that long (those started are finished),
so a bounded machine still returns every finished run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from gprec.experiments.compare import parse_model_spec, safe_dirname  # noqa: E402
from gprec.models.registry import model_class  # noqa: E402

BACKBONES = ["mlp", "deepfm", "dcn", "dcnv2", "gdcn", "finalmlp", "destine", "autoint"]
# Issue 18's Table II lower half: the user-modeling baselines, each by name on the dataset's
# MLP config with its defaults. MLP and GPRec(MLP) are the zoo plan's `mlp` experiment (same
# configs and seeds): `user_modeling_tables.py` reads them from there.
USER_MODELS = ["mmoe", "ple", "star", "apg", "pepnet", "dgpm"]
SEEDS = {"ml-100k": "2024,2025,2026,2027,2028", "ml-1m": "2024,2025,2026"}
# zoo (issue 17, acceptance 3 and 4): every backbone on ML-100K, five seeds; all eight bare on
# ML-1M, three seeds, GPRec only around the paper's two headline rows (MLP and GDCN).
GPREC_AROUND = {"ml-100k": BACKBONES, "ml-1m": ["mlp", "gdcn"]}
DATA_SETS = {"ml-1m": ["data.ratings_file=ratings_no_timestamp.dat"]}
# Rough relative cost of one run, to start the longest first (the pool then packs well).
COST = {"autoint": 6, "destine": 4, "dcnv2": 2, "gdcn": 2, "finalmlp": 2, "gprec": 3}


def strategies(backbone: str) -> list[str]:
    return list(model_class(backbone).gprec_strategies)


def model_specs(dataset: str, backbone: str) -> list[str]:
    """Every model spec of a backbone's zoo experiment, the bare backbone first."""
    specs = [backbone]
    if backbone in GPREC_AROUND[dataset]:
        for s in strategies(backbone):
            option = "" if backbone == "mlp" else f"[backbone.name={backbone}]"
            specs.append(f"configs/{dataset}/gprec-{s}.yaml{option}")
    return specs


def experiments(args, dataset: str) -> dict[str, list[str]]:
    """The plan's experiments on `dataset`: folder name -> model specs."""
    if args.plan == "user-modeling":
        return {"table-ii": USER_MODELS}
    if args.bare:
        return {b: [b] for b in args.backbones.split(",")}
    return {b: model_specs(dataset, b) for b in args.backbones.split(",")}


def cost(dataset: str, spec: str) -> int:
    """A rough relative cost of one run, so the longest start first."""
    c = 1
    for key, factor in COST.items():
        c *= factor if key in spec else 1
    return c * (10 if dataset == "ml-1m" else 1)


def run_dir(args, dataset: str, experiment: str, spec: str, seed: str) -> Path:
    label = safe_dirname(parse_model_spec(spec).label)
    return Path(args.out) / dataset / experiment / label / f"seed-{seed}"


def finished(args, dataset: str, experiment: str, spec: str, seed: str) -> bool:
    return (run_dir(args, dataset, experiment, spec, seed) / "metrics.json").is_file()


def train_command(args, dataset: str, spec: str, seed: str, out: Path) -> list[str]:
    """`gprec train` of one model spec (as `gprec compare --models` reads it) and seed."""
    parsed = parse_model_spec(spec)
    head = spec.split("[")[0]
    config = head if head.endswith(".yaml") else None
    cmd = [sys.executable, "-m", "gprec.cli.main", "train"]
    cmd += ["-c", config or f"configs/{dataset}/mlp.yaml"]
    sets = [f"data.path={Path(args.data_root) / dataset}", f"train.device={args.device}"]
    sets += ["train.threads=1", f"train.seed={seed}", *DATA_SETS.get(dataset, []), *args.set]
    if config is None:
        sets.append(f"model.name={spec}")
    sets += parsed.overrides
    return cmd + [a for item in sets for a in ("--set", item)] + ["--out", str(out)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="folder holding ml-100k/ and ml-1m/")
    p.add_argument("--out", required=True)
    p.add_argument("--plan", choices=["zoo", "user-modeling"], default="zoo")
    p.add_argument("--datasets", default="ml-100k,ml-1m")
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--bare", action="store_true", help="zoo plan: the bare backbones only")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seeds", help="override the plan's seeds (a smoke test)")
    p.add_argument("--set", action="append", default=[], help="extra config override")
    p.add_argument("--deadline", type=float, default=None, help="seconds; see the docstring")
    args = p.parse_args()
    args.out = str(Path(args.out).resolve())
    args.data_root = str(Path(args.data_root).resolve())
    if args.seeds:
        SEEDS.update(dict.fromkeys(SEEDS, args.seeds))
    os.chdir(ROOT)  # model specs name config files relative to the repository
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    jobs = []
    for dataset in args.datasets.split(","):
        for experiment, specs in experiments(args, dataset).items():
            for spec in specs:
                for seed in SEEDS[dataset].split(","):
                    jobs.append((cost(dataset, spec), dataset, experiment, spec, seed))
    jobs.sort(key=lambda j: -j[0])

    def run(job) -> tuple[str, int]:
        _, dataset, experiment, spec, seed = job
        name = f"{dataset}_{experiment}_{safe_dirname(parse_model_spec(spec).label)}_{seed}"
        out = run_dir(args, dataset, experiment, spec, seed)
        if (out / "metrics.json").is_file():
            return f"{dataset} {spec} seed {seed}: finished before", 0
        if args.deadline is not None and time.monotonic() - started > args.deadline:
            return f"{dataset} {spec} seed {seed}: not started (deadline)", -1
        cmd = train_command(args, dataset, spec, seed, out)
        with open(logs / f"{name}.log", "w") as log:
            rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return (
            f"{dataset} {spec} seed {seed}: exit {rc} after {time.monotonic() - started:.0f} s",
            rc,
        )

    with ThreadPoolExecutor(args.workers) as pool:
        for line, _ in pool.map(run, jobs):
            print(line, flush=True)

    missing = [j for j in jobs if not finished(args, *j[1:])]
    print(
        f"done in {time.monotonic() - started:.0f} s; {len(jobs) - len(missing)} of {len(jobs)} runs finished"
    )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
