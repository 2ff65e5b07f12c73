#!/usr/bin/env bash
# gprec compare on MovieLens-100K: MLP vs GPRec(MLP) with each construction strategy, five seeds.
# Usage: GPREC_DATA=../shared/data bash benchmarks/ml100k_gprec_strategies.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/ml100k}"
gprec compare --config configs/ml-100k/mlp.yaml --set train.progress=false \
  --models "mlp,configs/ml-100k/gprec-input.yaml,configs/ml-100k/gprec-dynamic.yaml,configs/ml-100k/gprec-ensemble.yaml" \
  --seeds 5 --out "$runs" --title "MLP vs GPRec(MLP) strategies on ML-100K (5 seeds)"
mkdir -p benchmarks/results/ml100k-gprec-strategies
cp "$runs"/comparison.{md,csv,json} benchmarks/results/ml100k-gprec-strategies/
