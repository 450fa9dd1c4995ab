#!/usr/bin/env bash
# The Fashion-MNIST results table (issue 8): FP, W1.58A4, RobuQ-A3, uniform A3,
# RobuQ-A2, uniform A2 and min-max A2, each sampled and scored by robuq-eval
# (FID / Inception-style score / precision / recall in the robuq-classifier
# feature space, and the classifier's accuracy on the samples), plus the
# "ideal" row (real training images). Every QAT row starts from the same FP
# checkpoint and trains STEPS steps with the same seed. Idempotent: finished
# runs are skipped, interrupted ones resume.
#   bash eval/eval_fmnist.sh [STEPS] [PER_CLASS] [SAMPLE_STEPS]   (defaults 1000 50 50)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
per=${2:-50}
sstep=${3:-50}
n=$(nproc)
t4=$(( n / 4 > 0 ? n / 4 : 1 ))
B=./build
done_run() { [ -f "$1/train.log" ] && grep -q 'final val loss' "$1/train.log"; }
train() { # config out_dir threads [--set ...]
  local cfg=$1 out=$2 th=$3; shift 3
  done_run "$out" || $B/robuq-train "$cfg" --set train.out_dir="$out" --set train.steps="$steps" \
    --set train.val_every="$steps" --set train.threads="$th" "$@" > "$out.out" 2>&1
}
mkdir -p runs
[ -f runs/fmnist_train.h5 ] || $B/robuq-data fmnist
[ -f runs/fmnist_classifier.h5 ] || OMP_NUM_THREADS=4 $B/robuq-classifier > runs/fmnist_classifier.out 2>&1 &
done_run runs/fmnist_fp || $B/robuq-train configs/fmnist_demo.ini --set train.threads=$(( n > 4 ? n - 4 : n )) \
  > runs/fmnist_fp.out 2>&1
wait
# uniform rows (also what AMPN probes)
train configs/fmnist_qat_a4.ini runs/fmnist_w158a4 $t4 &
train configs/fmnist_qat_a3.ini runs/fmnist_w158a3 $t4 &
train configs/fmnist_qat_a2.ini runs/fmnist_w158a2 $t4 &
train configs/fmnist_qat_a2.ini runs/fmnist_w158a2_minmax $t4 --set quant.quantizer=minmax --set quant.hadamard=off &
wait
# AMPN maps, then RobuQ-A3 / A2
for b in a3 a2; do
  [ -f runs/fmnist_w158${b}/ampn_${b}.map ] || $B/robuq-search configs/fmnist_robuq_$b.ini --set train.threads=$n \
    --set search.calib_batches=8 --set search.calib_batch_size=32 > runs/search_$b.out 2>&1
done
train configs/fmnist_robuq_a3.ini runs/fmnist_robuq_a3 $(( n / 2 )) &
train configs/fmnist_robuq_a2.ini runs/fmnist_robuq_a2 $(( n / 2 )) &
wait
# score every row (samples: PER_CLASS per class, SAMPLE_STEPS DDIM steps, CFG from the config)
res=runs/eval_results.jsonl
rm -f $res runs/eval_results.csv
ev="--per-class $per --steps $sstep --sampler ddim --results $res"
$B/robuq-eval runs/fmnist_train.h5 --max-samples $(( per * 10 )) --name real-train --label real --results $res \
  --threads 2 > runs/eval_real.out 2>&1 &
for r in "fmnist_fp|FP" "fmnist_w158a4|W1.58A4" "fmnist_robuq_a3|RobuQ-A3" "fmnist_w158a3|W1.58A3" \
         "fmnist_robuq_a2|RobuQ-A2" "fmnist_w158a2|W1.58A2" "fmnist_w158a2_minmax|W1.58A2-minmax"; do
  IFS='|' read -r d l <<< "$r"
  $B/robuq-eval runs/$d/ckpt_last.h5 $ev --name $d --label "$l" --threads 2 > runs/eval_$d.out 2>&1 &
done
wait
grep -h 'test accuracy' runs/fmnist_classifier.out | tail -1 || true
cat runs/eval_results.csv
