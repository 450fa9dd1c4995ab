#!/usr/bin/env bash
# The main job on the embedded dataset (Fashion-MNIST), end to end:
# install what is missing, build, convert the data, train the FP demo DiT,
# then QAT it to W1.58A4 and sample both. Outputs under runs/.
# Every step is resumable: rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)"
[ -f runs/fmnist_train.h5 ] || ./build/robuq-data fmnist --out-train runs/fmnist_train.h5 --out-test runs/fmnist_test.h5
./build/robuq-train configs/fmnist_demo.ini "$@"
./build/robuq-train configs/fmnist_qat_a4.ini
echo "samples: runs/fmnist_fp/samples_final.png runs/fmnist_w158a4/samples_final.png"
echo "loss curves: runs/fmnist_fp/loss.png runs/fmnist_w158a4/loss.png"
