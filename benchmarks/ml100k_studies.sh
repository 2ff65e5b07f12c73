#!/usr/bin/env bash
# The GPRec paper's studies (Sections IV-C to IV-E) on MovieLens-100K with GPRec(MLP, dynamic),
# each one gprec command (issue 20, acceptance 1), plus DMTL's lambda sweep (issue 19):
# 1. ablation: the full model and GPRec-1..5, 5 seeds (Figure 2);
# 2. sweeps of G over {3, 7, 20, 60, 100} and tau over {0.1, 0.5, 1.0}, 3 seeds, each with the
#    bare MLP on the same seeds as the reference line (Figure 3);
# 3. the similarity heatmap of p_i, n_i (Figure 4) and the groups report, on the ablation's
#    full-model run of seed 2024 (reloaded from its run directory);
# 4. DMTL's lambda_profile over {0, 0.1, 1, 10} on ML-100K ratings, 5 seeds.
# Every run stays in RUNS (resumable); the tables and figures are copied to
# benchmarks/results/ml100k-studies/ (each sweep in its own folder, so its figure link holds). THREADS (default: torch's) sets train.threads.
# Usage: GPREC_DATA=../shared/data bash benchmarks/ml100k_studies.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/ml100k-studies}"
res=benchmarks/results/ml100k-studies
mkdir -p "$res"
common=(--set train.progress=false)
[ -n "${THREADS:-}" ] && common+=(--set "train.threads=$THREADS")
cfg=configs/ml-100k/gprec-dynamic.yaml
seeds5=2024,2025,2026,2027,2028
seeds3=2024,2025,2026
gprec experiment ablation -c "$cfg" "${common[@]}" --seeds "$seeds5" --out "$runs/ablation"
for f in ablation.{md,csv,json,png}; do cp "$runs/ablation/$f" "$res/$f"; done
gprec experiment sweep -c "$cfg" "${common[@]}" --param model.n_groups --values 3,7,20,60,100 \
  --seeds "$seeds3" --out "$runs/sweep-groups"
mkdir -p "$res/sweep-groups" && cp "$runs"/sweep-groups/sweep.{md,csv,json,png} "$res/sweep-groups/"
gprec experiment sweep -c "$cfg" "${common[@]}" --param model.tau --values 0.1,0.5,1.0 \
  --seeds "$seeds3" --out "$runs/sweep-tau"
mkdir -p "$res/sweep-tau" && cp "$runs"/sweep-tau/sweep.{md,csv,json,png} "$res/sweep-tau/"
full="$runs/ablation/GPRec/seed-2024"
gprec groups similarity "$full" --groups 8 --seed 0 --out "$runs/groups-seed-2024"
gprec groups report "$full" --out "$runs/groups-seed-2024"
for f in "$runs"/groups-seed-2024/*.{md,json,png}; do cp "$f" "$res/"; done
gprec experiment sweep -c configs/ml-100k/dmtl.yaml "${common[@]}" --param model.lambda_profile \
  --values 0,0.1,1,10 --seeds "$seeds5" --out "$runs/sweep-dmtl-lambda"
mkdir -p "$res/sweep-dmtl-lambda"
cp "$runs"/sweep-dmtl-lambda/sweep.{md,csv,json,png} "$res/sweep-dmtl-lambda/"
