#!/usr/bin/env bash
# Retrieval throughput: gatepost against mpop and fetchmail, on the same loopback Dovecot, in
# one run, plain and implicit TLS. Each client drains the same mailbox (refilled between runs)
# of COUNT messages with SIZE-byte attachments. Prints wall time, messages/s, MB/s, CPU seconds,
# peak RSS and the ratio gatepost/mpop (wall time; below 1 means gatepost is faster).
#
#   Benchmarks/pop3-vs-peers.sh [COUNT] [SIZE]      (default 2000 65536)
#
# gatepost does more than the peers: it parses every message's MIME, decodes and hashes the
# attachment, fsyncs the files and commits a catalog row per message before its DELE. mpop
# delivers raw messages to a Maildir; fetchmail writes them to one BSMTP file.
set -euo pipefail
COUNT=${1:-2000}
SIZE=${2:-65536}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

need=()
command -v mpop >/dev/null || need+=(mpop)
command -v fetchmail >/dev/null || need+=(fetchmail)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
scripts/install-test-deps >/dev/null
swift build -c release --product gatepost >/dev/null
GATEPOST=$(swift build -c release --show-bin-path)/gatepost

WORK=$(mktemp -d /tmp/gp-bench-XXXXXX)
chmod 755 "$WORK"   # Dovecot's mail user must reach the mailbox below it
DOVE=$WORK/dovecot
INFO=""
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$1)" "$INFO"; }
trap '[[ -n $INFO ]] && kill "$(field "[\"pid\"]")" 2>/dev/null; rm -rf "$WORK"' EXIT
INFO=$(scripts/peers/start-dovecot.sh "$DOVE" --stop-with $$)
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
measure() {
  local name=$1 mode=$2; shift 2
  refill
  sync
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || { echo "$name $mode failed:"; tail -5 "$WORK/out"; exit 1; }
  local left; left=$(find "$(dirname "$MAILDIR")"/{new,cur} -type f | wc -l)
  [[ $left == 0 ]] || { echo "$name $mode left $left messages on the server"; exit 1; }
  read -r wall user sys rss <"$WORK/time"
  echo "$name $mode $wall $user $sys $rss" >>"$RESULTS"
}

for mode in plain tls; do
  if [[ $mode == plain ]]; then port=$PLAIN; sec=none; mtls=off; fssl="sslproto ''"; else port=$TLSPORT; sec=tls; mtls=on; fssl="ssl sslcertfile $CA sslcertck sslcommonname localhost"; fi

  mkdir -p "$WORK/sites-$mode"
  cat >"$WORK/sites-$mode/bench.yaml" <<YAML
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
  rm -rf "$WORK/spool-$mode"
  measure gatepost "$mode" "$GATEPOST" poll --sites "$WORK/sites-$mode" --spool "$WORK/spool-$mode"

  rm -rf "$WORK/mpop-$mode"; mkdir -p "$WORK/mpop-$mode"/{new,cur,tmp}
  measure mpop "$mode" mpop --host=127.0.0.1 --port="$port" --tls="$mtls" --tls-starttls=off --tls-trust-file="$CA" \
    --auth=user --user=alice --passwordeval="echo alice-secret" --keep=off --pipelining=auto \
    --uidls-file="$WORK/mpop-$mode.uidls" --delivery="maildir,$WORK/mpop-$mode" --received-header=off -q

  cat >"$WORK/fetchmailrc-$mode" <<RC
set no syslog
poll 127.0.0.1 service $port protocol POP3 auth password
  user alice password alice-secret $fssl
  nokeep fetchall
RC
  chmod 600 "$WORK/fetchmailrc-$mode"
  HOME=$WORK measure fetchmail "$mode" fetchmail -f "$WORK/fetchmailrc-$mode" --bsmtp "$WORK/fetchmail-$mode.bsmtp" --nosyslog -s
done

python3 - "$RESULTS" "$COUNT" "$BYTES" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
count, size = int(sys.argv[2]), int(sys.argv[3])
mpop = {r[1]: float(r[2]) for r in rows if r[0] == "mpop"}
print(f"{count} messages, {size / 1e6:.1f} MB, loopback Dovecot")
print(f"{'client':10} {'mode':6} {'wall s':>8} {'msg/s':>8} {'MB/s':>8} {'CPU s':>7} {'RSS MiB':>8} {'vs mpop':>8}")
for name, mode, wall, user, system, rss in rows:
    wall = float(wall)
    print(f"{name:10} {mode:6} {wall:8.2f} {count / wall:8.0f} {size / 1e6 / wall:8.1f} "
          f"{float(user) + float(system):7.2f} {int(rss) / 1024:8.1f} {wall / mpop[mode]:8.2f}")
PY
