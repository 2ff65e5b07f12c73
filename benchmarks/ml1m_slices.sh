#!/usr/bin/env bash
# Where does group modeling help? (issue 20, acceptance 3) MLP vs GPRec(MLP, dynamic) on
# MovieLens-1M, 5 paired seeds (the headline's models and seeds), test AUC and LogLoss sliced by
# the user's and the item's number of training interactions, with per-slice paired tests
# against the best MLP on validation. One thread per run (THREADS), so that another job can
# share the 2 cores without the thread pools fighting.
# Usage: GPREC_DATA=../shared/data bash benchmarks/ml1m_slices.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/ml1m-slices}"
ratings="${RATINGS:-ratings_no_timestamp.dat}"
gprec compare --config configs/ml-1m/mlp.yaml --set train.progress=false \
  --set "train.threads=${THREADS:-1}" --set "data.ratings_file=$ratings" \
  --seeds 2024,2025,2026,2027,2028 \
  --models 'mlp,mlp[train.weight_decay=1e-5],configs/ml-1m/gprec-dynamic.yaml' \
  --baseline mlp --baseline 'mlp[train.weight_decay=1e-5]' \
  --slices user_activity,item_popularity --out "$runs" \
  --title "MLP vs GPRec(MLP, dynamic) on ML-1M, sliced by user activity and item popularity (5 seeds)"
mkdir -p benchmarks/results/ml1m-slices
cp "$runs"/{comparison,slices}.{md,csv,json} benchmarks/results/ml1m-slices/
