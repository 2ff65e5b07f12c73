"""Where a GPRec training step spends its time: torch.profiler over a few training steps.

Profiles the MLP and GPRec(MLP) from their shipped configs (default: ML-1M, GPRec with the
'dynamic' strategy) on real training batches, forward + backward + optimizer step, after
warm-up steps, and writes the operators that take the most self CPU time, with their input
shapes (the shapes tell which part of the model an operator belongs to).

    python benchmarks/profile_gprec.py                      # ML-1M from ../shared/data/ml-1m
    python benchmarks/profile_gprec.py --dataset ml-100k --strategy input
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_vs_dataloader import machine_info, write_results  # noqa: E402

from gprec.config import load_config  # noqa: E402
from gprec.data.dataset import load_dataset  # noqa: E402
from gprec.models.registry import build_model  # noqa: E402
from gprec.training.trainer import as_tensors, iterate_batches, seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = 2024


def step(model, optimizer, xb, yb) -> None:
    out = model(xb, yb)
    loss = F.binary_cross_entropy_with_logits(out.logit, yb)
    if out.aux_losses:
        loss = loss + sum(out.aux_losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def profile_model(cfg, data, X, y, steps: int, warmup: int, top: int) -> dict:
    seed_everything(SEED)
    model = build_model(cfg.model, data.fields)
    model.train()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True
    )
    batches = list(iterate_batches(X, y, cfg.train.batch_size, seed_everything(SEED)))[
        : warmup + steps
    ]
    for xb, yb in batches[:warmup]:
        step(model, optimizer, xb, yb)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for xb, yb in batches[warmup:]:
            step(model, optimizer, xb, yb)
    wall = (time.perf_counter() - start) / steps
    by_op = prof.key_averages()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)

    def top_of(evts) -> list:
        return sorted(evts, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]

    unique_users = [
        len(torch.unique(xb.index_select(1, model.user_idx), dim=0))
        if hasattr(model, "user_idx")
        else None
        for xb, _ in batches[warmup:]
    ]
    return {
        "ms_per_step_profiled": wall * 1000,
        "unique_user_rows_per_batch": unique_users,
        "top_ops": [
            {
                "op": e.key,
                "calls": e.count,
                "self_ms_per_step": e.self_cpu_time_total / 1000 / steps,
                "share": e.self_cpu_time_total / total,
            }
            for e in top_of(by_op)
        ],
        "top_ops_by_shape": [
            {
                "op": e.key,
                "input_shapes": str(e.input_shapes)[:120],
                "calls": e.count,
                "self_ms_per_step": e.self_cpu_time_total / 1000 / steps,
                "share": e.self_cpu_time_total / total,
            }
            for e in top_of(events)
        ],
    }


def markdown(res: dict) -> str:
    lines = [f"## Where a training step's time goes: {res['dataset']}", ""]
    for name, r in res["models"].items():
        lines += [
            f"### {name}: {r['ms_per_step_profiled']:.1f} ms per step (batch "
            f"{res['batch_size']}, under the profiler)",
            "",
            "| op | calls | self ms / step | share |",
            "|---|---|---|---|",
        ]
        for o in r["top_ops"]:
            lines.append(
                f"| {o['op']} | {o['calls']} | {o['self_ms_per_step']:.2f} | {o['share']:.1%} |"
            )
        lines += [
            "",
            "| op | input shapes | calls | self ms / step | share |",
            "|---|---|---|---|---|",
        ]
        for o in r["top_ops_by_shape"]:
            shapes = o["input_shapes"].replace("|", "/")
            lines.append(
                f"| {o['op']} | {shapes} | {o['calls']} | {o['self_ms_per_step']:.2f} | "
                f"{o['share']:.1%} |"
            )
        lines.append("")
    m = res["machine"]
    lines.append(f"{m['cpu_model']}, {m['torch_threads']} torch threads, torch {m['torch']}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dataset", default="ml-1m", choices=["ml-100k", "ml-1m"])
    p.add_argument("--data-dir", help="default: ../shared/data/<dataset>")
    p.add_argument("--ratings-file", default="ratings_no_timestamp.dat", help="ml-1m only")
    p.add_argument("--strategy", default="dynamic", choices=["input", "dynamic", "ensemble"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or str(ROOT.parent / "shared" / "data" / args.dataset)
    overrides = [f"data.path={data_dir}", f"train.seed={SEED}"]
    if args.dataset == "ml-1m":
        overrides.append(f"data.ratings_file={args.ratings_file}")
    configs = {
        "mlp": load_config(ROOT / f"configs/{args.dataset}/mlp.yaml", overrides),
        f"gprec-{args.strategy}": load_config(
            ROOT / f"configs/{args.dataset}/gprec-{args.strategy}.yaml", overrides
        ),
    }
    data = load_dataset(configs["mlp"].data, SEED)
    X, y = as_tensors(data.X["train"], data.y["train"])
    res = {
        "dataset": args.dataset,
        "batch_size": configs["mlp"].train.batch_size,
        "models": {
            name: profile_model(cfg, data, X, y, args.steps, args.warmup, args.top)
            for name, cfg in configs.items()
        },
        "machine": machine_info(args.threads),
    }
    stem = f"profile_{args.dataset}_gprec-{args.strategy}"
    md = markdown(res)
    write_results(Path(args.out), stem, res, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
