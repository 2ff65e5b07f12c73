"""Re-score a finished comparison's tables from its comparison.json, without retraining.

Used to add the pre-specified test (`gprec compare --baseline`) and the Holm-adjusted p-values
to results committed before those existed, and the tables' current wording to all of them
(without --baseline, the baselines recorded in comparison.json are kept). The title, the wall time and any notes below the tables are kept.

    python benchmarks/rescore.py benchmarks/results/ml1m-headline -b mlp -b "mlp[train.weight_decay=1e-5]"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gprec.experiments.compare import summary_from_runs, write_report

WALL = "Wall time of this comparison"


def rescore(directory: Path, baselines: list[str] | None = None) -> dict:
    """Rewrite the directory's tables; `baselines` None keeps the ones it was scored with."""
    old = json.loads((directory / "comparison.json").read_text())
    md = (directory / "comparison.md").read_text()
    if not md.startswith("## "):
        raise ValueError(f"{directory / 'comparison.md'}: expected a '## title' first line")
    title = md.splitlines()[0].removeprefix("## ").strip()
    notes = _notes_after_wall_time(md)
    if baselines is None:
        baselines = (old.get("prespecified") or {}).get("baselines")
    summary = summary_from_runs(old["runs"], old["seeds"], baselines)
    summary["wall_seconds"] = old["wall_seconds"]
    # Re-scoring recomputes tests, never data: the per-model figures must come back unchanged.
    if summary["models"] != old["models"] or not set(old) <= set(summary):
        lost = sorted(set(old) - set(summary))
        raise ValueError(
            f"{directory}: re-scoring would change the per-model results or drop {lost}; "
            "comparison.json left as it is"
        )
    write_report(summary, directory, title)
    if notes:
        with open(directory / "comparison.md", "a") as fh:
            fh.write(notes)
    return summary


def _notes_after_wall_time(md: str) -> str:
    """What follows the wall-time line (hand-written notes), or ''."""
    _, sep, tail = md.partition(WALL)
    if not sep:
        return ""
    rest = tail.split("\n", 1)
    return "\n" + rest[1].lstrip("\n") if len(rest) > 1 and rest[1].strip() else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("directory", type=Path, help="holds comparison.json and comparison.md")
    p.add_argument(
        "--baseline",
        "-b",
        action="append",
        metavar="MODEL",
        help="default: the baselines the comparison was scored with (none: no pre-specified test)",
    )
    args = p.parse_args(argv)
    summary = rescore(args.directory, args.baseline)
    pre = summary.get("prespecified")
    if not pre:
        print(f"{args.directory}: re-scored, no pre-specified test")
        return 0
    print(f"{args.directory}: {pre['candidate']} vs {pre['baseline']}")
    for t in pre["tests"]:
        print(f"  {t['metric']}: diff {t['mean_difference']:+.4f} paired p {t['paired_p']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
