"""Two CPU settings that look like free speed, measured: bfloat16 autocast and OMP_WAIT_POLICY.

On ML-100K (training split of seed 2024, shipped configs), for the MLP and GPRec(MLP) with the
`input` and `dynamic` strategies, seconds per training epoch and the training BCE reached:

- `float32`: the trainer as it is;
- `bfloat16`: forward and loss under `torch.autocast("cpu", dtype=torch.bfloat16)` (this
  CPU has AVX512-BF16); the BCE shows what the lower precision costs the optimisation;
- `float32, OMP_WAIT_POLICY=PASSIVE`: OpenMP threads sleep instead of spinning between
  parallel regions, which helps when two jobs share the cores; measured here alone.

Every measurement runs in a fresh process (the wait policy is read once, when OpenMP starts),
from the same initial weights and batch order: one untimed warm-up epoch, then the median of
the timed ones. Not timed unit tests: the output is committed under benchmarks/results/.

    python benchmarks/cpu_settings_speed.py [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_vs_dataloader import (  # noqa: E402
    QUIET_SHARE,
    machine_info,
    wait_for_quiet,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
NAME = "cpu_settings_speed"
MODELS = ("mlp", "gprec-input", "gprec-dynamic")
SETTINGS = {
    "float32": ("float32", {}),
    "bfloat16": ("bfloat16", {}),
    "float32, OMP_WAIT_POLICY=PASSIVE": ("float32", {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def child(model_name: str, precision: str, epochs: int, threads: int, data_dir: str) -> dict:
    """One model, one setting: seconds per epoch and the last epoch's mean training BCE."""
    import torch.nn.functional as F

    from gprec.config import load_config
    from gprec.data.dataset import load_dataset
    from gprec.models.registry import build_model
    from gprec.training.trainer import as_tensors, iterate_batches, seed_everything

    torch.set_num_threads(threads)
    cfg = load_config(ROOT / f"configs/ml-100k/{model_name}.yaml", [f"data.path={data_dir}"])
    data = load_dataset(cfg.data, cfg.train.seed)
    X, y = as_tensors(data.X["train"], data.y["train"])
    generator = seed_everything(cfg.train.seed)
    model = build_model(cfg.model, data.fields)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True
    )
    bf16 = precision == "bfloat16"
    seconds, bce = [], []
    for _ in range(epochs + 1):
        model.train()
        total, batches = 0.0, 0
        start = time.perf_counter()
        for xb, yb in iterate_batches(X, y, cfg.train.batch_size, generator):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(xb, yb)
                main = F.binary_cross_entropy_with_logits(out.logit.float(), yb)
                aux = sum(v.float() for v in out.aux_losses.values())
            optimizer.zero_grad(set_to_none=True)
            (main + aux).backward()
            optimizer.step()
            total, batches = total + main.detach(), batches + 1
        seconds.append(time.perf_counter() - start)
        bce.append(float(total) / batches)
    return {
        "seconds_per_epoch": statistics.median(seconds[1:]),  # the first is the warm-up
        "train_bce_per_epoch": bce,
        "train_rows": len(y),
    }


def measure(model: str, precision: str, env: dict, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", model, "--precision", precision]
    cmd += ["--epochs", str(args.epochs), "--threads", str(args.threads)]
    cmd += ["--data-dir", args.data_dir]
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "## CPU settings: bfloat16 autocast and OMP_WAIT_POLICY, ML-100K",
        "",
        f"{res['train_rows']:,} training rows, batch 4096, median of {res['epochs_timed']} timed "
        f"epochs after a warm-up, each measurement in a fresh process; {m['cpu_model']}, "
        f"{m['torch_threads']} torch threads, torch {m['torch']}. Cost: against the same "
        "model in float32. BCE: mean training BCE of the last epoch (same weights and batches "
        "at the start).",
        "",
        "| model | setting | seconds / epoch | cost vs float32 | vs MLP, same setting "
        "| train BCE, last epoch |",
        "|---|---|---|---|---|---|",
    ]
    for model, by_setting in res["results"].items():
        base = by_setting["float32"]["seconds_per_epoch"]
        for setting, r in by_setting.items():
            mlp = res["results"]["mlp"][setting]["seconds_per_epoch"]
            lines.append(
                f"| {model} | {setting} | {r['seconds_per_epoch']:.3f} | "
                f"{r['seconds_per_epoch'] / base:.2f}x | {r['seconds_per_epoch'] / mlp:.1f}x | "
                f"{r['train_bce_per_epoch'][-1]:.4f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-wait", type=float, default=300.0, help="seconds to wait for quiet")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        r = child(args.child, args.precision, args.epochs, args.threads, args.data_dir)
        print(json.dumps(r))
        return 0
    quiet = wait_for_quiet(args.max_wait, QUIET_SHARE)
    results: dict[str, dict] = {}
    rows = 0
    for model in MODELS:
        results[model] = {}
        for setting, (precision, env) in SETTINGS.items():
            r = measure(model, precision, env, args)
            rows = r.pop("train_rows")
            results[model][setting] = r
            print(f"{model:14s} {setting:34s} {r['seconds_per_epoch']:.3f} s", file=sys.stderr)
    torch.set_num_threads(args.threads)  # machine_info reports this process's threads
    res = {
        "benchmark": NAME,
        "train_rows": rows,
        "epochs_timed": args.epochs,
        "results": results,
        "waited_for_quiet": quiet,
        "machine": machine_info(args.threads),
    }
    md = markdown(res)
    write_results(Path(args.out), NAME, res, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
