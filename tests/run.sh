#!/usr/bin/env bash
# Runs the test phases and ends with one line "N passed, N failed".
#   tests/run.sh                 layers + unit + bpf + integration + fuzz smoke
#   tests/run.sh layers|unit|bpf|integration|fuzz
# FUZZ_SECONDS (default 10) is the time given to each fuzz target.
set -u
cd "$(dirname "$0")/.."

phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(layers unit bpf integration fuzz)
PYTHON=${PYTHON:-/usr/bin/python3}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
passed=0
failed=0
failures=()
log_dir=build/test-logs
mkdir -p "$log_dir"

# The include rule of the layers (scripts/check-layers.sh), and the
# checker's own test: a tree that keeps the rules passes, planted
# violations fail it.
run_layers() {
  local what
  for what in "" --self-test; do
    echo "== layers${what:+ $what}"
    if bash scripts/check-layers.sh $what; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1)); failures+=("layers${what:+ $what}")
    fi
  done
}

run_unit() {
  local t out p f
  for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== unit: $(basename "$t")"
    out=$(ASAN_OPTIONS=detect_leaks=1 "$t" 2>&1)
    local rc=$?
    echo "$out" | grep -E '^\[  (FAILED|ERROR)|^\[  PASSED' || true
    p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END{print s+0}')
    f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END{print s+0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
      f=1
      echo "$out" | tail -30
    fi
    [ "$f" -gt 0 ] && failures+=("unit $(basename "$t")") && echo "$out" | grep -B2 -A8 -E 'FAIL|ERROR' | head -60
    passed=$((passed + p)); failed=$((failed + f))
  done
}

run_bpf() {
  local t=build/l4/test_forwarder out p f
  [ -x "$t" ] || { echo "== bpf: $t not built"; failed=$((failed + 1)); failures+=("bpf (not built)"); return; }
  echo "== bpf: XDP forwarder fixtures (BPF_PROG_TEST_RUN)"
  out=$("$t" 2>&1)
  local rc=$?
  echo "$out" | grep -vE '^ok ' | tail -20
  p=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' | tail -1)
  f=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' | tail -1)
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  [ "$f" -gt 0 ] && failures+=("bpf")
  passed=$((passed + p)); failed=$((failed + f))
}

# Count one pytest run's summary line (in log $1) into passed/failed.
count_pytest() {
  local line p f e
  line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran' "$1" | tail -1)
  p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  f=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
  e=$(echo "$line" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+' || echo 0)
  p=${p:-0}; f=${f:-0}; e=${e:-0}
  [ -z "$line" ] && e=1   # pytest itself failed (a collection error, a crash)
  [ $((f + e)) -gt 0 ] && failures+=("integration${2:+ ($2)}")
  passed=$((passed + p)); failed=$((failed + f + e))
}

# With pytest-xdist installed, in two runs: the tests that touch nothing of
# the host's but loopback ports, one worker per CPU (TEST_JOBS; a file's
# tests stay together, in order, as their module fixtures expect); then, alone
# and one after another, those that do (conftest.py marks them `host`:
# network namespaces and the HA labs, whose BFD timers want the CPUs to
# themselves; mount namespaces; the demos' fixed ports). Without xdist (or
# TEST_JOBS=1), one run of everything.
run_integration() {
  echo "== integration (pytest)"
  local out="$log_dir/pytest.log" jobs=${TEST_JOBS:-$(nproc)}
  if [ "$(id -u)" -ne 0 ]; then
    echo "note: not root; tests that need network namespaces will skip"
  fi
  if "$PYTHON" -c "import xdist" 2>/dev/null && [ "$jobs" -gt 1 ]; then
    "$PYTHON" -m pytest -q -rs -n "$jobs" --dist loadfile -m "not host" tests/integration -p no:cacheprovider 2>&1 | tee "$out"
    count_pytest "$out" "in parallel"
    echo "== integration (pytest): the tests that touch the host, one at a time"
    "$PYTHON" -m pytest -q -rs -m host tests/integration -p no:cacheprovider 2>&1 | tee "$out.host"
    count_pytest "$out.host" "host"
  else
    "$PYTHON" -m pytest -q -rs tests/integration -p no:cacheprovider 2>&1 | tee "$out"
    count_pytest "$out"
  fi
}

# One fuzz target for FUZZ_SECONDS on a copy of its corpus. Its report
# goes to stdout; the last line is its verdict: pass, skip or fail.
fuzz_one() {
  local t=$1 name=${1##*/fuzz_} corpus work
  corpus=tests/fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
  echo "== fuzz: $name for ${FUZZ_SECONDS}s"
  if "$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -artifact_prefix="$log_dir/$name-" "$work" >"$log_dir/fuzz-$name.log" 2>&1; then
    if [[ $name == l4_* ]] && grep -q '^skip: ' "$log_dir/fuzz-$name.log"; then
      grep '^skip: ' "$log_dir/fuzz-$name.log" | sed 's/^/   /'
      echo skip
    else
      grep -E 'stat::number_of_executed_units' "$log_dir/fuzz-$name.log" | sed 's/^/   /'
      echo pass
    fi
  else
    tail -40 "$log_dir/fuzz-$name.log"
    echo fail
  fi
  rm -rf "$work"
}

# The targets run FUZZ_JOBS at a time (default: one per CPU; each is one
# single-threaded process), their reports printed in name order.
run_fuzz() {
  local t name jobs=${FUZZ_JOBS:-$(nproc)} out verdict
  local targets=()
  for t in build/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    name=${t##*/fuzz_}
    # The l4_* targets run the BPF programs through BPF_PROG_TEST_RUN, which
    # needs root: as non-root they are skipped, as the bpf phase is. (Run
    # anyway, they would print "skip: ..." and exit 0, also counted as a
    # skip, as when loading BPF is not permitted even for root.)
    # (l4_sync is the sync wire decoder: plain code, it runs as anyone.)
    if [[ $name == l4_* && $name != l4_sync ]] && [ "$(id -u)" -ne 0 ]; then
      echo "== fuzz: $name: skip (not root; BPF_PROG_TEST_RUN needs root)"
      continue
    fi
    targets+=("$t")
    fuzz_one "$t" >"$log_dir/fuzz-$name.report" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  done
  wait
  for t in "${targets[@]}"; do
    name=${t##*/fuzz_}
    out=$(cat "$log_dir/fuzz-$name.report")
    verdict=$(echo "$out" | tail -1)
    echo "$out" | sed '$d'
    case "$verdict" in
      pass) passed=$((passed + 1)) ;;
      skip) ;;
      *) failed=$((failed + 1)); failures+=("fuzz $name") ;;
    esac
    rm -f "$log_dir/fuzz-$name.report"
  done
}

# What the host looks like before: compared with after the phases below.
# Only as root, where tests change host-wide state at all.
host_before=
if [ "$(id -u)" -eq 0 ]; then
  host_before=$(bash tests/host_state.sh)
fi

for ph in "${phases[@]}"; do
  case "$ph" in
    layers) run_layers ;;
    unit) run_unit ;;
    bpf) run_bpf ;;
    integration) run_integration ;;
    fuzz) run_fuzz ;;
    *) echo "unknown phase $ph" >&2; exit 2 ;;
  esac
done

# Every test leaves the host as it found it: a mount, namespace, interface,
# XDP program, sysctl or process left behind is a failure of the run.
if [ -n "$host_before" ]; then
  host_after=$(bash tests/host_state.sh)
  if [ "$host_before" != "$host_after" ]; then
    echo "== host state: the tests left the host changed (- before, + after):"
    diff <(echo "$host_before") <(echo "$host_after") | grep -E '^[<>]' | sed 's/^</-/; s/^>/+/'
    failed=$((failed + 1)); failures+=("host state")
  else
    echo "== host state: as found"
    passed=$((passed + 1))
  fi
fi

if [ ${#failures[@]} -gt 0 ]; then
  echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
