#!/usr/bin/env bash
# The README's main job (MLP on the built-in synthetic data) and the shipped ML-100K MLP config,
# each as a newcomer runs it; keeps their metrics.json and the wall time of the whole command.
# Usage: GPREC_DATA=../shared/data bash benchmarks/readme_jobs.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/readme-jobs}"
results=benchmarks/results/readme-jobs
mkdir -p "$results"
rm -rf "$runs"
job() {  # name, then the gprec train arguments
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  gprec train --set train.progress=false "$@" --out "$runs/$name" | tail -1
  end=$(date +%s.%N)
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); m['command_wall_seconds']=float(sys.argv[3])-float(sys.argv[2]); json.dump(m, open(sys.argv[4],'w'), indent=2)" \
    "$runs/$name/metrics.json" "$start" "$end" "$results/$name.json.tmp"
  mv "$results/$name.json.tmp" "$results/$name.json"
}
job main-job
job ml100k-mlp --config configs/ml-100k/mlp.yaml
