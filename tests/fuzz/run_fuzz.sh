#!/usr/bin/env bash
# run_fuzz.sh: build and run the libFuzzer targets of RobuQ-C.
#
#   bash tests/fuzz/run_fuzz.sh [SECONDS] [TARGET ...]   fuzz each target SECONDS (default 20)
#   bash tests/fuzz/run_fuzz.sh build                     only build the targets
#   bash tests/fuzz/run_fuzz.sh repro TARGET FILE ...     run one target on saved inputs
#   bash tests/fuzz/run_fuzz.sh triage TARGET FILE ...    say whose bug each saved input shows (ours, libhdf5, slow, norepro)
#   bash tests/fuzz/run_fuzz.sh seeds                     rewrite tests/fuzz/corpus from make_seeds.c
#
# Targets (one fuzz_<name>.c each; every one also states its invariants):
#   config       INI parser: string vs file load, failed loads change nothing, dump -> reload round trip
#   idx          IDX reader, raw and .gz, and idx3+idx1 pairs
#   png          PNG reader (libpng): every colour type / depth / interlace seed
#   npy          .npy reader (header, f32, i32)
#   safetensors  safetensors header parser and tensor reads, from memory, a prefix, and a file
#   dataset      dataset loader on byte-mutated dataset HDF5 files
#   ckpt         checkpoint reader on byte-mutated checkpoints (config -> model -> params/EMA/Adam/meta)
#   h5gen        structure-aware: the input is a recipe for a VALID HDF5 file with wrong contents
#                (missing/extra/wrong-type/wrong-rank/huge datasets and attributes) for both loaders
#   export       robuq-w158 export loader: built only once src/io/export.c exists (else "disabled")
#
# Build: clang -fsanitize=fuzzer,address,undefined. The library sources are compiled into
# build-fuzz/ (ROBUQ_FUZZ_BUILD) with coverage instrumentation (fuzzer-no-link), src/kernels/
# without ASan/UBSan (compile time; the sanitizer ctest job covers them); each target links
# them with libhdf5/libpng/zlib, which are NOT instrumented (not our code). Needs clang and
# libclang-rt-14-dev (.ci/install-deps --with-fuzz installs them); without them the script says so and
# exits 0 (ROBUQ_FUZZ_REQUIRED=1 makes that an error).
#
# Corpora: tests/fuzz/corpus/<target>/ holds small valid seeds (written by make_seeds.c, a
# developer tool: "run_fuzz.sh seeds"); tests/regress/<target>/ holds every input that once
# crashed a target or broke an invariant. libFuzzer reads both and writes what it discovers to
# build-fuzz/corpus/<target>/ (not committed). tests/test_regress.c replays both directories
# through the same target code, without libFuzzer, in every ctest run (and under ASan in
# tests/run.sh), so a fixed crash stays fixed.
#
# A crash leaves build-fuzz/crashes/<target>/crash-<sha1> (or leak-, timeout-, oom-); the run
# ends with exit 1 and lists them. To turn one into a test: fix the bug, then
#   cp build-fuzz/crashes/<target>/crash-XXXX tests/regress/<target>/<short-name>
# Runs are seeded (-seed=1) but time-bounded, so the number of executions varies with load.
#
# libhdf5 (Debian's 1.10.8) on byte-mutated files: within 20 s per target the HDF5 targets
# find inputs that make libhdf5 itself read out of bounds (H5HG_read: memcpy with a corrupt
# global-heap object length, while reading a variable-length string attribute; H5O message
# iteration past an object header in H5Aexists_by_name) or loop forever (H5HG/H5C_protect).
# They are triaged as "libhdf5" (see triage() below), reported, and kept out of the failure
# count; three examples are in tests/fuzz/libhdf5_known/ (not replayed by test_regress:
# they crash or hang any HDF5 reader, h5py included). Reproduce: run_fuzz.sh repro dataset FILE.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=${ROBUQ_FUZZ_BUILD:-$ROOT/build-fuzz}
CC=${FUZZ_CC:-clang}
ALL_TARGETS=(config idx png npy safetensors dataset ckpt h5gen export)
FLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"

skip() {
  echo "run_fuzz: skipped: $*"
  [ "${ROBUQ_FUZZ_REQUIRED:-0}" = 1 ] && exit 1
  exit 0
}

# A target is enabled when the code it fuzzes exists in this tree.
enabled() {
  case "$1" in
    export) [ -f "$ROOT/src/io/export.c" ] ;;
    safetensors) [ -f "$ROOT/src/io/safetensors.c" ] ;;
    *) true ;;
  esac
}

# One object per library source, compiled here rather than through CMake so
# that src/kernels/ (SIMD intrinsics: minutes to compile under ASan with
# clang, and not what is fuzzed) gets coverage but no ASan/UBSan. Rebuilt
# when the source or any header is newer than the object.
compile_obj() { # src obj flags...
  local src=$1 obj=$2
  shift 2
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find "$ROOT/include" "$ROOT/src" -name '*.h' -newer "$obj" -print -quit)" ]; then
    "$CC" -std=c11 -D_GNU_SOURCE -fopenmp "$@" -I"$ROOT/include" $(pkg-config --cflags hdf5 libpng zlib) -c "$src" -o "$obj"
  fi
}
export -f compile_obj
build() {
  command -v "$CC" > /dev/null || skip "no $CC (apt-get install clang libclang-rt-14-dev)"
  mkdir -p "$B/obj"
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' > "$B/probe.c"
  "$CC" -fsanitize=fuzzer "$B/probe.c" -o "$B/probe" 2> /dev/null || skip "$CC cannot link libFuzzer (install libclang-rt-14-dev)"
  local srcs
  srcs=$(find "$ROOT/src" -name '*.c' | sort)
  export ROOT CC
  for src in $srcs; do
    local rel=${src#"$ROOT"/src/} fl
    case "$rel" in
      kernels/*) fl="-g -O2 -fsanitize=fuzzer-no-link" ;;
      *) fl="$FLAGS -fsanitize=fuzzer-no-link" ;;
    esac
    printf '%s\0%s\0%s\0' "$src" "$B/obj/${rel//\//_}.o" "$fl"
  done | xargs -0 -n3 -P"$(nproc)" bash -c 'compile_obj "$0" "$1" $2' || { echo "run_fuzz: library build failed" >&2; exit 1; }
  # objects of sources that were removed must not linger in the archive
  rm -f "$B/librobuq.a"
  local objs=()
  for src in $srcs; do local rel=${src#"$ROOT"/src/}; objs+=("$B/obj/${rel//\//_}.o"); done
  ar rcs "$B/librobuq.a" "${objs[@]}"
  # shellcheck disable=SC2207
  LIBS=($(pkg-config --libs hdf5 libpng zlib) -fopenmp -lm)
  # shellcheck disable=SC2207
  INCS=(-I"$ROOT/include" -I"$ROOT/tests/fuzz" -D_GNU_SOURCE $(pkg-config --cflags hdf5 libpng zlib))
  for t in "${ALL_TARGETS[@]}"; do
    enabled "$t" || continue
    local out="$B/fuzz_$t"
    if [ ! -x "$out" ] || [ -n "$(find "$ROOT/tests/fuzz" "$B/librobuq.a" -newer "$out" -print -quit)" ]; then
      "$CC" $FLAGS -fsanitize=fuzzer "${INCS[@]}" "$ROOT/tests/fuzz/fuzz_$t.c" "$B/librobuq.a" "${LIBS[@]}" -o "$out"
    fi
  done
}

# Targets that go through libhdf5. Byte-mutated HDF5 files make libhdf5
# 1.10 itself hang or crash within seconds (infinite loops in its metadata
# cache / global heap code, wild reads); that is not our code and we cannot
# prevent it. These targets run in libFuzzer's fork mode, which keeps going
# after a crash, and every artifact is then re-run and classified (triage).
# libhdf5 keeps internal free lists that libFuzzer's per-input leak check
# reports as leaks, so leak checking is off here; our own leaks are caught by
# tests/test_regress.c under ASan (LeakSanitizer at exit) in tests/run.sh.
HDF5_TARGETS=" dataset ckpt h5gen export "

fuzz_one() { # target seconds
  local t=$1 secs=$2
  rm -rf "$B/crashes/$t" "$B/libhdf5/$t" "$B/norepro/$t" "$B/slow/$t"
  mkdir -p "$B/corpus/$t" "$B/crashes/$t" "$ROOT/tests/regress/$t"
  local dirs=("$B/corpus/$t")
  [ -d "$ROOT/tests/fuzz/corpus/$t" ] && dirs+=("$ROOT/tests/fuzz/corpus/$t")
  dirs+=("$ROOT/tests/regress/$t")
  local mode=(-detect_leaks=1)
  [[ "$HDF5_TARGETS" == *" $t "* ]] && mode=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -detect_leaks=0)
  # stdin from /dev/null: an input naming /dev/stdin must not block the run.
  # allocator_may_return_null: an impossible malloc returns NULL as in production
  # (libFuzzer still flags any allocation over -rss_limit_mb as out-of-memory).
  ASAN_OPTIONS=allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$B/fuzz_$t" "${mode[@]}" -max_total_time="$secs" -seed=1 -timeout=3 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$B/crashes/$t/" "${dirs[@]}" < /dev/null > "$B/fuzz_$t.log" 2>&1
}

# Re-run one artifact and say whose bug it is: "libhdf5" when the innermost
# frame that names a module we can place lies in libhdf5 (frames of the
# sanitizer / libFuzzer runtime inside the fuzz binary name no source file of
# ours and are skipped) and no frame of an "allocated by" stack is ours (so a
# buffer WE sized too small for an HDF5 read still counts as ours); "ours"
# otherwise. A timeout whose stack is in our code is re-run with a 60 s
# limit: an input that then finishes was only slow on a loaded machine
# ("slow", reported, not a failure); one that still hangs is ours.
rerun() { # target artifact timeout_s
  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0 timeout $(($3 * 2 + 30)) "$B/fuzz_$1" -timeout="$3" \
    -rss_limit_mb=2048 "$2" < /dev/null 2>&1 || true
}
failed() { grep -q -E 'ERROR|runtime error|invariant violated'; }
triage() { # target artifact
  local rep
  rep=$(rerun "$1" "$2" 3)
  # fork mode sometimes saves the input of a job it stopped itself (often the
  # empty input): nothing to act on unless it fails again on its own
  if ! printf '%s\n' "$rep" | failed; then echo norepro; return; fi
  local frame
  frame=$(printf '%s\n' "$rep" | grep -E '^ *#[0-9]+ ' | grep -E "libhdf5|$ROOT/(src|tests)/" | head -1 || true)
  local alloc
  alloc=$(printf '%s\n' "$rep" | sed -n '/allocated by thread/,/^$/p' | grep -E "$ROOT/(src|tests)/" | head -1 || true)
  if [[ "$frame" == *libhdf5* ]] && [ -z "$alloc" ]; then echo libhdf5; return; fi
  if printf '%s\n' "$rep" | grep -q 'libFuzzer: timeout' && ! rerun "$1" "$2" 60 | failed; then echo slow; return; fi
  echo ours
}

case "${1:-}" in
  build)
    build
    exit 0 ;;
  repro)
    [ $# -ge 3 ] || { echo "usage: run_fuzz.sh repro TARGET FILE ..." >&2; exit 2; }
    t=$2; shift 2
    build
    exec "$B/fuzz_$t" "$@" < /dev/null ;;
  triage)
    [ $# -ge 3 ] || { echo "usage: run_fuzz.sh triage TARGET FILE ..." >&2; exit 2; }
    t=$2; shift 2
    build
    for f in "$@"; do echo "$(triage "$t" "$f") $f"; done
    exit 0 ;;
  seeds)
    command -v "$CC" > /dev/null || skip "no $CC"
    build
    have_export=()
    enabled export && have_export=(-DHAVE_EXPORT)
    "$CC" $FLAGS -fsanitize=fuzzer-no-link -I"$ROOT/include" -D_GNU_SOURCE "${have_export[@]}" $(pkg-config --cflags hdf5 libpng zlib) \
      "$ROOT/tests/fuzz/make_seeds.c" "$B/librobuq.a" $(pkg-config --libs hdf5 libpng zlib) -fopenmp -lm -o "$B/make_seeds"
    ASAN_OPTIONS=detect_leaks=0 "$B/make_seeds" "$ROOT/tests/fuzz/corpus"
    find "$ROOT/tests/fuzz/corpus" -type f | sort | xargs ls -l
    exit 0 ;;
esac

SECS=${1:-20}
[[ "$SECS" =~ ^[0-9]+$ ]] || { echo "usage: run_fuzz.sh [SECONDS] [TARGET ...] | build | repro | seeds" >&2; exit 2; }
[ $# -gt 0 ] && shift
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")
build
status=0
printf '%-12s %8s %9s %7s %6s  %s\n' target runs exec/s cov corpus result
for t in "${TARGETS[@]}"; do
  if ! enabled "$t"; then
    printf '%-12s %8s %9s %7s %6s  %s\n' "$t" - - - - "disabled (its source is not in the tree yet)"
    continue
  fi
  rc=0
  fuzz_one "$t" "$SECS" || rc=$?
  log="$B/fuzz_$t.log"
  runs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  [ -z "$runs" ] && runs=$(grep -a -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true) # fork mode
  runs=${runs:-?}
  eps=$(grep -a -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  [ -z "$eps" ] && [ "$runs" != "?" ] && eps=$((runs / (SECS > 0 ? SECS : 1)))
  eps=${eps:-?}
  cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  cov=${cov:-?}
  corp=$(find "$B/corpus/$t" -type f | wc -l)
  ours=0 theirs=0 norepro=0 slow=0
  for a in $(find "$B/crashes/$t" -type f | sort); do
    kind=ours
    [[ "$HDF5_TARGETS" == *" $t "* ]] && kind=$(triage "$t" "$a")
    case "$kind" in
      libhdf5) mkdir -p "$B/libhdf5/$t"; mv "$a" "$B/libhdf5/$t/"; theirs=$((theirs + 1)) ;;
      norepro) mkdir -p "$B/norepro/$t"; mv "$a" "$B/norepro/$t/"; norepro=$((norepro + 1)) ;;
      slow) mkdir -p "$B/slow/$t"; mv "$a" "$B/slow/$t/"; slow=$((slow + 1)) ;;
      *) ours=$((ours + 1)) ;;
    esac
  done
  # fork mode exits non-zero when it saw (ignored) crashes; only ours count
  [[ "$HDF5_TARGETS" == *" $t "* ]] && [ "$ours" -eq 0 ] && rc=0
  if [ "$rc" -ne 0 ] || [ "$ours" -gt 0 ]; then
    result="FAILED (exit $rc, $ours artifact(s) in $B/crashes/$t; log $log)"
    status=1
  else
    result=ok
  fi
  [ "$theirs" -gt 0 ] && result="$result; $theirs libhdf5 crash/hang input(s) in $B/libhdf5/$t (not our code)"
  [ "$norepro" -gt 0 ] && result="$result; $norepro fork-mode artifact(s) that do not reproduce alone ($B/norepro/$t)"
  [ "$slow" -gt 0 ] && result="$result; $slow timeout(s) that finish within 60 s alone (load; $B/slow/$t)"
  printf '%-12s %8s %9s %7s %6s  %s\n' "$t" "$runs" "$eps" "$cov" "$corp" "$result"
done
if [ "$status" -ne 0 ]; then
  echo "run_fuzz: crashes found. Reproduce with: bash tests/fuzz/run_fuzz.sh repro TARGET FILE;"
  echo "after the fix, copy the input to tests/regress/TARGET/ so tests/test_regress.c keeps it fixed."
  for t in "${TARGETS[@]}"; do [ -f "$B/fuzz_$t.log" ] && grep -a -m3 -E 'ERROR|SUMMARY|invariant' "$B/fuzz_$t.log" | sed "s/^/  $t: /"; done
fi
exit $status
