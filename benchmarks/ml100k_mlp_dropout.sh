#!/usr/bin/env bash
# gprec compare on MovieLens-100K: MLP with dropout 0 vs 0.2, five seeds (each seed fixes the split).
# Usage: GPREC_DATA=../shared/data bash benchmarks/ml100k_mlp_dropout.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/ml100k-mlp-dropout}"
gprec compare --config configs/ml-100k/mlp.yaml --set train.progress=false \
  --models "mlp,mlp[dropout=0.2]" --seeds 5 --out "$runs" \
  --title "MLP on ML-100K: dropout 0 vs 0.2 (5 seeds)"
mkdir -p benchmarks/results/ml100k-mlp-dropout
cp "$runs"/comparison.{md,csv,json} benchmarks/results/ml100k-mlp-dropout/
