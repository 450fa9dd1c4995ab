#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (Release), runs every
# cmocka test through ctest, then rebuilds the core tests with ASan + UBSan
# and runs them (leaks, overflows, UB in the autograd core and the ops).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DROBUQ_SANITIZE=ON -DROBUQ_BUILD_BENCH=OFF > /dev/null
cmake --build build-asan -j"$jobs" --target test_ops test_qlinear test_dit_ref test_h5io test_config
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" \
  -R '^(test_ops|test_qlinear|test_dit_ref|test_h5io|test_config)$'
