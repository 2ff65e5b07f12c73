"""Seconds per training epoch: MLP vs GPRec(MLP, G=60) on MovieLens-100K, in one run.

Every model is built from its shipped config (`configs/ml-100k/*.yaml`) and trained
through `Trainer._train_epoch` on the same training split (seed 2024) with the trainer's
own optimizer (fused Adam). The models take turns epoch by epoch (round-robin), so a
change in the machine's load hits all of them alike; a warm-up epoch each is not timed,
and evaluation is not timed. The acceptance figure is GPRec's cost relative to the MLP
(issue 3: at most 3x), reported for each construction strategy.

The warm-up epoch also counts each model's matrix-multiply FLOPs (forward and backward,
`torch.utils.flop_counter`; elementwise work, gathers and the optimizer are not counted),
and the script measures the best float32 GEMM rate torch reaches here on large square
matrices. Their quotient is a floor on an epoch's time for these matmuls: GPRec's small
per-group matmuls run below that rate in practice, so the floor is generous. It bounds
this computation, not every conceivable one (e.g. the classifier's first layer could be
split by field), and the best measured rate is not the CPU's theoretical peak.

    python benchmarks/gprec_speed.py                  # ML-100K from ../shared/data/ml-100k
    python benchmarks/gprec_speed.py --epochs 5 --threads 2
    # issue 22: the shared classifier's cost beside the paper's, at G = 60 on ML-1M
    python benchmarks/gprec_speed.py --dataset ml-1m --models classifier \
        --ratings-file ratings_no_timestamp.dat
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

# The sibling benchmark owns the machine-load helpers; this script is run as a file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_vs_dataloader import (  # noqa: E402
    QUIET_SHARE,
    CpuMeter,
    busy_note,
    log,
    machine_info,
    summarise,
    wait_for_quiet,
    write_results,
)

from gprec.config import load_config  # noqa: E402
from gprec.data.dataset import load_dataset  # noqa: E402
from gprec.models.registry import build_model  # noqa: E402
from gprec.training.run import count_parameters  # noqa: E402
from gprec.training.trainer import Trainer, as_tensors, seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "gprec_speed_ml100k"
SEED = 2024
MAX_COST = 3.0
MODELS = {
    "mlp": "configs/ml-100k/mlp.yaml",
    "gprec-input": "configs/ml-100k/gprec-input.yaml",
    "gprec-dynamic": "configs/ml-100k/gprec-dynamic.yaml",
    "gprec-ensemble": "configs/ml-100k/gprec-ensemble.yaml",
}
# --models classifier: the shared (cheaper) group classifier of issue 22 beside the paper's.
SHARED = ["model.classifier=shared"]
CLASSIFIER_MODELS = {
    "mlp": ("mlp.yaml", []),
    "gprec-dynamic": ("gprec-dynamic.yaml", []),
    "gprec-dynamic[classifier=shared]": ("gprec-dynamic.yaml", SHARED),
    "gprec-input": ("gprec-input.yaml", []),
    "gprec-input[classifier=shared]": ("gprec-input.yaml", SHARED),
    "gprec-input[classifier=shared,input_scale=zero]": (
        "gprec-input.yaml",
        [*SHARED, "model.input_scale=zero"],
    ),
}


def model_set(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    """name -> (config path, overrides) of the models `--models` and `--dataset` name."""
    if args.models == "strategies":
        if args.dataset != "ml-100k":
            raise SystemExit("--models strategies is the ML-100K table; use --models classifier")
        return {name: (path, []) for name, path in MODELS.items()}
    return {n: (f"configs/{args.dataset}/{f}", o) for n, (f, o) in CLASSIFIER_MODELS.items()}


def result_name(args: argparse.Namespace) -> str:
    if args.models == "strategies":
        return NAME
    return f"gprec_classifier_cost_{args.dataset.replace('-', '')}"


def peak_gemm_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 FLOP/s of an `n x n` by `n x n` matmul here: what GEMMs can reach at most."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    overrides = [f"data.path={args.data_dir}", f"train.seed={SEED}", "train.progress=false"]
    if args.ratings_file:
        overrides.append(f"data.ratings_file={args.ratings_file}")
    configs = {
        name: load_config(ROOT / path, [*overrides, *more])
        for name, (path, more) in model_set(args).items()
    }
    data = load_dataset(configs["mlp"].data, SEED)
    X, y = as_tensors(data.X["train"], data.y["train"])
    log(f"data: {data.name}, {len(y)} training rows, {len(data.fields)} fields")

    trainers, optimizers, generators, flops = {}, {}, {}, {}
    for name, cfg in configs.items():
        seed_everything(SEED)
        model = build_model(cfg.model, data.fields)
        trainers[name] = Trainer(model, cfg.train, log=lambda m: None)
        optimizers[name] = torch.optim.Adam(
            model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True
        )
        generators[name] = seed_everything(SEED)
        with FlopCounterMode(display=False) as counter:  # the untimed warm-up epoch
            trainers[name]._train_epoch((X, y), optimizers[name], generators[name], 0)
        flops[name] = counter.get_total_flops()

    quiet = wait_for_quiet(args.max_wait, QUIET_SHARE)
    peak = peak_gemm_flops()
    log(f"peak float32 GEMM here: {peak / 1e9:.0f} GFLOP/s")
    meters: dict[str, list[CpuMeter]] = {name: [] for name in configs}
    for epoch in range(1, args.epochs + 1):
        for name, trainer in trainers.items():
            with CpuMeter() as m:
                _, seconds = trainer._train_epoch((X, y), optimizers[name], generators[name], epoch)
            m.seconds = seconds  # the trainer's own timer: its batch loop only
            meters[name].append(m)
            log(f"  epoch {epoch} {name}: {seconds:.3f}s{busy_note(m)}")

    results = {}
    for name, ms in meters.items():
        r = summarise(ms, len(y))
        r["parameters"] = count_parameters(trainers[name].model)
        r["matmul_gflop_per_epoch"] = flops[name] / 1e9
        r["min_seconds_per_epoch"] = flops[name] / peak
        results[name] = r
    base = results["mlp"]["mean_seconds_per_epoch"]
    for r in results.values():
        r["cost_vs_mlp"] = r["mean_seconds_per_epoch"] / base
        r["min_cost_vs_mlp"] = r["min_seconds_per_epoch"] / base
    shares = [r["max_others_cpu_share"] for r in results.values() if r["max_others_cpu_share"]]
    return {
        "benchmark": result_name(args),
        "data": {"name": data.name, "train_rows": len(y), "split_seed": SEED},
        "models": {name: configs[name].model for name in configs},
        "batch_size": configs["mlp"].train.batch_size,
        "epochs_timed": args.epochs,
        "results": results,
        "peak_gemm_gflop_per_second": peak / 1e9,
        "max_cost_allowed": MAX_COST,
        "within_cost": {n: r["cost_vs_mlp"] <= MAX_COST for n, r in results.items()},
        "waited_for_quiet": quiet,
        "contended": bool(shares) and max(shares) > QUIET_SHARE,
        "machine": info,
    }


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"## Seconds per epoch: MLP vs GPRec(MLP, G=60) on {res['data']['name']}",
        "",
        f"{res['data']['train_rows']:,} training rows, batch {res['batch_size']}, "
        f"{res['epochs_timed']} timed epochs per model taken in turns; {m['cpu_model']}, "
        f"{m['torch_threads']} torch threads, torch {m['torch']}. Matmul GFLOP: forward and "
        "backward of one epoch, counted by torch.utils.flop_counter. Floor: those FLOPs at "
        f"the best float32 GEMM rate torch reached here ({res['peak_gemm_gflop_per_second']:.0f}"
        " GFLOP/s, a 2048x2048 matmul): a floor for this implementation's matmuls at the best "
        "measured rate, not for every conceivable implementation of the model (small per-group "
        "matmuls run well below that rate; matrix-vector products are not counted; the rate is "
        "not the CPU's theoretical peak). Last column: the floor over the MLP's measured epoch.",
        "",
        "| model | parameters | seconds / epoch | samples / second | cost vs MLP | <= 3x "
        "| matmul GFLOP / epoch | floor s / epoch | floor / MLP measured s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["results"].items():
        ok = "yes" if res["within_cost"][name] else "**no**"
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['mean_seconds_per_epoch']:.3f} | "
            f"{r['samples_per_second']:,.0f} | {r['cost_vs_mlp']:.2f}x | {ok} | "
            f"{r['matmul_gflop_per_epoch']:.2f} | {r['min_seconds_per_epoch']:.3f} | "
            f"{r['min_cost_vs_mlp']:.2f}x |"
        )
    if res["contended"]:
        lines += ["", "**Warning:** other processes used the CPUs during timing."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-100k")
    p.add_argument("--data-dir", help="the dataset's folder (default ../shared/data/DATASET)")
    p.add_argument(
        "--ratings-file", help="ml-1m: data.ratings_file (e.g. ratings_no_timestamp.dat)"
    )
    p.add_argument(
        "--models",
        choices=("strategies", "classifier"),
        default="strategies",
        help="strategies: the three GPRec strategies (gprec_speed_ml100k); classifier: the "
        "shared classifier beside the paper's (gprec_classifier_cost_<dataset>)",
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for quiet")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    args.data_dir = args.data_dir or str(ROOT.parent / "shared" / "data" / args.dataset)
    res = run(args)
    md = markdown(res)
    write_results(Path(args.out), result_name(args), res, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
