"""Wall time of `gprec --help` (and `gprec models`) at an earlier commit and on the current tree,
measured in one run, interleaved, with the same interpreter and packages.

The earlier commit is checked out into a temporary git worktree and put first on PYTHONPATH, so
both sides import the same torch/polars/scipy and differ only in gprec's own code.

    python benchmarks/cli_startup.py --before c5ca372 --repeats 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The sibling benchmark owns the results writer; this script is run as a file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_vs_dataloader import machine_info, write_results  # noqa: E402


def timed(src: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gprec.cli.main", *args],
        env=env, check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", default="c5ca372", help="the earlier commit")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            sides = {"before": tree / "src", "after": ROOT / "src"}
            rows = []
            for command in (["--help"], ["models"]):
                for src in sides.values():
                    timed(src, command)  # compile .pyc files once, outside the timing
                times = {name: [] for name in sides}
                for _ in range(args.repeats):  # interleaved: machine noise hits both sides
                    for name, src in sides.items():
                        times[name].append(timed(src, command))
                for name, values in times.items():
                    rows.append(
                        {
                            "command": "gprec " + " ".join(command),
                            "side": name,
                            "median_s": statistics.median(values),
                            "min_s": min(values),
                            "max_s": max(values),
                        }
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                check=False, capture_output=True,
            )  # fmt: skip
    lines = [
        f"# CLI start-up: `{args.before}` (before) vs the current tree (after)",
        "",
        f"{args.repeats} interleaved runs per side after one untimed warm-up; same Python, same "
        "packages; wall time of the whole process.",
        "",
        "| command | side | median s | min s | max s |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['command']}` | {r['side']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} |"
        for r in rows
    ]
    result = {"before": args.before, "repeats": args.repeats, "machine": machine_info(1), "rows": rows}
    write_results(ROOT / "benchmarks" / "results", "cli_startup", result, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
