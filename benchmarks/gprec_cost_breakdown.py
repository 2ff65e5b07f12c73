"""Where a GPRec training step's arithmetic goes, against the MLP's (issue 22, acceptance 3).

Counts the matmul FLOPs of one forward + backward step (torch.utils.flop_counter; elementwise
work, gathers and the optimizer are not counted) on real ML-1M training batches for the MLP
and for GPRec(MLP, `input`, G = 60) with the paper's classifier, the shared one, a smaller
shared one, and the shared one without each auxiliary loss. Machine-independent: it says what
the 3x-the-MLP epoch target leaves for the group level once the paper's own losses are paid.

    python benchmarks/gprec_cost_breakdown.py --ratings-file ratings_no_timestamp.dat
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from gprec.config import load_config
from gprec.data.dataset import load_dataset
from gprec.models.registry import build_model, resolve_model_options

ROOT = Path(__file__).resolve().parents[1]
SEED = 2024
SHARED = {"classifier": "shared"}
MODELS = {
    "mlp": {"name": "mlp"},
    "gprec-input (paper's classifier)": {},
    "gprec-input[classifier=shared]": SHARED,
    "gprec-input[classifier=shared, units [32] / [4]]": {
        **SHARED,
        "classifier_shared_units": [32],
        "classifier_group_units": [4],
    },
    "gprec-input[classifier=shared, no L_con]": {**SHARED, "lambda_contrastive": 0.0},
    "gprec-input[classifier=shared, no L_G, no L_con]": {
        **SHARED,
        "lambda_group": 0.0,
        "lambda_contrastive": 0.0,
    },
}


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(x, y)
        loss = F.binary_cross_entropy_with_logits(out.logit, y)
        (loss + sum(out.aux_losses.values())).backward()
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "ml-1m"))
    p.add_argument("--ratings-file", default="ratings.dat")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gprec-variants"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    overrides = [f"data.path={args.data_dir}", f"data.ratings_file={args.ratings_file}"]
    gprec_cfg = load_config(ROOT / "configs/ml-1m/gprec-input.yaml", overrides)
    data = load_dataset(gprec_cfg.data, SEED)
    # Shuffled, as training batches are: the file is sorted by user, so its first rows would
    # hold a handful of users and leave the per-user classifier almost nothing to do.
    pick = torch.randperm(data.size("train"), generator=torch.Generator().manual_seed(SEED))
    pick = pick[: 4096 * args.batches].numpy()
    X = torch.from_numpy(data.X["train"][pick].astype("int64"))
    y = torch.from_numpy(data.y["train"][pick].astype("float32"))
    base_model = {**gprec_cfg.model}
    flops = {}
    for label, opts in MODELS.items():
        section = {**base_model["backbone"], **opts} if opts.get("name") else {**base_model, **opts}
        torch.manual_seed(SEED)
        model = build_model(resolve_model_options(section), data.fields)
        total = sum(
            step_flops(model, xb, yb) for xb, yb in zip(X.split(4096), y.split(4096), strict=True)
        )
        flops[label] = total / len(y)
    base = flops["mlp"]
    rows = [{"model": k, "flops_per_row": v, "vs_mlp": v / base} for k, v in flops.items()]
    lines = [
        "## GPRec's arithmetic per training row against the MLP's (ML-1M, G = 60, `input`)",
        "",
        f"Matmul FLOPs of forward + backward, {len(y):,} training rows drawn at random in "
        "batches of 4096, as training shuffles them (the classifier runs once per distinct "
        "user of a batch), torch.utils.flop_counter. Epoch times "
        "(gprec_classifier_cost_ml1m.md) also pay for gathers, elementwise work and the "
        "optimizer, which this leaves out.",
        "",
        "| model | matmul FLOPs / row | vs MLP |",
        "|---|---|---|",
        *(f"| {r['model']} | {r['flops_per_row']:,.0f} | {r['vs_mlp']:.2f}x |" for r in rows),
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost_breakdown.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "cost_breakdown.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
