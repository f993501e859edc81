#!/usr/bin/env bash
# One `gatepost run` daemon polling SITES sites (one Dovecot user each) on a 60 s interval for
# DURATION seconds: CPU used, resident memory, and polls per minute. The first cycle also
# retrieves one small message per site.
#
#   Benchmarks/daemon-many-sites.sh [SITES] [DURATION] [POLLS]      (default 1000 150 16)
#
# POLLS: polls at once (--concurrent-polls, and per host: every site is on the one Dovecot).
# GATEPOST_POSTGRES=1: the catalog on a private PostgreSQL (fsync on) instead of SQLite; the
# server's own CPU is printed apart from the daemon's.
# DOVECOT_REUSE=1: Dovecot's login and pop3 processes serve many sessions each, as a server
# polled by thousands of sites is run (by default it forks a process per session, which on
# 2 cores limits it to about 70 to 80 sessions a second, below what 10,000 sites ask).
set -euo pipefail
SITES=${1:-1000}
DURATION=${2:-150}
POLLS=${3:-16}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
bench_build
bench_workdir gp-many
bench_on_exit() { [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null; }
start_dovecot "$WORK/d" ${DOVECOT_REUSE:+--reuse-processes}
PORT=$(field '["tlsPort"]'); CA=$(field '["caFile"]'); MAILUID=$(field '["mailUid"]')
DOVE=$WORK/d

# SITES more users (Dovecot re-reads its passwd-file when it changes), one message each.
mkdir -p "$WORK/sites" "$WORK/seed"
python3 scripts/peers/make-messages.py --count 1 --seed 5 --out "$WORK/seed" --manifest "$WORK/m.json" --mix xfer >/dev/null
MESSAGE=$(ls "$WORK/seed")
for i in $(seq 1 "$SITES"); do
  user=u$i
  echo "$user:{PLAIN}$user-secret:::$user:$DOVE/mail/$user::" >>"$DOVE/users"
  mkdir -p "$DOVE/mail/$user/Maildir/"{cur,new,tmp}
  cp "$WORK/seed/$MESSAGE" "$DOVE/mail/$user/Maildir/new/"
  cat >"$WORK/sites/s$i.yaml" <<YAML
pop3: {host: 127.0.0.1, port: $PORT, user: $user, password: $user-secret, tls: {ca_file: $CA}}
poll: {interval: 60s}
YAML
done
chown -R "$MAILUID" "$DOVE/mail"

CATALOG_ARGS=()
if [[ -n ${GATEPOST_POSTGRES:-} ]]; then
  start_postgres "$WORK/postgres"
  CATALOG_ARGS=(--catalog "$(bench_database many)")
fi

"$GATEPOST" run --sites "$WORK/sites" --spool "$WORK/spool" --concurrent-polls "$POLLS" --concurrent-polls-per-host "$POLLS" \
  "${CATALOG_ARGS[@]}" 2>"$WORK/daemon.log" &
DAEMON=$!
ticks=$(getconf CLK_TCK)
samples=$WORK/samples
# CPU ticks of every process of the PostgreSQL server (one per connection, and its workers).
postgres_ticks() {
  [[ -n ${PGINFO:-} ]] || { echo 0; return; }
  local total=0 pid
  local server; server=$(pgfield pid)
  for pid in "$server" $(pgrep -P "$server" || true); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
start=$(date +%s)
while (( $(date +%s) - start < DURATION )); do
  sleep 5
  read -r utime stime < <(awk '{print $14, $15}' "/proc/$DAEMON/stat")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status")
  echo "$(( $(date +%s) - start )) $(( utime + stime )) $rss $(postgres_ticks)" >>"$samples"
done
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$DAEMON/status")
kill -TERM "$DAEMON"; wait "$DAEMON" || true; DAEMON=""

# The catalog's counts, as "records polled errors recent": recent, the sites whose last poll
# began in the run's last minute (all of them when the daemon keeps to the 60 s interval).
if [[ -n ${PGINFO:-} ]]; then
  counts=$(bench_psql many -At -F ' ' -c "select (select count(*) from transfer),
    (select count(*) from site_state where last_success is not null), (select count(*) from site_state where last_error is not null),
    (select count(*) from site_state where last_poll >= now() - interval '65 seconds')")
  catalog="PostgreSQL"
else
  counts=$(python3 - "$WORK/spool/catalog.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(*[db.execute(q).fetchone()[0] for q in ("select count(*) from transfer",
  "select count(*) from site_state where lastSuccess is not null", "select count(*) from site_state where lastError is not null",
  "select count(*) from site_state where lastPoll >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-65 seconds')")])
PY
)
  catalog="SQLite"
fi

python3 - "$samples" "$ticks" "$hwm" "$SITES" "$counts" "$catalog" <<'PY'
import sys
rows = [list(map(int, line.split())) for line in open(sys.argv[1])]
ticks, hwm, sites = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
records, polled, errors, recent = map(int, sys.argv[5].split())
catalog = sys.argv[6]
elapsed = rows[-1][0]
cpu = rows[-1][1] / ticks
# Steady state: after the first cycle (first 60 s), when every site has been polled once.
steady = [r for r in rows if r[0] >= 70]
steady_cpu = (steady[-1][1] - steady[0][1]) / ticks / max(1, steady[-1][0] - steady[0][0]) if len(steady) > 1 else float("nan")
print(f"{sites} sites, 60 s interval, {catalog} catalog, {elapsed} s: {records} messages received, {polled} sites polled, {errors} with errors")
print(f"polls in the last minute: {recent} of {sites} sites")
print(f"CPU: {cpu:.1f} s in all; steady state {steady_cpu * 100:.1f} % of one core")
print(f"memory: RSS now {rows[-1][2] / 1024:.1f} MiB, peak {hwm / 1024:.1f} MiB")
if catalog == "PostgreSQL" and len(steady) > 1:
    server = (steady[-1][3] - steady[0][3]) / ticks / max(1, steady[-1][0] - steady[0][0])
    print(f"PostgreSQL server: steady state {server * 100:.1f} % of one core")
PY
