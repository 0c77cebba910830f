#!/usr/bin/env bash
# Runs the C tests and the busted specs and prints one final line
# "N passed, N failed" (plus ", N skipped" when specs are pending), summed over
# both; exits non-zero when anything failed.
#
# Usage: tools/run_tests.sh [spec files...]   (with files: only those specs)
# Environment: BUILD (default build), SANITIZE=1 (preload ASan/UBSan into the
# Lua interpreter, which is not instrumented itself).
#
# Each spec file runs in its own busted process, so a crash in one (an ASan
# report, a segfault) is reported as a failure of that file instead of
# silently ending the run, and memory measurements in one file (gc_spec) are
# not disturbed by what the others left behind.
set -u
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
passed=0
failed=0
skipped=0

export LUA_PATH="lua/?.lua;lua/?/init.lua;models/?.lua;tests/?.lua;;"
export LUA_CPATH="$BUILD/?.so;;"
# Idle OpenMP workers sleep instead of spinning: on a shared 2-core machine
# spinning threads steal the core the other thread needs (6x slower specs).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

preload=""
if [ -n "${SANITIZE:-}" ]; then
  preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
  # Leak detection would report the interpreter's own never-freed state, and
  # the preloaded runtime is necessarily not first in the link order.
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:verify_asan_link_order=0:${ASAN_OPTIONS:-}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
fi

# ---- C tests: each prints a last line "N passed, N failed" ------------------
if [ $# -eq 0 ]; then
  for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $t"
    out=$("$t" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    last=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -n "$last" ]; then
      p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
      f=$(echo "$last" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
      passed=$((passed + p))
      failed=$((failed + f))
      if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!! $t exited with status $rc"
        failed=$((failed + 1))
      fi
    else
      echo "!! $t ended without a summary line (status $rc)"
      failed=$((failed + 1))
    fi
  done
fi

# ---- busted specs, TAP output counted line by line --------------------------
if [ $# -gt 0 ]; then
  specs=("$@")
else
  specs=(tests/*_spec.lua)
fi
for spec in "${specs[@]}"; do
  [ -f "$spec" ] || { echo "!! no spec file $spec"; failed=$((failed + 1)); continue; }
  echo "== $spec"
  tap=$(mktemp)
  # busted re-executes $LUA, which inherits LD_PRELOAD from here.
  LD_PRELOAD="$preload" busted --lua="$LUA" -o TAP "$spec" >"$tap" 2>&1
  rc=$?
  cat "$tap"
  counts=$(awk '
    /^ok [0-9]+ - # SKIP/ { s++; next }
    /^ok [0-9]+/          { p++; next }
    /^not ok [0-9]+/      { f++; next }
    /^1\.\.[0-9]+$/       { done = 1 }
    END { printf "%d %d %d %d\n", p, f, s, done }' "$tap")
  rm -f "$tap"
  read -r p f s done <<<"$counts"
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  if [ "$done" -eq 0 ]; then
    echo "!! $spec did not finish (busted status $rc): counted as one more failure"
    failed=$((failed + 1))
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "!! busted exited with status $rc on $spec"
    failed=$((failed + 1))
  fi
done

summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
