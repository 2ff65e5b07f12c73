#!/usr/bin/env bash
# Issue 22, step 2 of 2: the ONE confirmation of the variant chosen on validation
# (benchmarks/results/gprec-variants/selection.json, gprec_variants_select.sh) against the MLP
# chosen on the same validation runs, on ML-1M with five fresh seeds 3001-3005 (fresh splits,
# never looked at before). Pre-specified: the paired one-sided test that the variant's test AUC
# is higher (primary), LogLoss reported beside it. A variant started from a trained MLP
# (init_from) starts from that MLP's run on the same fresh seed, trained here first.
# Usage: GPREC_DATA=../shared/data bash benchmarks/gprec_variants_confirm.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/gprec-variants}"
ratings="${RATINGS:-ratings_no_timestamp.dat}"
sel=benchmarks/results/gprec-variants/selection.json
read -r mlp variant init < <(python - "$sel" "$runs" <<'PY'
import json, re, sys
sel = json.load(open(sys.argv[1]))
name, bracket, options = sel["chosen_label_ml1m"].partition("[")
if not name.endswith(".yaml"):  # the experiment labels a config by its stem
    name = f"configs/ml-1m/{name}.yaml"
label = (name + bracket + options).replace("/select-ml1m/", "/confirm-ml1m/")
m = re.search(r"init_from=[^,\]]*/confirm-ml1m/([^/]+)/seed-", label)
init = {"mlp": "mlp", "mlp_train.weight_decay=1e-5": "mlp[train.weight_decay=1e-5]"}[m.group(1)] if m else "-"
print(sel["mlp_for_confirmation"], label, init)
PY
)
common=(-c configs/ml-1m/mlp.yaml --set train.progress=false --set train.threads=1
        --set "data.ratings_file=$ratings" --seeds 3001,3002,3003,3004,3005 --out "$runs/confirm-ml1m")
if [ "$init" != "-" ] && [ "$init" != "$mlp" ]; then  # the MLP the variant starts from, first
  gprec compare "${common[@]}" --models "$init" --title "the MLP runs the variant starts from"
fi
gprec compare "${common[@]}" --baseline "$mlp" --models "$mlp,$variant" \
  --title "GPRec variant chosen on validation vs the chosen MLP: ML-1M, fresh seeds 3001-3005"
mkdir -p benchmarks/results/gprec-variants/confirm-ml1m
cp "$runs/confirm-ml1m"/comparison.{md,csv,json} benchmarks/results/gprec-variants/confirm-ml1m/
