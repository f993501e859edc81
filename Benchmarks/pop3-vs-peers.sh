#!/usr/bin/env bash
# Retrieval throughput: gatepost against mpop and fetchmail, on the same loopback Dovecot, in
# one run, plain and implicit TLS. Each client drains the same mailbox (refilled between runs)
# of COUNT messages with SIZE-byte attachments, ROUNDS times, the order of the clients rotating
# each round. Prints, per client and mode, the median wall time with messages/s, MB/s, CPU
# seconds and peak RSS of that run, and the ratio gatepost/mpop of the medians (below 1 means
# gatepost is faster), then each round's ratio.
#
#   Benchmarks/pop3-vs-peers.sh [COUNT] [SIZE] [ROUNDS]     (default 2000 65536 3)
#
# GATEPOST_BASELINE=PATH adds another gatepost binary (e.g. a release build of the commit
# before a change) as the client "baseline", run in the same rounds: a change is measured
# against what it changes on the same machine, at the same moment.
#
# GATEPOST_POSTGRES=1 adds the client "gatepost-pg": the same binary with a PostgreSQL catalog
# (a private server, scripts/peers/start-postgres.sh, a new database per run), and prints its
# ratio to gatepost with SQLite.
#
# Each run writes into a folder of its own and nothing is deleted until the end: on ext4,
# creating files right after many were deleted is slow (the allocator skips recently freed
# inodes), and a cleanup between runs would tax whichever client came next.
#
# gatepost does more than the peers: it parses every message's MIME, decodes and hashes the
# attachment, fsyncs the files and commits a catalog row per message before its DELE. mpop
# delivers raw messages to a Maildir; fetchmail writes them to one BSMTP file.
set -euo pipefail
COUNT=${1:-2000}
SIZE=${2:-65536}
ROUNDS=${3:-3}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

need=()
command -v mpop >/dev/null || need+=(mpop)
command -v fetchmail >/dev/null || need+=(fetchmail)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
source Benchmarks/lib.sh
bench_build
bench_workdir gp-bench
DOVE=$WORK/dovecot
start_dovecot "$DOVE"
PLAIN=$(field '["plainPort"]'); TLSPORT=$(field '["tlsPort"]'); CA=$(field '["caFile"]')
MAILDIR=$(field '["maildirs"]["alice"]'); MAILUID=$(field '["mailUid"]')

# The mailbox once, then copied in before each client's run.
SEED=$WORK/seed; mkdir -p "$SEED"
python3 scripts/peers/make-messages.py --count "$COUNT" --seed 1 --out "$SEED" --manifest "$WORK/manifest.json" \
  --attachment-size "$SIZE" --mix xfer >/dev/null
BYTES=$(du -sb "$SEED" | cut -f1)
RUN=0
refill() {
  # Fresh file names each time: Dovecot remembers names it has seen expunged.
  RUN=$((RUN + 1))
  find "$(dirname "$MAILDIR")"/{new,cur} -type f -delete
  for f in "$SEED"/*; do cp "$f" "$MAILDIR/${RUN}${f##*/}"; done
  chown -R "$MAILUID" "$MAILDIR"
}

# measure NAME MODE COMMAND...: runs once on a full mailbox, appends a result row.
RESULTS=$WORK/results
ROUND=0
measure() {
  local name=$1 mode=$2; shift 2
  refill
  sync
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || { echo "$name $mode failed:"; tail -5 "$WORK/out"; exit 1; }
  local left; left=$(find "$(dirname "$MAILDIR")"/{new,cur} -type f | wc -l)
  [[ $left == 0 ]] || { echo "$name $mode left $left messages on the server"; exit 1; }
  read -r wall user sys rss <"$WORK/time"
  echo "$name $mode $wall $user $sys $rss $ROUND" >>"$RESULTS"
}

run_gatepost() {
  local mode=$1 name=${2:-gatepost}
  local dir=$WORK/$name-$1-$ROUND
  mkdir -p "$dir/sites"
  cat >"$dir/sites/bench.yaml" <<YAML
pop3:
  host: 127.0.0.1
  port: $port
  security: $sec
  allow_plaintext_password: true
  user: alice
  password: alice-secret
  tls: {ca_file: $CA}
poll: {max_message_size: 1GiB}
YAML
  measure "$name" "$mode" "$GATEPOST" poll --sites "$dir/sites" --spool "$dir/spool" "${CATALOG_ARGS[@]}"
}
CATALOG_ARGS=()
run_gatepost-pg() {
  CATALOG_ARGS=(--catalog "$(bench_database "bench_${1}_$ROUND")")
  run_gatepost "$1" gatepost-pg
  CATALOG_ARGS=()
}
run_baseline() {
  local saved=$GATEPOST
  GATEPOST=$GATEPOST_BASELINE
  run_gatepost "$1" baseline
  GATEPOST=$saved
}
run_mpop() {
  local mode=$1 dir=$WORK/mpop-$1-$ROUND
  mkdir -p "$dir/maildir"/{new,cur,tmp}
  measure mpop "$mode" mpop --host=127.0.0.1 --port="$port" --tls="$mtls" --tls-starttls=off --tls-trust-file="$CA" \
    --auth=user --user=alice --passwordeval="echo alice-secret" --keep=off --pipelining=auto \
    --uidls-file="$dir/uidls" --delivery="maildir,$dir/maildir" --received-header=off -q
}
run_fetchmail() {
  local mode=$1 dir=$WORK/fetchmail-$1-$ROUND
  mkdir -p "$dir"
  cat >"$dir/fetchmailrc" <<RC
set no syslog
poll 127.0.0.1 service $port protocol POP3 auth password
  user alice password alice-secret $fssl
  nokeep fetchall
RC
  chmod 600 "$dir/fetchmailrc"
  HOME=$dir measure fetchmail "$mode" fetchmail -f "$dir/fetchmailrc" --bsmtp "$dir/out.bsmtp" --nosyslog -s
}

CLIENTS=(gatepost mpop fetchmail)
[[ -z ${GATEPOST_BASELINE:-} ]] || CLIENTS+=(baseline)
if [[ -n ${GATEPOST_POSTGRES:-} ]]; then
  start_postgres "$WORK/postgres"
  CLIENTS+=(gatepost-pg)
fi
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for mode in plain tls; do
    if [[ $mode == plain ]]; then port=$PLAIN; sec=none; mtls=off; fssl="sslproto ''"; else port=$TLSPORT; sec=tls; mtls=on; fssl="ssl sslcertfile $CA sslcertck sslcommonname localhost"; fi
    for ((i = 0; i < ${#CLIENTS[@]}; i++)); do
      "run_${CLIENTS[(i + ROUND - 1) % ${#CLIENTS[@]}]}" "$mode"
    done
  done
done

python3 - "$RESULTS" "$COUNT" "$BYTES" "$ROUNDS" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
count, size, rounds = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def median_run(name, mode):
    runs = sorted((r for r in rows if r[0] == name and r[1] == mode), key=lambda r: float(r[2]))
    return runs[(len(runs) - 1) // 2]
print(f"{count} messages, {size / 1e6:.1f} MB, loopback Dovecot, median of {rounds} rounds")
print(f"{'client':10} {'mode':6} {'wall s':>8} {'msg/s':>8} {'MB/s':>8} {'CPU s':>7} {'RSS MiB':>8} {'vs mpop':>8}")
for mode in ("plain", "tls"):
    mpop = float(median_run("mpop", mode)[2])
    for name in [n for n in ("gatepost", "gatepost-pg", "baseline", "mpop", "fetchmail") if any(r[0] == n for r in rows)]:
        _, _, wall, user, system, rss, _ = median_run(name, mode)
        wall = float(wall)
        print(f"{name:10} {mode:6} {wall:8.2f} {count / wall:8.0f} {size / 1e6 / wall:8.1f} "
              f"{float(user) + float(system):7.2f} {int(rss) / 1024:8.1f} {wall / mpop:8.2f}")
for mode in ("plain", "tls"):
    ratios = []
    for round_ in range(1, rounds + 1):
        wall = {r[0]: float(r[2]) for r in rows if r[1] == mode and int(r[6]) == round_}
        ratios.append(f"{wall['gatepost'] / wall['mpop']:.2f}")
    print(f"gatepost/mpop {mode} by round: {' '.join(ratios)}")
    if any(r[0] == "gatepost-pg" for r in rows):
        pg = [f"{float(p[2]) / float(s[2]):.2f}" for p, s in zip(
            sorted((r for r in rows if r[0] == "gatepost-pg" and r[1] == mode), key=lambda r: int(r[6])),
            sorted((r for r in rows if r[0] == "gatepost" and r[1] == mode), key=lambda r: int(r[6])))]
        print(f"gatepost-pg/gatepost {mode} by round: {' '.join(pg)}; medians {float(median_run('gatepost-pg', mode)[2]) / float(median_run('gatepost', mode)[2]):.2f}")
PY
