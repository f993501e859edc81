#!/usr/bin/env bash
# Fails when a test run left a process behind.
#
#   leftovers.sh RUN [SECONDS]
#
# RUN is the GATEPOST_TEST_RUN tag the run gave its test peers (their folders are
# /tmp/gp-RUN-KIND-XXXXXXXX, named on every master's and watchdog's command line).
# Also counted: any process running a program built in this checkout (.build*/), such as
# a `gatepost` daemon a test started. Waits up to SECONDS (default 30) for them to end:
# peers are stopped by their tests or, once the test process is gone, by their watchdogs
# (SIGTERM, then SIGKILL after 10 s). Lists what is still there and exits 1; 0 when nothing.
set -uo pipefail
RUN=${1:?usage: leftovers.sh RUN [SECONDS]}
SECONDS_LEFT=${2:-30}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

find_leftovers() {
  local dir pid cmdline exe
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    cmdline=$( { tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null) || continue
    [[ -n $cmdline ]] || continue   # kernel threads and zombies
    exe=$(readlink "$dir/exe" 2>/dev/null || true)
    if [[ $cmdline == *"/tmp/gp-$RUN-"* || $exe == "$ROOT"/.build*/* ]]; then
      echo "$pid $cmdline"
    fi
  done
}

deadline=$((SECONDS + SECONDS_LEFT))
while :; do
  left=$(find_leftovers)
  [[ -z $left ]] && exit 0
  ((SECONDS < deadline)) || break
  sleep 1
done
echo "leftovers.sh: processes of test run $RUN still running after ${SECONDS_LEFT} s:" >&2
echo "$left" >&2
exit 1
