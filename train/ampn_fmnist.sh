#!/usr/bin/env bash
# AMPN end to end on Fashion-MNIST (issue 5): uniform W1.58A2 / A3 QAT, the
# AMPN search on those checkpoints, then RobuQ-A2 / A3 QAT with the maps; all
# QAT runs start from the same FP checkpoint with the same steps and seed.
#   bash train/ampn_fmnist.sh [STEPS] [JOBS]     (defaults 1000 steps, 2 parallel jobs)
# Needs runs/fmnist_fp/ckpt_last.h5 (bash train/demo.sh makes it). Prints a
# table of final validation losses (fixed t and noise, as robuq-train logs).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
jobs=${2:-2}
threads=$(( $(nproc) / jobs )); [ "$threads" -ge 1 ] || threads=1
fp=runs/fmnist_fp/ckpt_last.h5
[ -f "$fp" ] || { echo "ampn_fmnist.sh: $fp missing; run bash train/demo.sh first" >&2; exit 1; }
common=(--set train.steps=$steps --set train.val_every=$steps --set train.threads=$threads --set train.resume=off)
mkdir -p runs/ampn
qat() { # config name
  ./build/robuq-train "configs/$1.ini" "${common[@]}" > "runs/ampn/$1.out" 2>&1 ||
    { echo "ampn_fmnist.sh: $1 failed, see runs/ampn/$1.out" >&2; return 1; }
}
# 1. uniform baselines (also the models AMPN probes)
qat fmnist_qat_a2 & qat fmnist_qat_a3 & wait
# 2. search (sensitivity on 8 x 32 calibration images spread over t)
for b in a2 a3; do
  ./build/robuq-search "configs/fmnist_robuq_$b.ini" --set train.threads=$threads \
    --set search.calib_batches=8 --set search.calib_batch_size=32 | tee "runs/ampn/search_$b.out"
done
# 3. QAT with the maps
qat fmnist_robuq_a2 & qat fmnist_robuq_a3 & wait
printf '| run | activation bits | final val loss (%s QAT steps) |\n|---|---|---|\n' "$steps"
for r in "fmnist_qat_a2|uniform 2|w158a2" "fmnist_robuq_a2|AMPN avg 2.0|robuq_a2" \
         "fmnist_qat_a3|uniform 3|w158a3" "fmnist_robuq_a3|AMPN avg 3.0|robuq_a3"; do
  IFS='|' read -r cfg bits dir <<< "$r"
  v=$(grep -o 'final val loss [0-9.]*' "runs/fmnist_$dir/train.log" | tail -1 | awk '{print $4}')
  printf '| %s | %s | %s |\n' "$cfg" "$bits" "${v:-failed}"
done
