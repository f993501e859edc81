#!/usr/bin/env bash
# The console and the REST API over a large catalog: COUNT transfers (default 100,000) over 20
# sites, served by a release `gatepost serve`. Each request is made REQUESTS times (default 50)
# with curl over loopback; prints the median and the 95th percentile of curl's total time.
# Targets (issue #17): a filtered and searched API page under 50 ms, the console's transfer
# list page under 100 ms.
#
#   Benchmarks/console.sh [COUNT] [REQUESTS]
set -euo pipefail
COUNT=${1:-100000}
REQUESTS=${2:-50}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product gatepost >/dev/null
swift build -c release --product gatepost-catalog-fill >/dev/null
BIN=$(swift build -c release --show-bin-path)
WORK=$(mktemp -d /tmp/gatepost-console-bench.XXXXXX)
PID=""
trap '[[ -n $PID ]] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/sites" "$WORK/spool"
for i in $(seq 0 19); do
  printf 'pop3: {host: pop%s.partner.example, user: u, password: p}\n' "$i" > "$WORK/sites/partner$i.yaml"
done
"$BIN/gatepost-catalog-fill" "$WORK/spool/catalog.sqlite" "$COUNT" 20
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/gatepost" serve --sites "$WORK/sites" --spool "$WORK/spool" --http "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null && break; sleep 0.1; done

measure() { # label path (with query)
  local label=$1 path=$2 times
  # A first request opens the session (the console's pages set a cookie).
  curl -s -c "$WORK/cookies" -b "$WORK/cookies" -o /dev/null "http://127.0.0.1:$PORT$path"
  times=$(for _ in $(seq "$REQUESTS"); do
    curl -s -b "$WORK/cookies" -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT$path"
  done | sort -n)
  python3 - "$label" "$times" <<'PY'
import sys
label, times = sys.argv[1], [float(t) * 1000 for t in sys.argv[2].split()]
median = times[len(times) // 2]
p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
print(f"{label:58s} median {median:6.1f} ms   p95 {p95:6.1f} ms")
PY
}

echo "catalog: $COUNT transfers over 20 sites; $REQUESTS requests each"
measure "API: newest 50" "/api/v1/transfers?limit=50"
measure "API: one site, XFER, file name glob, 50" "/api/v1/transfers?site=partner3&type=XFER&fileName=INV-*.csv&limit=50"
measure "API: sender substring and subject glob, 50" "/api/v1/transfers?sender=edi2@&subject=*batch%2099*&limit=50"
measure "API: a rare file name (a search over every row)" "/api/v1/transfers?fileName=INV-2026099990.csv&limit=50"
measure "API: a rare sender (a search over every row)" "/api/v1/transfers?sender=edi9@&limit=50"
measure "API: failed, one site, page after a cursor" "/api/v1/transfers?site=partner5&state=failed&limit=50"
measure "console: transfer list, search box" "/transfers?q=DESADV&site=partner7"
measure "console: transfer list, search box, a rare text" "/transfers?q=2026099990"
measure "console: transfer list, search box, a common text" "/transfers?q=batch"
measure "console: transfer list, newest" "/transfers"
measure "console: dashboard" "/"
