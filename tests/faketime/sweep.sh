#!/usr/bin/env bash
# Runs the whole test suite with every test process on a faked wall clock (libfaketime), once
# per date and time given, to show that no test depends on the day it runs:
#
#   apt-get install -y faketime
#   tests/faketime/sweep.sh 2026-12-01 2026-12-07 "10:00:00 23:30:00"
#
# Arguments: first day, last day (YYYY-MM-DD), times of day (UTC, space-separated).
# cargo, rustc and redis cannot run under libfaketime (they hang or abort), so only the test
# binaries and the servers they spawn see the faked time: see runner.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
first="$1"; last="$2"; times="${3:-10:00:00 23:30:00}"
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$here/runner.sh"
day="$first"
while [[ "$day" < "$last" || "$day" == "$last" ]]; do
  for t in $times; do
    summary=$(FAKE_AT="$day $t" TZ=UTC cargo nextest run --workspace --no-fail-fast 2>&1 \
      | grep -E "Summary|FAIL \[" | sort -u | tr '\n' ' ')
    echo "$day $t: $summary"
  done
  day=$(date -u -d "$day + 1 day" +%F)
done
