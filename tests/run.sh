#!/usr/bin/env bash
# The whole test suite (what .ci/run runs), in three stages:
#   1. Release build, every cmocka test through ctest;
#   2. AddressSanitizer + UBSan build (Debug), the WHOLE ctest suite again: the
#      tools the tests start are sanitized too; leaks are checked at exit and
#      UBSan stops at the first report (halt_on_error), so any finding fails;
#   3. every fuzz target for FUZZ_SECONDS seconds (tests/fuzz/run_fuzz.sh;
#      skipped with a message when clang/libFuzzer are missing).
# Tests run with OMP_NUM_THREADS=2 (set per test by CMake) and passive OpenMP
# waiting: two tests share the cores, and spinning threads of one test starve
# the other (measured here: the Release suite took 102 s with spinning, 50 s
# without, under the same load).
# Knobs: FUZZ_SECONDS (default 20), ROBUQ_SKIP_ASAN=1, ROBUQ_SKIP_FUZZ=1, JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps --with-fuzz
jobs=${JOBS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
t_start=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - t_start )) s since start"; }

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
stamp "release build + tests"

if [ "${ROBUQ_SKIP_ASAN:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DROBUQ_SANITIZE=ON -DROBUQ_BUILD_BENCH=OFF -DROBUQ_MPI=OFF > /dev/null
  cmake --build build-asan -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"
  stamp "ASan + UBSan build + whole suite"
fi

if [ "${ROBUQ_SKIP_FUZZ:-0}" != 1 ]; then
  bash tests/fuzz/run_fuzz.sh "${FUZZ_SECONDS:-20}"
  stamp "fuzzing"
fi
