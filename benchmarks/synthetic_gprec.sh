#!/usr/bin/env bash
# GPRec(MLP) vs MLP on the built-in synthetic data with planted user groups (8 groups), five
# paired seeds: the paper's GPRec defaults, group_reduce=sum, group embeddings initialised at the
# field embeddings' scale (group_init_std=1e-4), and both.
# Usage: bash benchmarks/synthetic_gprec.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/synth-gprec}"
gprec compare --config configs/synthetic/mlp.yaml --set train.progress=false --set train.threads=2 \
  --models "mlp,gprec,gprec[group_reduce=sum],gprec[group_init_std=0.0001],gprec[group_reduce=sum,group_init_std=0.0001]" --seeds 5 --out "$runs" --baseline mlp \
  --title "MLP vs GPRec(MLP) on the built-in synthetic data (5 seeds)"
mkdir -p benchmarks/results/synthetic-gprec
cp "$runs"/comparison.{md,csv,json} benchmarks/results/synthetic-gprec/
