"""Tables of `accuracy_runs.py`'s runs: one comparison per dataset and backbone, and a
Table-III-style summary beside FuxiCTR's AUC for the same model.

Reads `RUNS/<dataset>/<backbone>/<model>/seed-<seed>/metrics.json` (nothing is trained) and
writes, under `--out` (default `benchmarks/results/zoo-accuracy`):
- `<dataset>/<backbone>/comparison.{json,md,csv}`: `gprec compare`'s report of that
  experiment, the bare backbone as the pre-specified baseline, so GPRec's strategy is the
  one with the best mean validation AUC, tested once on test (one-sided, paired and Welch);
- `summary.{json,md}`: per dataset, every backbone bare (mean ± std of test AUC and
  LogLoss), FuxiCTR 2.3.10's AUC for the same model and our gap to it, and GPRec with the
  strategy chosen on validation and its pre-specified test against the bare backbone.

    python benchmarks/zoo_tables.py runs/zoo-accuracy
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from gprec.experiments.compare import summary_from_runs, write_report  # noqa: E402
from gprec.io import write_text_atomic  # noqa: E402

# FuxiCTR 2.3.10 measured here (issue 17's table): ML-100K mean of seeds 1-3, ML-1M seed 1.
FUXICTR_AUC = {
    "ml-100k": {"mlp": 0.7862, "deepfm": 0.7885, "dcn": 0.7845, "dcnv2": 0.7839,
                "gdcn": 0.7856, "finalmlp": 0.7873, "destine": 0.7812, "autoint": 0.7798},
    "ml-1m": {"mlp": 0.8154, "deepfm": 0.8163, "dcn": 0.8150, "dcnv2": 0.8173,
              "gdcn": 0.8156, "finalmlp": 0.8157, "destine": 0.8158, "autoint": 0.8113},
}  # fmt: skip
# How far below FuxiCTR's ML-1M AUC a bare backbone may fall (issue 17, acceptance 4).
TOLERANCE = 0.002


def read_runs(experiment: Path) -> dict[str, dict[str, dict]]:
    """`runs[model][seed]` as comparison.json holds them, from the run directories."""
    runs: dict[str, dict[str, dict]] = {}
    for metrics_file in sorted(experiment.glob("*/seed-*/metrics.json")):
        m = json.loads(metrics_file.read_text())
        runs.setdefault(metrics_file.parent.parent.name, {})[str(m["seed"])] = {
            "test": m["test"],
            "valid_auc": m["valid"]["auc"],
            "epochs_run": m["epochs_run"],
            "seconds_per_epoch": m["train"]["seconds_per_epoch"],
            "samples_per_second": m["train"]["samples_per_second"],
            "wall_seconds": m.get("wall_seconds"),
            "device": m["environment"]["device"],
        }
    return runs


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def experiment_row(dataset: str, backbone: str, summary: dict) -> dict:
    runs = summary["runs"][backbone]
    row = {"backbone": backbone, "seeds": len(runs)}
    for metric in ("auc", "logloss"):
        row[f"bare_{metric}"] = mean_std([r["test"][metric] for r in runs.values()])
    row["fuxictr_auc"] = FUXICTR_AUC[dataset][backbone]
    row["gap_to_fuxictr"] = row["bare_auc"][0] - row["fuxictr_auc"]
    row["per_seed_gap_to_fuxictr"] = {
        s: r["test"]["auc"] - row["fuxictr_auc"] for s, r in runs.items()
    }
    # Every strategy tried, not only the one chosen: mean paired test AUC difference to bare.
    row["strategy_auc_difference"] = {
        re.match(r"gprec-([a-z]+)", m).group(1): statistics.fmean(
            by_seed[s]["test"]["auc"] - runs[s]["test"]["auc"] for s in runs
        )
        for m, by_seed in summary["runs"].items()
        if m != backbone
    }
    pre = summary.get("prespecified")
    if pre:
        chosen = pre["candidate"]
        crun = summary["runs"][chosen]
        row["gprec"] = {
            "model": chosen,
            "strategy": re.match(r"gprec-([a-z]+)", chosen).group(1),
            "strategies_tried": [m for m in summary["runs"] if m != backbone],
            "valid_auc": pre["valid_auc"],  # mean validation AUC of candidate and baseline
            **{
                metric: mean_std([r["test"][metric] for r in crun.values()])
                for metric in ("auc", "logloss")
            },
            "tests": {t["metric"]: t for t in pre["tests"]},
        }
    return row


def _pm(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.4f} ± {pair[1]:.4f}"


def summary_markdown(rows: dict[str, list[dict]], devices: set[str]) -> str:
    out = [
        "# The backbone zoo, bare and under GPRec",
        "",
        "Produced by `benchmarks/accuracy_runs.py` (training) and `benchmarks/zoo_tables.py`",
        "(these tables). Protocol: the GPRec paper's (label rating > 3, random 80/10/10 split",
        "fixed by the seed, so runs are paired), embedding 16, batch 4096, Adam lr 0.002, weight",
        "decay 1e-6, learning rate x0.8 every 8 epochs, at most 100 epochs with early stopping",
        "on validation AUC (patience 4),",
        "each model with its documented defaults (`configs/models/`). Test AUC and LogLoss, mean ±",
        "std over seeds. GPRec: each strategy the backbone declares was trained; the one with",
        "the best mean **validation** AUC is the candidate, tested once on test against the",
        "bare backbone (pre-specified, one-sided: GPRec is better; paired t-test, Welch",
        "beside it). Every strategy's runs are in `<dataset>/<backbone>/comparison.md`.",
        "FuxiCTR AUC: FuxiCTR 2.3.10's same model measured here (issue 17: ML-100K the mean of",
        "its seeds 1-3, ML-1M its seed 1, on its own split). Our bare DCN, DCNv2, AutoInt and",
        "DESTINE use their documented defaults, the GPRec paper's MLP head [64, 32, 16] over",
        "their representation, where FuxiCTR as configured there ends in one linear layer: that",
        "column compares the models as each library ships them, not identical heads.",
        f"Trained on: {', '.join(sorted(devices))}, up to 15 runs at once on one machine, so",
        "the seconds per epoch in the per-experiment tables are not speed figures (those are",
        "`zoo_speed.md`, measured alone at 1 thread on CPU).",
        "",
    ]
    for dataset, ds_rows in rows.items():
        seeds = ds_rows[0]["seeds"]
        out += [f"## {dataset}, {seeds} paired seeds", ""]
        out += [
            "| backbone | bare AUC | bare LogLoss | FuxiCTR AUC | bare - FuxiCTR | GPRec strategy "
            "(valid AUC: GPRec / bare) | GPRec AUC | GPRec LogLoss | AUC diff | paired p | Welch p |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ds_rows:
            g = r.get("gprec")
            cells = [
                r["backbone"], _pm(r["bare_auc"]), _pm(r["bare_logloss"]),
                f"{r['fuxictr_auc']:.4f}", f"{r['gap_to_fuxictr']:+.4f}",
            ]  # fmt: skip
            if g:
                t = g["tests"]["auc"]
                cells += [
                    f"{g['strategy']} ({g['valid_auc']['candidate']:.4f} / "
                    f"{g['valid_auc']['baseline']:.4f})", _pm(g["auc"]),
                    _pm(g["logloss"]), f"{t['mean_difference']:+.4f}",
                    f"{t['paired_p']:.3f}", f"{t['welch_p']:.3f}",
                ]  # fmt: skip
            else:
                cells += ["— (not in the plan)"] + [""] * 5
            out.append("| " + " | ".join(cells) + " |")
        out += ["", *verdict(dataset, ds_rows), ""]
    return "\n".join(out)


def verdict(dataset: str, ds_rows: list[dict]) -> list[str]:
    """What the table says, in words: where GPRec helps, and the FuxiCTR check on ML-1M."""
    lines = []
    tested = [r for r in ds_rows if r.get("gprec")]
    if tested:
        alpha = 0.05 / len(tested)  # Bonferroni over this table's pre-specified tests
        helped = [r["backbone"] for r in tested if r["gprec"]["tests"]["auc"]["paired_p"] < alpha]
        worse = [r["backbone"] for r in tested if r["gprec"]["tests"]["auc"]["mean_difference"] < 0]
        lines.append(
            f"GPRec is significantly better than its bare backbone (paired p < {alpha:.4f}, "
            f"0.05 over the {len(tested)} tests of this table) for: "
            f"{', '.join(helped) or 'none'}. Its mean test AUC is lower than the bare "
            f"backbone's for: {', '.join(worse) or 'none'}."
        )
    ensemble = {
        r["backbone"]: r["strategy_auc_difference"]["ensemble"]
        for r in tested
        if "ensemble" in r["strategy_auc_difference"]
    }
    if ensemble:
        lines.append(
            f"The `ensemble` strategy's mean test AUC is {min(ensemble.values()):+.4f} to "
            f"{max(ensemble.values()):+.4f} against the bare backbone on every backbone it was "
            "tried on"
            + (
                "; FinalMLP supports no other strategy, so no GPRec variant of it helps."
                if "finalmlp" in ensemble
                else "."
            )
        )
    if dataset == "ml-1m":
        lowest = min(ds_rows, key=lambda r: r["gap_to_fuxictr"])
        ok = lowest["gap_to_fuxictr"] >= -TOLERANCE
        gaps = [
            (r["backbone"], s, g) for r in ds_rows for s, g in r["per_seed_gap_to_fuxictr"].items()
        ]
        beyond = [f"{b} seed {s} ({g:+.4f})" for b, s, g in gaps if g < -TOLERANCE]
        stds = [r["bare_auc"][1] for r in ds_rows]
        lines.append(
            f"Every bare backbone's mean within {TOLERANCE} test AUC of FuxiCTR's same model: "
            f"{'yes' if ok else 'NO'} (lowest: {lowest['backbone']}, "
            f"{lowest['gap_to_fuxictr']:+.4f}). Single seeds beyond it: "
            f"{', '.join(beyond) or 'none'}. FuxiCTR's figure is one seed of its own split; "
            f"ours the mean of our seeds, whose standard deviation per model is "
            f"{min(stds):.4f} to {max(stds):.4f}."
        )
    return lines


def precision_rows(fp32_root: Path, bf16_root: Path) -> list[dict]:
    """Each bare backbone's test AUC in bf16 against float32, paired by seed (two-sided)."""
    from scipy import stats

    out = []
    for dataset in FUXICTR_AUC:
        for backbone in FUXICTR_AUC[dataset]:
            half = read_runs(bf16_root / dataset / backbone).get(backbone, {})
            full = read_runs(fp32_root / dataset / backbone).get(backbone, {})
            seeds = sorted(set(half) & set(full), key=int)
            if len(seeds) < 2:
                continue
            a = [half[s]["test"]["auc"] for s in seeds]
            b = [full[s]["test"]["auc"] for s in seeds]
            out.append({
                "dataset": dataset, "backbone": backbone, "seeds": [int(s) for s in seeds],
                "bf16_auc": mean_std(a), "fp32_auc": mean_std(b),
                "mean_difference": statistics.fmean(x - y for x, y in zip(a, b, strict=True)),
                "paired_p_two_sided": float(stats.ttest_rel(a, b).pvalue),
                "devices": sorted({half[s]["device"] for s in seeds}),
            })  # fmt: skip
    return out


def precision_markdown(rows: list[dict]) -> str:
    out = [
        "",
        "## train.precision: bf16 against float32 (bare backbones, same seeds)",
        "",
        "The same runs with the forward pass under bfloat16 autocast (weights, optimizer, loss",
        "and evaluation in float32). Paired by seed, two-sided: bf16 is not meant to be better,",
        "only not worse.",
        "",
        "| dataset | backbone | seeds | fp32 test AUC | bf16 test AUC | bf16 - fp32 | paired p |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['dataset']} | {r['backbone']} | {len(r['seeds'])} | {_pm(r['fp32_auc'])} | "
            f"{_pm(r['bf16_auc'])} | {r['mean_difference']:+.4f} | {r['paired_p_two_sided']:.2f} |"
        )
    devices = sorted({d for r in rows for d in r["devices"]})
    return "\n".join(out) + f"\n\nbf16 runs trained on: {', '.join(devices)}.\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="accuracy_runs.py's --out")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "zoo-accuracy"))
    p.add_argument(
        "--bf16-runs",
        help="accuracy_runs.py's --out of the bare backbones under train.precision=bf16: adds "
        "their paired comparison with the float32 runs (same seeds)",
    )
    args = p.parse_args()
    runs_root, out_root = Path(args.runs), Path(args.out)
    rows: dict[str, list[dict]] = {}
    devices: set[str] = set()
    for dataset in FUXICTR_AUC:
        for backbone in FUXICTR_AUC[dataset]:
            runs = read_runs(runs_root / dataset / backbone)
            if backbone not in runs:
                continue
            seeds = sorted({int(s) for by_seed in runs.values() for s in by_seed})
            incomplete = [m for m, by_seed in runs.items() if len(by_seed) != len(seeds)]
            if incomplete:
                raise SystemExit(f"{dataset}/{backbone}: {incomplete} lack some of seeds {seeds}")
            devices |= {r["device"] for by_seed in runs.values() for r in by_seed.values()}
            baselines = [backbone] if len(runs) > 1 else None
            summary = summary_from_runs(runs, seeds, baselines)
            summary["wall_seconds"] = sum(
                r["wall_seconds"] for by_seed in runs.values() for r in by_seed.values()
            )
            title = f"{backbone} bare and under GPRec on {dataset}, {len(seeds)} paired seeds"
            write_report(summary, out_root / dataset / backbone, title)
            rows.setdefault(dataset, []).append(experiment_row(dataset, backbone, summary))
    md = summary_markdown(rows, devices)
    if args.bf16_runs:
        precision = precision_rows(runs_root, Path(args.bf16_runs))
        rows["bf16_vs_fp32"] = precision
        md += precision_markdown(precision)
    write_text_atomic(out_root / "summary.json", json.dumps(rows, indent=2))
    write_text_atomic(out_root / "summary.md", md)
    print((out_root / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
