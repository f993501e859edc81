#!/usr/bin/env bash
# Memory through S/MIME, on the release build: `gatepost poll` fetches from a loopback Dovecot
# (TLS) one message whose SIZE-byte attachment was encrypted by `openssl cms` (AES-256-CBC,
# streamed BER), decrypts, classifies and records it. Prints the poll's summary (with its peak
# resident memory, the kernel's VmHWM) for a small encrypted message and for the large one,
# and checks the file's SHA-256. The target is a peak under 64 MiB for 256 MiB.
#
#   Benchmarks/smime-memory.sh [SIZE]     (default 268435456)
set -euo pipefail
SIZE=${1:-268435456}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source Benchmarks/lib.sh
bench_build
bench_workdir gp-bench
start_dovecot "$WORK/dovecot"
TLSPORT=$(field '["tlsPort"]'); CA=$(field '["caFile"]'); PASSWORD=$(field '["users"]["alice"]')
MAILDIR=$(field '["maildirs"]["alice"]'); MAILUID=$(field '["mailUid"]')

cd "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -keyout us.key -out us.pem -days 2 -subj /CN=gatepost-benchmark 2>/dev/null
mkdir sites
cat > sites/partner.yaml <<SITE
pop3: {host: 127.0.0.1, port: $TLSPORT, user: alice, password: "$PASSWORD", tls: {ca_file: $CA}}
poll: {max_message_size: 4GiB}
smime: {key: $WORK/us.key, certificate: $WORK/us.pem, require: encrypted}
SITE

deliver() {  # SIZE NAME
  head -c "$1" /dev/urandom > "$2"
  sha256sum "$2" | cut -d' ' -f1 > "$2.sha256"
  { printf 'Content-Type: application/octet-stream; name="%s"\r\nContent-Disposition: attachment; filename="%s"\r\nContent-Transfer-Encoding: base64\r\n\r\n' "$2" "$2"
    base64 -w 76 "$2" | sed 's/$/\r/'; } > "$2.entity"
  rm "$2"
  openssl cms -encrypt -binary -stream -aes-256-cbc -in "$2.entity" -out "$MAILDIR/$2.eml" -subject "$2" us.pem
  rm "$2.entity"
  [[ $(id -u) != 0 ]] || chown "$MAILUID" "$MAILDIR/$2.eml"
}
poll() { "$GATEPOST" poll partner --sites sites --spool spool | grep -E "peak memory"; }

deliver 1000 small.bin
echo "small: $(poll)"
deliver "$SIZE" big.bin
echo "large ($SIZE bytes): $(poll)"
stored=$("$GATEPOST" catalog list --sites sites --spool spool --format json | python3 -c '
import json,sys
print(next(r["sha256"] for r in json.load(sys.stdin) if r["fileName"] == "big.bin"))')
[[ $stored == $(cat big.bin.sha256) ]] && echo "big.bin: SHA-256 matches" || { echo "big.bin: SHA-256 differs"; exit 1; }
