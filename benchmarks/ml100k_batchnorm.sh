#!/usr/bin/env bash
# The authors' code builds its MLP backbone with pytorch-fm's MultiLayerPerceptron: every hidden
# layer is Linear -> BatchNorm -> ReLU -> Dropout(0.2) (docs/gprec.md section 6 names neither). BatchNorm after
# the first layer also rescales whatever GPRec feeds that layer (r_G is 960 wide), so does
# GPRec(MLP) beat the MLP when both use it? ML-100K, five paired seeds; choose on validation AUC.
# Usage: GPREC_DATA=../shared/data bash benchmarks/ml100k_batchnorm.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/ml100k-batchnorm}"
d=configs/ml-100k/gprec-dynamic.yaml
i=configs/ml-100k/gprec-input.yaml
bn="backbone.batch_norm=true"
gprec compare --config configs/ml-100k/mlp.yaml --set train.progress=false --seeds 5 --out "$runs" \
  --baseline mlp --baseline "mlp[batch_norm=true]" --baseline "mlp[batch_norm=true,dropout=0.2]" \
  --models "mlp,mlp[batch_norm=true],mlp[batch_norm=true,dropout=0.2],$d[$bn],$i[$bn],$i[$bn,backbone.dropout=0.2,backbone_aux_loss=true]" \
  --title "MLP vs GPRec(MLP) with a BatchNorm backbone on ML-100K (5 seeds; choose on validation AUC)"
mkdir -p benchmarks/results/ml100k-batchnorm
cp "$runs"/comparison.{md,csv,json} benchmarks/results/ml100k-batchnorm/
