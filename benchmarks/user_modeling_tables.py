"""The paper's Table II lower half from `accuracy_runs.py`'s runs: MLP, MMoE, PLE, STAR, APG,
PEPNet, DGPM and GPRec(MLP), one comparison per dataset, beside the paper's numbers.

Reads `RUNS/<dataset>/table-ii/<model>/seed-*/metrics.json` (the `user-modeling` plan) and the
MLP and GPRec(MLP) runs of the zoo plan's `RUNS/<dataset>/mlp/` (the same configs and seeds),
trains nothing, and writes under `--out` (default `benchmarks/results/user-modeling`):
- `<dataset>/comparison.{json,md,csv}`: `gprec compare`'s report over all of them, every
  model that is not GPRec a baseline, so the pre-specified test is GPRec (the strategy with
  the best mean validation AUC) against the best baseline on mean validation AUC, once, on
  test, one-sided, paired and Welch;
- `summary.md`: per dataset, mean ± std of test AUC and LogLoss beside the paper's (ML-1M).

    python benchmarks/user_modeling_tables.py runs/accuracy
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from zoo_tables import read_runs  # noqa: E402

from gprec.experiments.compare import summary_from_runs, write_report  # noqa: E402
from gprec.io import write_text_atomic  # noqa: E402

MODELS = ["mlp", "mmoe", "ple", "star", "apg", "pepnet", "dgpm"]
# The paper's Table II, ML-1M, AUC / LogLoss, mean of 5 seeds (SPEC section 1).
PAPER_ML1M = {
    "mlp": (0.8081, 0.5407), "mmoe": (0.8081, 0.5234), "ple": (0.8088, 0.5226),
    "star": (0.8095, 0.5225), "apg": (0.8090, 0.5214), "pepnet": (0.8082, 0.5280),
    "dgpm": (0.8086, 0.5350), "gprec": (0.8141, 0.5181),
}  # fmt: skip


def dataset_runs(runs_root: Path, dataset: str) -> dict[str, dict[str, dict]]:
    runs = read_runs(runs_root / dataset / "table-ii")
    zoo = read_runs(runs_root / dataset / "mlp")
    runs.update({m: r for m, r in zoo.items() if m == "mlp" or m.startswith("gprec-")})
    return runs


def _pm(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def summary_markdown(summaries: dict[str, dict]) -> str:
    out = [
        "# User-modeling baselines and GPRec(MLP) (the paper's Table II, lower half)",
        "",
        "Produced by `benchmarks/accuracy_runs.py --plan user-modeling` (and the zoo plan's",
        "MLP and GPRec(MLP) runs) and `benchmarks/user_modeling_tables.py`. Protocol: the GPRec",
        "paper's (label rating > 3, random 80/10/10 split fixed by the seed, so runs are",
        "paired), embedding 16, batch 4096, Adam lr 0.002, weight decay 1e-6, early stopping on",
        "validation AUC (patience 4); every model with its documented defaults, each trained",
        "once per seed with the same care (no model was tuned). Test AUC and LogLoss, mean ±",
        "std. The pre-specified test: GPRec (strategy chosen on validation) against the best",
        "baseline on validation, one-sided, paired (Welch beside it); all models in",
        "`<dataset>/comparison.md`, written by `gprec compare`'s own report code from the runs",
        "(`benchmarks/accuracy_runs.py` trained them in parallel, some on a lent GPU).",
        "",
    ]
    for dataset, summary in summaries.items():
        runs = summary["runs"]
        pre = summary["prespecified"]
        devices = sorted({r["device"] for by_seed in runs.values() for r in by_seed.values()})
        paper = PAPER_ML1M if dataset == "ml-1m" else None
        out += [
            f"## {dataset}, {len(summary['seeds'])} paired seeds",
            "",
            f"Trained on: {', '.join(devices)} (each run's device is in comparison.json; so the "
            "seconds per epoch in comparison.md are not speed figures: those are "
            "`user_modeling_speed.md`).",
            "",
        ]
        head = "| model | valid AUC | test AUC | test LogLoss |"
        out += [
            head + (" paper AUC / LogLoss |" if paper else ""),
            "|---|---|---|---|" + ("---|" if paper else ""),
        ]
        for model, by_seed in runs.items():
            r = list(by_seed.values())
            mark = " (candidate)" if model == pre["candidate"] else ""
            mark = " (baseline)" if model == pre["baseline"] else mark
            cells = [
                model + mark,
                f"{statistics.fmean(x['valid_auc'] for x in r):.4f}",
                _pm([x["test"]["auc"] for x in r]),
                _pm([x["test"]["logloss"] for x in r]),
            ]
            if paper:
                # The paper reports one GPRec(MLP): beside the strategy chosen on validation.
                key = "gprec" if model == pre["candidate"] else model
                cells.append("{:.4f} / {:.4f}".format(*paper[key]) if key in paper else "")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        for t in pre["tests"]:
            out.append(
                f"Pre-specified, {t['metric']}: {pre['candidate']} - {pre['baseline']} = "
                f"{t['mean_difference']:+.4f} over {t['n_paired']} paired seeds, paired p "
                f"{t['paired_p']:.3f}, Welch p {t['welch_p']:.3f} (one-sided: GPRec better)."
            )
        out.append("")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="accuracy_runs.py's --out")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "user-modeling"))
    args = p.parse_args()
    summaries = {}
    for dataset in ("ml-100k", "ml-1m"):
        runs = dataset_runs(Path(args.runs), dataset)
        missing = [m for m in MODELS if m not in runs]
        if missing:
            print(f"{dataset}: no runs of {missing}; skipped")
            continue
        seeds = sorted({int(s) for by_seed in runs.values() for s in by_seed})
        incomplete = [m for m, by_seed in runs.items() if len(by_seed) != len(seeds)]
        if incomplete:
            raise SystemExit(f"{dataset}: {incomplete} lack some of seeds {seeds}")
        summary = summary_from_runs(runs, seeds, MODELS)
        summary["wall_seconds"] = sum(
            r["wall_seconds"] for by_seed in runs.values() for r in by_seed.values()
        )
        title = f"User-modeling baselines and GPRec(MLP) on {dataset}, {len(seeds)} paired seeds"
        write_report(summary, Path(args.out) / dataset, title)
        summaries[dataset] = summary
    write_text_atomic(Path(args.out) / "summary.md", summary_markdown(summaries))
    write_text_atomic(
        Path(args.out) / "summary.json",
        json.dumps(
            {d: {k: v for k, v in s.items() if k != "runs"} for d, s in summaries.items()}, indent=2
        ),
    )
    print((Path(args.out) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
