#!/usr/bin/env bash
# Benchmarks: robuq-bench (C) next to PyTorch eager
# (eval/bench_torch.py, Debian python3-torch) on the same model, batch and
# threads, printing step times, peak memory and the speed-up, then the
# forward paths and the per-thread speed spread.
#   bash eval/bench.sh [THREADS] [STEPS] [extra robuq-bench/bench_torch options]
# Default model: DiT-S/2 on 28x28x1 (196 tokens), batch 16 (DESIGN section 7).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
steps=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
bin=${ROBUQ_BUILD:-build}/robuq-bench
py=${PYTHON:-/usr/bin/python3}
[ -x "$bin" ] || { echo "bench.sh: $bin not built (cmake --build build)" >&2; exit 1; }
field() { grep -o "\"$2\":[^,}]*" <<<"$1" | cut -d: -f2 | tr -d '"'; }
printf '%-7s %8s %12s %12s %9s %12s %12s\n' mode threads "robuq s" "torch s" speedup "robuq MB" "torch MB"
for mode in fp qat_a2; do
  ours=$(OMP_NUM_THREADS=$threads "$bin" --mode "$mode" --threads "$threads" --steps "$steps" "$@" 2>/dev/null)
  peer=$("$py" eval/bench_torch.py --mode "$mode" --threads "$threads" --steps "$steps" "$@" 2>/dev/null)
  a=$(field "$ours" step_s_mean) b=$(field "$peer" step_s_mean)
  printf '%-7s %8s %12s %12s %8.2fx %12s %12s\n' "$mode" "$threads" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')" \
    "$(field "$ours" peak_rss_mb)" "$(field "$peer" peak_rss_mb)"
done

# Forward only: fp32, fake-quant W1.58A2 and the exported model (integer
# kernels) against PyTorch's fp32 forward; then the per-layer table.
ours=$(OMP_NUM_THREADS=$threads "$bin" --mode infer --threads "$threads" --steps "$steps" "$@" 2>/dev/null)
peer=$("$py" eval/bench_torch.py --mode infer_fp --threads "$threads" --steps "$steps" "$@" 2>/dev/null)
b=$(field "$peer" forward_s_min)
fp=$(field "$(grep '"infer_fp"' <<<"$ours")" forward_s_min)
printf '\n%-20s %8s %12s %12s %12s %12s\n' forward threads "robuq s" "vs torch" "vs own fp32" "model MB"
for mode in infer_fp infer_fakequant_a2 infer_w158a2; do
  line=$(grep "\"$mode\"" <<<"$ours")
  a=$(field "$line" forward_s_min)
  printf '%-20s %8s %12s %11.2fx %11.2fx %12s\n' "$mode" "$threads" "$a" "$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')" \
    "$(awk -v a="$a" -v b="$fp" 'BEGIN { print b / a }')" "$(field "$line" model_mb)"
done
printf '%-20s %8s %12s\n\n' "pytorch fp32" "$threads" "$b"
grep -v '^{' <<<"$ours"

# Per-thread speed under full load: every thread runs its own one-thread
# sgemm at once. A GEMM split statically over the threads runs at T x the
# slowest; ours hands out tiles dynamically (see README, Measured).
spd=$(OMP_NUM_THREADS=$threads "$bin" --mode threads --threads "$threads" 2>/dev/null)
printf '\nper-thread sgemm GFLOP/s under full load (%s threads): min %s mean %s max %s; static split %s, sum %s\n' \
  "$threads" "$(field "$spd" gflops_min)" "$(field "$spd" gflops_mean)" "$(field "$spd" gflops_max)" \
  "$(field "$spd" static_split_gflops)" "$(field "$spd" sum_gflops)"
