#!/usr/bin/env bash
# Start a private Dovecot POP3 server for Gatepost integration tests.
#
#   start-dovecot.sh DIR [--config-only] [--stop-with PID] [--lock-session] [--reuse-processes]
#
# DIR is an empty scratch folder (created if missing; no whitespace in its
# path, Dovecot's passwd-file args are space-separated). Everything lives under
# it: tls/, users, mail/, run/ (base_dir), state/, dovecot.conf, dovecot.log.
# On success ONE line of JSON goes to stdout (ports, pid, CA, users, maildirs,
# and for start-smtp.sh the LMTP and SASL sockets).
#
#   --config-only   write certs/users/maildirs/config and print the JSON with
#                   "pid": null; the caller runs the "startCommand" itself.
#   --stop-with PID a watchdog stops Dovecot once PID exits (so a crashed test
#                   run leaves no daemon behind).
#   --lock-session  pop3_lock_session = yes (RFC 1939 maildrop lock; a second
#                   session of a user then waits 10 s and gets -ERR [IN-USE]).
#   --reuse-processes  login and pop3 processes serve many sessions each (Dovecot's
#                   "high-performance" login mode), as a server polled by thousands
#                   of sites a minute is run; by default a process per session.
#
# Stop it with: kill PID   (SIGTERM to the master; it stops all its children
# and removes DIR/run/master.pid). DIR can then be deleted.
set -euo pipefail

die() { echo "start-dovecot.sh: $*" >&2; exit 1; }

[[ $# -ge 1 ]] || die "usage: start-dovecot.sh DIR [--config-only] [--stop-with PID] [--lock-session] [--reuse-processes]"
DIR=$1; shift
CONFIG_ONLY=0; WATCH_PID=""; LOCK_SESSION=no; SERVICE_COUNT=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --config-only) CONFIG_ONLY=1 ;;
    --stop-with) WATCH_PID=${2:?--stop-with needs a PID}; shift ;;
    --lock-session) LOCK_SESSION=yes ;;
    --reuse-processes) SERVICE_COUNT=0 ;;
    *) die "unknown option: $1" ;;
  esac
  shift
done

# Never leave a half-started Dovecot behind (failure, or we are killed while waiting).
PID=""
trap '[[ -n $PID ]] && kill "$PID" 2>/dev/null' EXIT
trap 'exit 1' TERM INT HUP   # so that the EXIT trap runs on these too

PATH=$PATH:/usr/sbin:/sbin   # dovecot lives in /usr/sbin, not in a normal user's PATH
for cmd in dovecot openssl python3; do
  command -v "$cmd" >/dev/null || die "$cmd not found (run scripts/install-test-deps)"
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
DIR=$(realpath -m "$DIR")   # Dovecot needs absolute paths
[[ $DIR != *[[:space:]]* ]] || die "DIR must not contain whitespace: $DIR"
# Unix socket paths (DIR/run/token-login/tokenlogin...) are limited to 107 bytes.
(( ${#DIR} <= 80 )) || die "DIR path too long for Dovecot's sockets (max 80 chars): $DIR"
mkdir -p "$DIR"
[[ -z $(ls -A "$DIR") ]] || die "DIR must be empty: $DIR"

USERS=(alice bob carol)
SELF_USER=$(id -un)
if [[ $(id -u) == 0 ]]; then
  # Dovecot's pop3 refuses mail access as root ("Mail access not allowed for
  # root"), so mail belongs to Debian's always-present "mail" user (uid 8,
  # base-passwd). Login processes run as "dovenull", helpers as "dovecot"
  # (both created by dovecot-core).
  MAIL_USER=mail; INTERNAL_USER=dovecot; INTERNAL_GROUP=dovecot; LOGIN_USER=dovenull
  LOGIN_CHROOT=login; ANVIL_CHROOT=empty   # Dovecot's defaults
  for u in $MAIL_USER $INTERNAL_USER $LOGIN_USER; do
    getent passwd "$u" >/dev/null || die "system user $u missing (is dovecot-core installed?)"
  done
  chmod go+x "$DIR"   # mktemp -d gives 0700; the mail user must traverse DIR
else
  # Rootless Dovecot: every process is the invoking user, and chroot needs root.
  MAIL_USER=$SELF_USER; INTERNAL_USER=$SELF_USER; INTERNAL_GROUP=$(id -gn); LOGIN_USER=$SELF_USER
  LOGIN_CHROOT=""; ANVIL_CHROOT=""
fi
MAIL_UID=$(id -u "$MAIL_USER"); MAIL_GID=$(id -g "$MAIL_USER")
# LMTP delivery (for the SMTP test peer) when dovecot-lmtpd is installed;
# "lmtpSocket" is null in the JSON otherwise.
LMTP=""
[[ -x /usr/lib/dovecot/lmtp ]] && LMTP=" lmtp"

# --- TLS: throwaway CA, server cert for localhost/127.0.0.1, client cert ---
TLS=$DIR/tls
mkdir -p "$TLS"; chmod 700 "$TLS"
(
  cd "$TLS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.pem \
    -subj "/CN=Gatepost Test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  sign() { # name CN extensions
    openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -days 825 \
      -set_serial "0x$(openssl rand -hex 16)" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  sign server localhost $'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
  sign client certuser 'extendedKeyUsage=clientAuth'
  openssl verify -CAfile ca.pem server.pem client.pem >/dev/null
  chmod 600 ./*.key
) || die "certificate generation failed"

# --- users (passwd-file: user:password:uid:gid:gecos:home:shell:extra) and Maildirs ---
# uid/gid stay empty: mail_uid/mail_gid in the config name the mail owner
# (and passwd-file would reject uid 0 in a rootless run as root anyway).
: > "$DIR/users"; chmod 600 "$DIR/users"
for u in "${USERS[@]}"; do
  echo "$u:{PLAIN}$u-secret:::$u:$DIR/mail/$u::" >> "$DIR/users"
  mkdir -p "$DIR/mail/$u/Maildir/"{cur,new,tmp}
done
# certuser logs in with the client certificate only (SASL EXTERNAL): no password.
echo "certuser::::certuser:$DIR/mail/certuser::nopassword" > "$DIR/cert-users"
echo "certuser::::certuser:$DIR/mail/certuser::" >> "$DIR/users"   # userdb entry only
mkdir -p "$DIR/mail/certuser/Maildir/"{cur,new,tmp}
chown -R "$MAIL_UID:$MAIL_GID" "$DIR/mail"
if [[ $(id -u) == 0 ]] && ! runuser -u "$MAIL_USER" -- test -w "$DIR/mail/${USERS[0]}/Maildir/new"; then
  die "user $MAIL_USER cannot reach $DIR/mail (a parent directory is not world-executable?)"
fi

# alive, started_at, free_ports, stop_with
source "$(dirname "${BASH_SOURCE[0]}")/process-lib.sh"

render() { # template -> DIR/dovecot.conf (quoted replacements: & is literal)
  local t; t=$(<"$HERE/dovecot.conf.template")
  t=${t//@DIR@/"$DIR"}; t=${t//@PLAIN_PORT@/"$PLAIN_PORT"}; t=${t//@TLS_PORT@/"$TLS_PORT"}
  t=${t//@INTERNAL_USER@/"$INTERNAL_USER"}; t=${t//@INTERNAL_GROUP@/"$INTERNAL_GROUP"}
  t=${t//@LOGIN_USER@/"$LOGIN_USER"}
  t=${t//@SELF_USER@/"$SELF_USER"}; t=${t//@MAIL_UID@/"$MAIL_UID"}; t=${t//@MAIL_GID@/"$MAIL_GID"}
  t=${t//@LOCK_SESSION@/"$LOCK_SESSION"}; t=${t//@INSTANCE@/"gatepost-$(basename "$DIR")"}
  t=${t//@LOGIN_CHROOT@/"$LOGIN_CHROOT"}; t=${t//@ANVIL_CHROOT@/"$ANVIL_CHROOT"}
  t=${t//@LMTP@/"$LMTP"}; t=${t//@SERVICE_COUNT@/"$SERVICE_COUNT"}
  [[ $t != *@[A-Z_]*@* ]] || die "unsubstituted placeholder in $HERE/dovecot.conf.template"
  printf '%s\n' "$t" > "$DIR/dovecot.conf"
}

print_json() { # pid
  python3 - "$1" "$DIR" "$PLAIN_PORT" "$TLS_PORT" "$MAIL_UID" "$MAIL_GID" "$(command -v dovecot)" "$LMTP" "${USERS[@]}" <<'PY'
import json, sys
pid, d, plain, tls, uid, gid, dovecot, lmtp, *users = sys.argv[1:]
print(json.dumps({
    "pid": int(pid) if pid else None,
    "plainPort": int(plain), "tlsPort": int(tls), "host": "127.0.0.1",
    "caFile": f"{d}/tls/ca.pem",
    "clientCert": f"{d}/tls/client.pem", "clientKey": f"{d}/tls/client.key",
    "mailRoot": f"{d}/mail", "mailUid": int(uid), "mailGid": int(gid), "config": f"{d}/dovecot.conf", "log": f"{d}/dovecot.log",
    "startCommand": [dovecot, "-F", "-c", f"{d}/dovecot.conf"],
    "users": {u: f"{u}-secret" for u in users},
    "maildirs": {u: f"{d}/mail/{u}/Maildir/new" for u in users + ["certuser"]},
    # For the SMTP test peer: LMTP delivery to <user> or <user>@any.domain (null
    # without dovecot-lmtpd), and SASL (Dovecot auth protocol) with the users above.
    "lmtpSocket": f"{d}/run/lmtp" if lmtp else None,
    "authSocket": f"{d}/run/auth-smtp",
}))
PY
}

if (( CONFIG_ONLY )); then
  read -r PLAIN_PORT TLS_PORT < <(free_ports)
  render
  doveconf -c "$DIR/dovecot.conf" -n >/dev/null || die "invalid config $DIR/dovecot.conf"
  print_json ""
  exit 0
fi

# Ports are free when chosen but could be taken before Dovecot binds them
# (e.g. a parallel test run): retry with fresh ports in that case.
for _ in 1 2 3; do
  read -r PLAIN_PORT TLS_PORT < <(free_ports)
  render
  : > "$DIR/dovecot.log"
  # stdio detached so a caller reading our stdout to EOF is not held open.
  dovecot -F -c "$DIR/dovecot.conf" </dev/null >>"$DIR/dovecot.log" 2>&1 &
  PID=$!
  if python3 - "$PID" "$PLAIN_PORT" "$TLS_PORT" <<'PY'
import os, socket, sys, time
pid, ports = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:  # Dovecot exited (config error...)? It is then a zombie of our shell.
        if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX":
            sys.exit(1)
    except FileNotFoundError:
        sys.exit(1)
    try:  # a bound port alone is not enough (a dying master binds before failing):
        # require the POP3 greeting on the plain port, and a TCP accept on the TLS one.
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=2) as s:
            if not s.makefile("rb").readline().startswith(b"+OK"):
                raise OSError("no greeting")
        socket.create_connection(("127.0.0.1", ports[1]), timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
  then
    [[ -z $WATCH_PID ]] || stop_with "$WATCH_PID" "$PID"
    print_json "$PID"
    PID=""   # started: it is the caller's now
    exit 0
  fi
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
  grep -q "Address already in use" "$DIR/dovecot.log" || break
done
echo "start-dovecot.sh: Dovecot exited or did not accept connections on 127.0.0.1:$PLAIN_PORT/$TLS_PORT within 10 s; tail of $DIR/dovecot.log:" >&2
tail -n 30 "$DIR/dovecot.log" >&2
exit 1
