"""Issue 22's tables: the selection of a GPRec variant on validation AUC, and the shared
classifier's epoch cost beside its validation AUC.

    python benchmarks/gprec_variants_tables.py select   # after gprec_variants_select.sh
    python benchmarks/gprec_variants_tables.py cost     # after gprec_speed.py --models classifier

`select` reads the two selection experiments (ML-100K seeds 2024-2028, ML-1M seeds 2024-2026)
and applies the rule written in gprec_variants_select.sh: per dataset, each GPRec variant's
mean paired difference in validation AUC against the better MLP there (higher mean validation
AUC); the chosen variant has the highest average of the two datasets' differences. The
faithful GPRec(dynamic) on ML-1M is read from benchmarks/results/ml1m-headline (the same seeds
and split rule; its runs cost 24 s an epoch). Test figures of the selection seeds are not read.
The confirmation on fresh seeds is `gprec compare`'s own report (gprec_variants_confirm.sh).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gprec.evaluation.significance import one_sided_tests  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "gprec-variants"
MLPS = ("mlp", "mlp[train.weight_decay=1e-5]")


def short(label: str) -> str:
    """`configs/ml-1m/gprec-input.yaml[a=1,init_from=RUNS/select-ml1m/mlp/seed-{seed}]` ->
    `gprec-input[a=1,init_from=mlp]`: the config's stem, and init_from as the MLP it names (its
    run on the same seed of the same experiment)."""
    path, bracket, options = label.partition("[")
    name = path.rsplit("/", 1)[-1].removesuffix(".yaml")
    if not bracket:
        return name
    options = re.sub(
        r"init_from=[^,\]]*/([^/,\]]+)/seed-\{seed\}",
        lambda m: (
            "init_from="
            + m.group(1).replace("mlp_train.", "mlp[train.")
            + ("]" if m.group(1).startswith("mlp_train.") else "")
        ),
        options,
    )
    return f"{name}[{options}"


def valid_by_seed(experiment: Path) -> dict[str, dict[int, float]]:
    runs = json.loads((experiment / "comparison.json").read_text())["runs"]
    return {
        short(label): {int(s): r["valid_auc"] for s, r in by_seed.items()}
        for label, by_seed in runs.items()
    }


def full_labels(experiment: Path) -> dict[str, str]:
    """short label -> the label the experiment ran (a config path with its options)."""
    runs = json.loads((experiment / "comparison.json").read_text())["runs"]
    return {short(label): label for label in runs}


def select() -> dict:
    data = {
        "ML-100K": valid_by_seed(OUT / "select-ml100k"),
        "ML-1M": valid_by_seed(OUT / "select-ml1m"),
    }
    seeds_1m = sorted(next(iter(data["ML-1M"].values())))
    headline = valid_by_seed(RESULTS / "ml1m-headline")["gprec-dynamic"]
    data["ML-1M"]["gprec-dynamic"] = {s: headline[s] for s in seeds_1m}
    table: dict[str, dict] = {}
    chosen_mlp = {}
    for ds, models in data.items():
        chosen_mlp[ds] = max(MLPS, key=lambda m: statistics.mean(models[m].values()))
        ref = models[chosen_mlp[ds]]
        for name, by_seed in models.items():
            row = table.setdefault(name, {})
            t = one_sided_tests("auc", name, chosen_mlp[ds], by_seed, ref)
            row[ds] = {
                "valid_auc": statistics.mean(by_seed.values()),
                "diff_vs_mlp": t.mean_difference,
                "paired_p": t.paired_p,
                "seeds": sorted(by_seed),
            }
    gprec = [n for n in table if n not in MLPS and all(ds in table[n] for ds in data)]
    for n in gprec:
        table[n]["average_diff"] = statistics.mean(table[n][ds]["diff_vs_mlp"] for ds in data)
    chosen = max(gprec, key=lambda n: table[n]["average_diff"])
    return {
        "rule": "per dataset, mean paired validation-AUC difference against the better MLP on "
        "validation; chosen: the highest average over the two datasets",
        "chosen_mlp": chosen_mlp,
        "chosen_variant": chosen,
        # as ML-1M's selection ran it: gprec_variants_confirm.sh runs it on the fresh seeds
        "chosen_label_ml1m": full_labels(OUT / "select-ml1m").get(chosen),
        "mlp_for_confirmation": chosen_mlp["ML-1M"],
        "table": table,
    }


def select_markdown(res: dict) -> str:
    ds = ("ML-100K", "ML-1M")
    lines = [
        "## GPRec variants: selection on validation AUC (issue 22)",
        "",
        "The issue's protocol: variants chosen on **validation AUC only**, ML-100K seeds "
        "2024-2028 and ML-1M seeds 2024-2026 (a seed fixes the split: runs are paired). Rule: "
        "per dataset, each variant's mean paired difference against the better MLP there "
        f"(ML-100K: `{res['chosen_mlp']['ML-100K']}`, ML-1M: `{res['chosen_mlp']['ML-1M']}`); "
        "the chosen variant has the highest average of the two. It is then tested once on "
        "ML-1M seeds 3001-3005 against the ML-1M choice of MLP (confirm-ml1m/comparison.md). Every variant "
        "tried is listed; the ones started from the better MLP (init_from) were added after a "
        "look at validation, as gprec_variants_select.sh says, and two variants were screened "
        "out of ML-1M for cost. One-sided paired p: the variant above the MLP on validation "
        "(none where every paired difference is 0: the run kept the MLP it started from). The "
        "faithful GPRec(dynamic) on ML-1M is from ml1m-headline (the same seeds and split).",
        "",
        "| model | ML-100K valid AUC | Δ vs MLP | p | ML-1M valid AUC | Δ vs MLP | p | average Δ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(res["table"], key=lambda n: -res["table"][n].get("average_diff", 9))
    for name in order:
        row = res["table"][name]
        cells = []
        for d in ds:
            if d not in row:
                cells += ["—", "—", "—"]
                continue
            r = row[d]
            p = "—" if r["paired_p"] != r["paired_p"] else f"{r['paired_p']:.3f}"  # NaN
            cells += [f"{r['valid_auc']:.4f}", f"{r['diff_vs_mlp']:+.4f}", p]
        avg = (
            f"{row['average_diff']:+.4f}"
            if "average_diff" in row
            else "(MLP)"
            if name in MLPS
            else "not run on ML-1M"
        )
        mark = " **(chosen)**" if name == res["chosen_variant"] else ""
        lines.append(f"| {name}{mark} | " + " | ".join(cells) + f" | {avg} |")
    return "\n".join(lines) + "\n"


# The cost table's models, as the selection experiments label them (validation AUC beside).
COST_ROWS = {
    "mlp": "mlp",
    "gprec-dynamic": "gprec-dynamic",
    "gprec-dynamic[classifier=shared]": "gprec-dynamic[classifier=shared]",
    "gprec-input[classifier=shared,input_scale=zero]": (
        "gprec-input[classifier=shared,input_scale=zero]"
    ),
}


def cost() -> str:
    """The shared classifier's epoch cost (gprec_speed.py --models classifier, one run per
    dataset) beside the validation AUC of the same models in the selection experiments."""
    sel = json.loads((OUT / "selection.json").read_text())["table"]
    lines = [
        "## The shared classifier: epoch cost and validation AUC (issue 22, acceptance 3)",
        "",
        "Seconds per epoch from one run of `benchmarks/gprec_speed.py --models classifier` per "
        "dataset (every model timed in turns on the same training split, warm-up untimed; the "
        "machine and threads in each run's JSON); validation AUC: mean over the selection seeds "
        "(selection.md; ML-1M's faithful GPRec from ml1m-headline, the same seeds). A started "
        "run (`init_from`) costs per epoch what the same model from scratch costs.",
        "",
        "| dataset | model | seconds / epoch | cost vs MLP | cost vs faithful GPRec | <= 3x MLP "
        "| matmul GFLOP / epoch | valid AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds, name in (("ML-100K", "ml100k"), ("ML-1M", "ml1m")):
        path = RESULTS / f"gprec_classifier_cost_{name}.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        r = res["results"]
        for model, row in r.items():
            faithful = "gprec-input" if model.startswith("gprec-input") else "gprec-dynamic"
            vs = row["mean_seconds_per_epoch"] / r[faithful]["mean_seconds_per_epoch"]
            auc = sel.get(COST_ROWS.get(model, ""), {}).get(ds, {}).get("valid_auc")
            lines.append(
                f"| {ds} | {model} | {row['mean_seconds_per_epoch']:.3f} | "
                f"{row['cost_vs_mlp']:.2f}x | "
                f"{'—' if model == 'mlp' else f'{vs:.2f}x'} | "
                f"{'yes' if row['cost_vs_mlp'] <= 3 else '**no**'} | "
                f"{row['matmul_gflop_per_epoch']:.1f} | {'—' if auc is None else f'{auc:.4f}'} |"
            )
        if res.get("contended"):
            lines.append(f"| {ds} | **other processes used the CPUs during timing** | | | | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "select"
    if what == "select":
        res = select()
        (OUT / "selection.json").write_text(json.dumps(res, indent=2) + "\n")
        md = select_markdown(res)
        (OUT / "selection.md").write_text(md)
        print(md)
        return 0
    if what == "cost":
        md = cost()
        (OUT / "classifier_cost.md").write_text(md)
        print(md)
        return 0
    raise SystemExit(f"unknown table {what!r}: select or cost")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
