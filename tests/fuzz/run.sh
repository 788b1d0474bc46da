#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DSHEPHERD_FUZZ=ON: ASan + UBSan) and
# runs each for a bounded time on a copy of its seed corpus, so the repository
# is never written to (unless --merge is given).
#
#   bash tests/fuzz/run.sh [options] [target...]
#
#   --build-dir DIR   where to configure and build (default: build-fuzz in the
#                     repository, or $SHEPHERD_FUZZ_BUILD_DIR)
#   --time SECONDS    per target (default 30, or $SHEPHERD_FUZZ_TIME)
#   --jobs N          targets run side by side (default 1, or $SHEPHERD_FUZZ_JOBS)
#   --merge           afterwards, minimise seeds + new finds (-merge=1, by
#                     edge coverage only, so the repository keeps a few
#                     hundred small inputs per target) and write the result
#                     back to tests/fuzz/corpus/<target>/
#   --no-build        use the targets already built in the build directory
#   target...         response_parser lua_json stream_assembler suite_loader
#                     scenario (default: all)
#   SHEPHERD_FUZZ_CC, SHEPHERD_FUZZ_CXX   the compilers (default clang, clang++)
#
# Exit status: 0 when every target ran its time without a finding; 1 when any
# crashed, leaked, hit undefined behaviour, timed out or ran out of memory:
# its log and the reproducer (path and hex dump) are printed, and the input
# is kept in <build-dir>/fuzz-findings/. Reproduce with
#   <build-dir>/fuzz/fuzz_<target> <file>
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${SHEPHERD_FUZZ_BUILD_DIR:-$repo/build-fuzz}
seconds=${SHEPHERD_FUZZ_TIME:-30}
jobs=${SHEPHERD_FUZZ_JOBS:-1}
merge=0
build=1
all_targets=(response_parser lua_json stream_assembler suite_loader scenario)
targets=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --time) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; usage 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [ -d "$repo/tests/fuzz/corpus/$t" ] || { echo "run.sh: no target '$t' (no tests/fuzz/corpus/$t)" >&2; exit 2; }
done
case "$seconds" in ''|*[!0-9]*) echo "run.sh: --time wants whole seconds" >&2; exit 2 ;; esac
build_dir=$(mkdir -p "$build_dir" && cd "$build_dir" && pwd)

if [ "$build" = 1 ]; then
  if ! grep -q '^SHEPHERD_FUZZ:BOOL=ON' "$build_dir/CMakeCache.txt" 2>/dev/null; then
    # libFuzzer is clang's: CC/CXX from the environment (often gcc) do not apply.
    CC=${SHEPHERD_FUZZ_CC:-clang} CXX=${SHEPHERD_FUZZ_CXX:-clang++} cmake -S "$repo" -B "$build_dir" -DSHEPHERD_FUZZ=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$build_dir" --target fuzz_targets -j"$(nproc)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shepherd-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
findings=$build_dir/fuzz-findings
# Leaks are findings too; UBSan stops at the first report (the build also
# says -fno-sanitize-recover); allocator misuse aborts.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=0:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Per target: its time limit per input and memory. The suite loader gives a
# suite's top level up to 10 s (the target skips inputs that need more than
# 250 ms, but the loader's own reading follows).
flags_for() {
  case "$1" in
    suite_loader) echo "-timeout=30 -rss_limit_mb=4096" ;;
    *) echo "-timeout=10 -rss_limit_mb=2048" ;;
  esac
}

run_one() {
  local t=$1 dir=$work/$1
  local bin=$build_dir/fuzz/fuzz_$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -R "$repo/tests/fuzz/corpus/$t/." "$dir/corpus/"
  local dict=()
  [ -f "$repo/tests/fuzz/$t.dict" ] && dict=(-dict="$repo/tests/fuzz/$t.dict")
  # Run from the scratch dir: anything a target writes lands there.
  # shellcheck disable=SC2046
  (cd "$dir" && "$bin" $(flags_for "$t") -max_total_time="$seconds" -print_final_stats=1 \
     -artifact_prefix="$dir/artifacts/" "${dict[@]}" "$dir/corpus" >"$dir/log" 2>&1)
}

report() {
  local t=$1 status=$2 dir=$work/$1
  local runs cov
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1 || true)
  if [ "$status" = 0 ]; then
    echo "fuzz $t: ok (${seconds}s, ${runs:-?} runs, ${cov:-cov: ?}, corpus $(ls "$dir/corpus" | wc -l))"
    return 0
  fi
  echo "fuzz $t: FAILED (exit $status)"
  echo "----- log (last 80 lines) -----"
  tail -n 80 "$dir/log"
  mkdir -p "$findings"
  local f
  for f in "$dir"/artifacts/*; do
    [ -e "$f" ] || continue
    cp "$f" "$findings/$t-$(basename "$f")"
    echo "----- reproducer: $findings/$t-$(basename "$f") ($(wc -c <"$f") bytes) -----"
    od -A d -t x1z -v "$f" | head -n 40
    echo "reproduce: $build_dir/fuzz/fuzz_$t $findings/$t-$(basename "$f")"
  done
  return 1
}

failed=0
pending=("${targets[@]}")
while [ ${#pending[@]} -gt 0 ]; do
  batch=("${pending[@]:0:$jobs}")
  pending=("${pending[@]:$jobs}")
  pids=()
  for t in "${batch[@]}"; do
    run_one "$t" &
    pids+=($!)
  done
  for i in "${!batch[@]}"; do
    status=0
    wait "${pids[$i]}" || status=$?
    report "${batch[$i]}" "$status" || failed=1
  done
done

if [ "$merge" = 1 ]; then
  if [ "$failed" = 1 ]; then
    echo "run.sh: not merging while a target fails" >&2
  else
    for t in "${targets[@]}"; do
      dest=$repo/tests/fuzz/corpus/$t
      mkdir -p "$work/$t/merged"
      # shellcheck disable=SC2046
      "$build_dir/fuzz/fuzz_$t" $(flags_for "$t") -merge=1 -use_counters=0 "$work/$t/merged" "$dest" "$work/$t/corpus" \
        >"$work/$t/merge.log" 2>&1 || { echo "fuzz $t: merge failed"; tail -n 40 "$work/$t/merge.log"; exit 1; }
      find "$dest" -maxdepth 1 -type f -delete
      cp "$work/$t/merged/." "$dest/" -R
      echo "fuzz $t: corpus merged: $(ls "$dest" | wc -l) inputs, $(du -sk "$dest" | cut -f1) KiB"
    done
  fi
fi
exit "$failed"
