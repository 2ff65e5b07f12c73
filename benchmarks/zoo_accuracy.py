"""Accuracy of the backbone zoo, bare and under GPRec (issue 17, acceptance 3 and 4).

The plan: every backbone bare and under GPRec (each strategy it declares) on ML-100K with
five seeds; all eight bare on ML-1M with three seeds, GPRec around the paper's two headline
rows (MLP and GDCN). Each (dataset, model, seed) is one `gprec train` run in
`OUT/<dataset>/<backbone>/<model>/seed-<seed>/` (the layout of `gprec compare`), with the
dataset's shipped config and the model's defaults; `zoo_tables.py` then reads the runs and
writes the comparisons (the bare backbone as the pre-specified baseline, GPRec's strategy
chosen on mean validation AUC) and the Table-III-style summary.

The runs are independent, so they run as parallel processes (longest first). On a CPU
machine use `--workers 1` (two torch processes on two cores slow each other many times
over); on a machine with a GPU and many cores, `--device cuda --workers 15` (about 9 minutes
on one H200 with 16 cores for the 192 runs). A run already finished is not repeated, so a
second call with the same `--out` completes an interrupted plan.

    python benchmarks/zoo_accuracy.py --data-root ../shared/data --out runs/zoo-accuracy
    python benchmarks/zoo_tables.py runs/zoo-accuracy

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
# Acceptance 3: every backbone on ML-100K, five seeds; acceptance 4: all eight bare on ML-1M,
# three seeds, GPRec only around the paper's two headline rows (MLP and GDCN).
PLAN = {
    "ml-100k": {"seeds": "2024,2025,2026,2027,2028", "gprec": BACKBONES},
    "ml-1m": {"seeds": "2024,2025,2026", "gprec": ["mlp", "gdcn"]},
}
DATA_SETS = {"ml-1m": ["data.ratings_file=ratings_no_timestamp.dat"]}
# Rough relative cost of one run, to start the longest first (the pool then packs well).
COST = {"autoint": 6, "destine": 4, "dcnv2": 2, "gdcn": 2, "finalmlp": 2}


def strategies(backbone: str) -> list[str]:
    return list(model_class(backbone).gprec_strategies)


def model_specs(dataset: str, backbone: str) -> tuple[str, list[str]]:
    """The bare backbone's label and every model spec of its experiment."""
    specs = [backbone]
    if backbone in PLAN[dataset]["gprec"]:
        for s in strategies(backbone):
            option = "" if backbone == "mlp" else f"[backbone.name={backbone}]"
            specs.append(f"configs/{dataset}/gprec-{s}.yaml{option}")
    return backbone, specs


def run_dir(args, dataset: str, backbone: str, spec: str, seed: str) -> Path:
    label = safe_dirname(parse_model_spec(spec).label)
    return Path(args.out) / dataset / backbone / label / f"seed-{seed}"


def finished(args, dataset: str, backbone: str, spec: str, seed: str) -> bool:
    return (run_dir(args, dataset, backbone, spec, seed) / "metrics.json").is_file()


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
    p.add_argument("--datasets", default="ml-100k,ml-1m")
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seeds", help="override the plan's seeds (a smoke test)")
    p.add_argument("--set", action="append", default=[], help="extra config override")
    p.add_argument("--deadline", type=float, default=None, help="seconds; see the docstring")
    args = p.parse_args()
    args.out = str(Path(args.out).resolve())
    args.data_root = str(Path(args.data_root).resolve())
    if args.seeds:
        for plan in PLAN.values():
            plan["seeds"] = args.seeds
    os.chdir(ROOT)  # model specs name config files relative to the repository
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    jobs = []
    for dataset in args.datasets.split(","):
        for backbone in args.backbones.split(","):
            _, specs = model_specs(dataset, backbone)
            for spec in specs:
                cost = COST.get(backbone, 1) * (3 if "gprec" in spec else 1)
                cost *= 10 if dataset == "ml-1m" else 1
                for seed in PLAN[dataset]["seeds"].split(","):
                    jobs.append((cost, dataset, backbone, spec, seed))
    jobs.sort(key=lambda j: -j[0])

    def run(job) -> tuple[str, int]:
        _, dataset, backbone, spec, seed = job
        name = f"{dataset}_{backbone}_{safe_dirname(parse_model_spec(spec).label)}_{seed}"
        out = run_dir(args, dataset, backbone, spec, seed)
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
