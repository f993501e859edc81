#!/usr/bin/env bash
# Start a private PostgreSQL server for Gatepost's catalog tests.
#
#   start-postgres.sh DIR [--no-fsync] [--stop-with PID]
#
# DIR is an empty scratch folder (created if missing; no whitespace in its path). Everything
# lives under it: data/ (the cluster), run/ (the unix socket), postgres.log. The cluster's
# superuser is "gatepost" with a generated password, asked for (scram-sha-256) on TCP,
# 127.0.0.1 only; the unix socket in DIR/run takes it without one (only root and the server's
# user can reach DIR). Run as root, the server runs as Debian's "postgres" user (initdb and
# postgres refuse root). On success ONE line of JSON goes to stdout: pid, host, port,
# socketDirectory, user, password, bin (the server's programs: psql, pg_isready...), log.
#
#   --stop-with PID  a watchdog stops the server once PID exits (so a crashed test run leaves
#                    no server behind), then removes DIR.
#
# Stop it with: kill -INT PID   (a fast shutdown: clients are disconnected). DIR can then be
# deleted.
set -euo pipefail

die() { echo "start-postgres.sh: $*" >&2; exit 1; }

[[ $# -ge 1 ]] || die "usage: start-postgres.sh DIR [--stop-with PID]"
DIR=$1; shift
WATCH_PID=""
SYNC=(-c fsync=on)
while [[ $# -gt 0 ]]; do
  case $1 in
    --stop-with) WATCH_PID=${2:?--stop-with needs a PID}; shift ;;
    # Throwaway test databases: no flush to disk. The test suite starts seventy of them at
    # once, each migrated; with fsync their flushes loaded the machine for every other test.
    # Benchmarks keep fsync on, as a production server has it.
    --no-fsync) SYNC=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off) ;;
    *) die "unknown option: $1" ;;
  esac
  shift
done

# Never leave a half-started server behind (failure, or we are killed while waiting).
PID=""
trap '[[ -n $PID ]] && kill -INT "$PID" 2>/dev/null' EXIT
trap 'exit 1' TERM INT HUP   # so that the EXIT trap runs on these too

# Debian installs the server's programs per major version, outside PATH; take the newest.
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n $BIN ]] || BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
for cmd in initdb postgres pg_isready psql; do
  [[ -x $BIN/$cmd ]] || die "$cmd not found in $BIN (run scripts/install-test-deps)"
done
command -v python3 >/dev/null || die "python3 not found (run scripts/install-test-deps)"

DIR=$(realpath -m "$DIR")
[[ $DIR != *[[:space:]\"\'\\]* ]] || die "DIR must not contain whitespace or quotes: $DIR"
# The socket path (DIR/run/.s.PGSQL.NNNNN) is limited to 107 bytes.
(( ${#DIR} <= 80 )) || die "DIR path too long for the server's socket (max 80 chars): $DIR"
mkdir -p "$DIR"
[[ -z $(ls -A "$DIR") ]] || die "DIR must be empty: $DIR"
mkdir -p "$DIR/data" "$DIR/run"
chmod 700 "$DIR" "$DIR/data" "$DIR/run"

if [[ $(id -u) == 0 ]]; then
  getent passwd postgres >/dev/null || die "system user postgres missing (is postgresql installed?)"
  chown -R postgres: "$DIR"
  # setpriv execs the program itself (runuser and su fork), so $! is the server's own PID.
  AS_SERVER=(setpriv --reuid=postgres --regid=postgres --init-groups --)
else
  AS_SERVER=()
fi

PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
PWFILE=$DIR/pwfile
printf '%s\n' "$PASSWORD" > "$PWFILE"
chmod 600 "$PWFILE"
[[ $(id -u) != 0 ]] || chown postgres: "$PWFILE"
# --no-sync: only initdb's own final flush; the server itself runs with fsync on.
( cd "$DIR" && exec "${AS_SERVER[@]}" "$BIN/initdb" -D "$DIR/data" -U gatepost --pwfile="$PWFILE" --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync ) > "$DIR/initdb.log" 2>&1 ||
  { tail -n 20 "$DIR/initdb.log" >&2; die "initdb failed"; }
rm -f "$PWFILE"

# alive, started_at, free_ports, stop_with
source "$(dirname "${BASH_SOURCE[0]}")/process-lib.sh"

LOG=$DIR/postgres.log
# A port is free when chosen but could be taken before the server binds it (a parallel test
# run): retry with a fresh port in that case.
for _ in 1 2 3; do
  read -r PORT _ < <(free_ports)
  : > "$LOG"
  [[ $(id -u) != 0 ]] || chown postgres: "$LOG"
  # stdio detached so a caller reading our stdout to EOF is not held open. Tests run in
  # parallel, each with a pool of its own: room for a few hundred connections.
  ( cd "$DIR" && exec "${AS_SERVER[@]}" "$BIN/postgres" -D "$DIR/data" -k "$DIR/run" -p "$PORT" \
      -c listen_addresses=127.0.0.1 "${SYNC[@]}" -c max_connections=400 -c shared_buffers=64MB ) </dev/null >>"$LOG" 2>&1 &
  PID=$!
  ready=0
  for _ in $(seq 300); do
    alive "$PID" || break
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres -U gatepost -t 1; then ready=1; break; fi
    sleep 0.1
  done
  if (( ready )); then
    [[ -z $WATCH_PID ]] || stop_with "$WATCH_PID" "$PID" INT "$DIR"
    python3 - "$PID" "$PORT" "$DIR" "$PASSWORD" "$BIN" <<'PY'
import json, sys
pid, port, d, password, bin_dir = sys.argv[1:]
print(json.dumps({
    "pid": int(pid), "host": "127.0.0.1", "port": int(port), "socketDirectory": f"{d}/run",
    "user": "gatepost", "password": password, "bin": bin_dir, "log": f"{d}/postgres.log",
}))
PY
    PID=""   # started: it is the caller's now
    exit 0
  fi
  kill -INT "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
  grep -q "Address already in use" "$LOG" || break
done
echo "start-postgres.sh: the server exited or did not accept connections on 127.0.0.1:$PORT within 30 s; tail of $LOG:" >&2
tail -n 30 "$LOG" >&2
exit 1
