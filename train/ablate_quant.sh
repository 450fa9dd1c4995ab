#!/usr/bin/env bash
# Quantization ablation on Fashion-MNIST (issue 4): every row starts from the
# same FP demo checkpoint and trains the same number of steps with the same
# seed; the table reports the final validation loss (fixed t and noise).
#   bash train/ablate_quant.sh [STEPS] [JOBS]      (defaults 1000 steps, 1 job)
# Needs runs/fmnist_fp/ckpt_last.h5 (bash train/demo.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
jobs=${2:-1}
threads=$(( $(nproc) / jobs )); [ "$threads" -ge 1 ] || threads=1
fp=runs/fmnist_fp/ckpt_last.h5
[ -f "$fp" ] || { echo "ablate_quant.sh: $fp missing; run bash train/demo.sh first" >&2; exit 1; }
common="--set train.init_from=$fp --set train.steps=$steps --set train.val_every=$steps --set train.ckpt_every=0
        --set train.lr=2e-4 --set train.warmup_steps=50 --set train.threads=$threads --set sample.per_class=4"
rows=(
  "fp|quant.enabled=off"
  "w158|quant.enabled=on quant.act_bits=0 quant.adaln_act_bits=0 quant.hadamard=off"
  "w158a4_minmax|quant.enabled=on quant.act_bits=4 quant.quantizer=minmax quant.hadamard=off"
  "w158a4_robust|quant.enabled=on quant.act_bits=4 quant.quantizer=robust quant.hadamard=on"
  "w158a2_minmax|quant.enabled=on quant.act_bits=2 quant.quantizer=minmax quant.hadamard=off"
  "w158a2_robust|quant.enabled=on quant.act_bits=2 quant.quantizer=robust quant.hadamard=on"
)
run_row() {
  local name=${1%%|*} sets=${1#*|} args=()
  for s in $sets; do args+=(--set "$s"); done
  ./build/robuq-train configs/fmnist_demo.ini $common "${args[@]}" --set train.out_dir=runs/ablate/$name \
    --set train.resume=off > runs/ablate/$name.out 2>&1
}
mkdir -p runs/ablate
i=0
for row in "${rows[@]}"; do
  run_row "$row" &
  i=$((i + 1))
  if [ $((i % jobs)) -eq 0 ]; then wait; fi
done
wait
printf '| row | final val loss (%s steps) |\n|---|---|\n' "$steps"
for row in "${rows[@]}"; do
  name=${row%%|*}
  v=$(grep -o 'final val loss [0-9.]*' runs/ablate/$name/train.log | tail -1 | awk '{print $4}')
  printf '| %s | %s |\n' "$name" "${v:-failed (see runs/ablate/$name.out)}"
done
