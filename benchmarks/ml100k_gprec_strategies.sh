#!/usr/bin/env bash
# gprec compare on MovieLens-100K, five seeds (a seed fixes the split too, so runs are paired):
# 1. MLP (paper settings, and weight decay 1e-5: the MLP gets the same tuning care) vs GPRec(MLP)
#    with each construction strategy, plus 'dynamic' with group_reduce=sum;
# 2. the ablations GPRec-1..5 (docs/gprec.md section 7) of GPRec(MLP, dynamic), beside the full model;
# 3. GPRec with group embeddings initialised at the field embeddings' scale;
# 4. the same with a longer early-stopping patience (10, for every model);
# 5. what else moves GPRec(dynamic, group_init_std=1e-4): lr, tau, G, the backbone's own
#    auxiliary loss, the rank of the dynamic deltas, a smaller L_G weight.
# All use one experiment directory, so the MLP and full dynamic model runs are trained once.
# Usage: GPREC_DATA=../shared/data bash benchmarks/ml100k_gprec_strategies.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/ml100k}"
common=(--set train.progress=false --seeds 5 --out "$runs")
# the pre-specified test: the best MLP on validation AUC vs the best GPRec on validation AUC
baselines=(--baseline mlp --baseline "mlp[train.weight_decay=1e-5]")
gprec compare --config configs/ml-100k/mlp.yaml "${common[@]}" \
  "${baselines[@]}" --models "mlp,mlp[train.weight_decay=1e-5],configs/ml-100k/gprec-input.yaml,configs/ml-100k/gprec-dynamic.yaml,configs/ml-100k/gprec-ensemble.yaml,configs/ml-100k/gprec-dynamic.yaml[group_reduce=sum]" \
  --title "MLP vs GPRec(MLP) strategies on ML-100K (5 seeds)"
mkdir -p benchmarks/results/ml100k-gprec-strategies
cp "$runs"/comparison.{md,csv,json} benchmarks/results/ml100k-gprec-strategies/
a=configs/ml-100k/ablations
gprec compare --config configs/ml-100k/gprec-dynamic.yaml "${common[@]}" \
  --models "configs/ml-100k/gprec-dynamic.yaml,$a/gprec-1.yaml,$a/gprec-2.yaml,$a/gprec-3.yaml,$a/gprec-4.yaml,$a/gprec-5.yaml" \
  --title "GPRec(MLP, dynamic) ablations on ML-100K (5 seeds)"
mkdir -p benchmarks/results/ml100k-gprec-ablations
cp "$runs"/comparison.{md,csv,json} benchmarks/results/ml100k-gprec-ablations/
# 3. group embeddings initialised at the field embeddings' scale (N(0, 1e-4) instead of N(0, 0.1)).
gprec compare --config configs/ml-100k/mlp.yaml "${common[@]}" \
  "${baselines[@]}" --models "mlp,mlp[train.weight_decay=1e-5],configs/ml-100k/gprec-input.yaml[group_init_std=0.0001],configs/ml-100k/gprec-dynamic.yaml[group_init_std=0.0001],configs/ml-100k/gprec-dynamic.yaml[group_reduce=sum,group_init_std=0.0001]" \
  --title "MLP vs GPRec(MLP) with group_init_std=1e-4 on ML-100K (5 seeds)"
mkdir -p benchmarks/results/ml100k-gprec-init
cp "$runs"/comparison.{md,csv,json} benchmarks/results/ml100k-gprec-init/
# 4. patience 10 for every model: GPRec's validation AUC is noisier and it stops earlier.
gprec compare --config configs/ml-100k/mlp.yaml --set train.progress=false --seeds 5 \
  --out "$runs-patience10" --set train.patience=10 \
  "${baselines[@]}" --models "mlp,mlp[train.weight_decay=1e-5],configs/ml-100k/gprec-dynamic.yaml[group_init_std=0.0001],configs/ml-100k/gprec-dynamic.yaml" \
  --title "MLP vs GPRec(MLP, dynamic) on ML-100K, patience 10 (5 seeds)"
mkdir -p benchmarks/results/ml100k-gprec-patience10
cp "$runs-patience10"/comparison.{md,csv,json} benchmarks/results/ml100k-gprec-patience10/
# 5. other settings of the best GPRec so far, each against the same MLP runs.
d="configs/ml-100k/gprec-dynamic.yaml[group_init_std=0.0001"
gprec compare --config configs/ml-100k/mlp.yaml "${common[@]}" \
  "${baselines[@]}" --models "mlp,mlp[train.weight_decay=1e-5],$d],$d,train.lr=0.001],$d,tau=1.0],$d,backbone_aux_loss=true],$d,dynamic_rank=16],$d,n_groups=20],$d,lambda_group=0.1]" \
  --title "MLP vs GPRec(MLP, dynamic) settings on ML-100K (5 seeds; choose on validation AUC)"
mkdir -p benchmarks/results/ml100k-gprec-settings
cp "$runs"/comparison.{md,csv,json} benchmarks/results/ml100k-gprec-settings/
