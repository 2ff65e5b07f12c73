#!/usr/bin/env bash
# The README's two commands as a newcomer runs them: a fresh clone of this repository's HEAD, a
# fresh venv, step 1 (set-up + main job) and step 2 (the tests, from a shell without the venv).
# Writes the wall time of each to benchmarks/results/fresh_clone.{json,md}.
# Usage: bash benchmarks/fresh_clone.sh [WORK_DIR]   (WORK_DIR is deleted and recreated)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/gprec-fresh-clone}"
rm -rf "$work" && mkdir -p "$work"
git clone -q "$repo" "$work/gprec"
# The tests that read real data look beside the clone, as in CI.
[ -d "$repo/../shared" ] && ln -s "$repo/../shared" "$work/shared"
cd "$work/gprec"
readarray -t cmds < <(python3 - <<'PY'
import re
block = re.search(r"```bash\n(.*?)```", open("README.md").read(), re.S).group(1)
print("\n".join(l for l in block.splitlines() if l.strip() and not l.startswith("#")))
PY
)
timed() {  # label, command; runs it in a clean environment, prints seconds
  local start end
  start=$(date +%s.%N)
  env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$HOME" bash -c "$2" > "$work/$1.log" 2>&1
  end=$(date +%s.%N)
  python3 -c "print(round($end - $start, 1))"
}
setup=$(timed setup "${cmds[0]}")
tests=$(timed tests "${cmds[1]}")
train=$(grep -o 'test auc [0-9.]*' "$work/setup.log" | tail -1)
summary=$(tail -1 "$work/tests.log")
python3 - "$repo" "$setup" "$tests" "$train" "$summary" "${cmds[0]}" "${cmds[1]}" "$(git rev-parse --short HEAD)" <<'PY'
import json, sys, time
repo, setup, tests, train, summary, c1, c2, commit = sys.argv[1:]
res = {"commit": commit, "date": time.strftime("%Y-%m-%d"), "step1": {"command": c1, "seconds": float(setup), "result": train},
       "step2": {"command": c2, "seconds": float(tests), "result": summary}}
open(f"{repo}/benchmarks/results/fresh_clone.json", "w").write(json.dumps(res, indent=2) + "\n")
md = (f"# The README's two commands on a fresh clone ({commit}, {res['date']})\n\n"
      "| step | command | wall s | result |\n|---|---|---|---|\n"
      f"| 1 | `{c1}` | {setup} | {train} |\n| 2 | `{c2}` | {tests} | {summary} |\n\n"
      "Fresh venv, clean environment (no venv active), 2 CPU cores, torch 2.13.0 from a local CPU wheel.\n")
open(f"{repo}/benchmarks/results/fresh_clone.md", "w").write(md)
print(md)
PY
