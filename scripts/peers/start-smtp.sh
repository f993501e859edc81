#!/usr/bin/env bash
# Start a private SMTP server (Postfix) for Gatepost integration tests; it
# delivers mail for @gatepost.test into the mailboxes of a running test Dovecot
# (start-dovecot.sh), where a POP3 login as that user retrieves it.
#
#   start-smtp.sh DIR --dovecot DOVECOT_DIR [--stop-with PID] [--require-auth]
#                 [--size-limit BYTES]
#
# Why Postfix (not a Python aiosmtpd peer): it is a real MTA, so Gatepost's
# SMTP client is tested against the ESMTP behaviour it meets in production
# (pipelining, STARTTLS and AUTH rules, SIZE, per-recipient replies, queueing,
# trace headers), and delivery goes the production way too: Postfix -> LMTP ->
# Dovecot, which writes the Maildir itself (uidlist, ownership, permissions).
# It runs as a private instance: main.cf/master.cf under DIR/etc, queue and
# data under DIR, log in DIR/postfix.log, listeners on two free high ports of
# 127.0.0.1 only. The system's /etc/postfix (which need not even have a
# main.cf; install-test-deps installs Postfix "No configuration") and port 25
# are not touched, and any number of instances can run side by side.
# Postfix's master must start as root (as CI and the dev machines run).
#
# Listeners on 127.0.0.1:
#   port     plain ESMTP with STARTTLS; AUTH is offered only after STARTTLS
#   tlsPort  implicit TLS (RFC 8314, like 465); AUTH offered at once
# Certificate: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, issued by the
# Dovecot test CA (DOVECOT_DIR/tls/ca.pem, the JSON's "caFile").
# AUTH PLAIN, LOGIN, CRAM-MD5 through Dovecot's auth (DOVECOT_DIR/run/auth-smtp):
# every Dovecot user with a password works; the JSON names alice.
# EHLO: PIPELINING, SIZE, STARTTLS (plain port), AUTH (after TLS),
# ENHANCEDSTATUSCODES, 8BITMIME, DSN, CHUNKING. No SMTPUTF8, ETRN or VRFY.
#
# Recipients (per RCPT):
#   <user>@gatepost.test    250, delivered over LMTP into DOVECOT_DIR/mail/<user>/Maildir
#                           for every Dovecot user (alice, bob, carol, certuser)
#   tempfail@gatepost.test  451 4.3.0 (temporary failure, for retry tests)
#   bounce@gatepost.test    250 at RCPT, then an alias for a user Dovecot does
#                           not have: LMTP refuses it (5.1.1) and Postfix
#                           returns a delivery status notification (a bounce)
#                           to the sender, as a partner's MTA does after accepting
#   any other @gatepost.test 550 5.1.1 (user unknown)
#   any other domain        550 5.7.1 (relay access denied; nothing is ever relayed)
# Without --require-auth, mail to @gatepost.test is accepted with or without AUTH
# (like an MX); the Received header then says whether and who authenticated
# (smtpd_sasl_authenticated_header). With --require-auth every RCPT of an
# unauthenticated session gets 530 5.7.0.
#
# SMTP's 250 after DATA means queued: delivery to Dovecot follows within
# milliseconds. Wait for it by polling POP3 STAT (or the Maildir new/ folder),
# or until "queueCommand" (postqueue -j: one JSON line per queued message)
# prints nothing. Deferred mail is retried every second.
#
# On success ONE line of JSON goes to stdout, e.g.
#   {"pid": 1234, "host": "127.0.0.1", "port": 40001, "tlsPort": 40002,
#    "caFile": ".../dovecot/tls/ca.pem", "authUser": "alice",
#    "authPassword": "alice-secret", "authMechanisms": ["PLAIN", "LOGIN", "CRAM-MD5"],
#    "domain": "gatepost.test", "tempfailRecipient": "tempfail@gatepost.test",
#    "bounceRecipient": "bounce@gatepost.test",
#    "requireAuth": false, "sizeLimit": 104857600,
#    "mailboxes": {"alice@gatepost.test": {"popUser": "alice",
#                  "popPassword": "alice-secret", "maildirNew": ".../Maildir/new"}, ...},
#    "dovecotDir": "...", "config": "DIR/etc", "log": "DIR/postfix.log",
#    "queueCommand": ["postqueue", "-c", "DIR/etc", "-j"]}
#
#   --stop-with PID  a watchdog stops Postfix once PID exits.
#   --require-auth   refuse recipients (530) until the client has authenticated.
#   --size-limit N   message_size_limit (SIZE) in bytes, default 100 MiB.
#
# Stop it with: kill PID   (SIGTERM to the Postfix master; it stops all its
# children). DIR can then be deleted. Stop it before its Dovecot.
set -euo pipefail

die() { echo "start-smtp.sh: $*" >&2; exit 1; }
usage="usage: start-smtp.sh DIR --dovecot DOVECOT_DIR [--stop-with PID] [--require-auth] [--size-limit BYTES]"

[[ $# -ge 1 ]] || die "$usage"
DIR=$1; shift
DOVECOT_DIR=""; WATCH_PID=""; REQUIRE_AUTH=0; SIZE_LIMIT=$((100 * 1024 * 1024))
while [[ $# -gt 0 ]]; do
  case $1 in
    --dovecot) DOVECOT_DIR=${2:?--dovecot needs the DIR given to start-dovecot.sh}; shift ;;
    --stop-with) WATCH_PID=${2:?--stop-with needs a PID}; shift ;;
    --require-auth) REQUIRE_AUTH=1 ;;
    --size-limit) SIZE_LIMIT=${2:?--size-limit needs a number of bytes}; shift ;;
    *) die "unknown option: $1 ($usage)" ;;
  esac
  shift
done
[[ -n $DOVECOT_DIR ]] || die "--dovecot DOVECOT_DIR is required ($usage)"
[[ $SIZE_LIMIT =~ ^[0-9]+$ ]] || die "--size-limit must be a number of bytes: $SIZE_LIMIT"

# Never leave a half-started Postfix behind (failure, or we are killed while waiting).
PID=""
trap '[[ -n $PID ]] && kill "$PID" 2>/dev/null' EXIT
trap 'exit 1' TERM INT HUP   # so that the EXIT trap runs on these too

PATH=$PATH:/usr/sbin:/sbin
[[ $(id -u) == 0 ]] || die "Postfix's master must be started as root (run the tests as root, as CI does)"
POSTFIX_LIBEXEC=/usr/lib/postfix/sbin
for cmd in openssl python3 postconf; do
  command -v "$cmd" >/dev/null || die "$cmd not found (run scripts/install-test-deps)"
done
[[ -x $POSTFIX_LIBEXEC/master && -x $POSTFIX_LIBEXEC/lmtp ]] || die "Postfix not installed (run scripts/install-test-deps)"
getent passwd postfix >/dev/null || die "system user postfix missing (is postfix installed?)"
getent group postdrop >/dev/null || die "group postdrop missing (is postfix installed?)"

DIR=$(realpath -m "$DIR")
DOVECOT_DIR=$(realpath -m "$DOVECOT_DIR")
[[ $DIR != *[[:space:],]* ]] || die "DIR must not contain whitespace or commas: $DIR"
[[ $DOVECOT_DIR != *[[:space:],]* ]] || die "DOVECOT_DIR must not contain whitespace or commas: $DOVECOT_DIR"
# Postfix's sockets live in DIR/queue/{public,private}/NAME (unix paths max 107 bytes).
(( ${#DIR} <= 80 )) || die "DIR path too long for Postfix's sockets (max 80 chars): $DIR"
for f in tls/ca.pem tls/ca.key users; do
  [[ -f $DOVECOT_DIR/$f ]] || die "$DOVECOT_DIR/$f missing: is $DOVECOT_DIR a start-dovecot.sh DIR?"
done
[[ -S $DOVECOT_DIR/run/auth-smtp ]] ||
  die "no $DOVECOT_DIR/run/auth-smtp: Dovecot not running, or started by an older start-dovecot.sh"
[[ -S $DOVECOT_DIR/run/lmtp ]] ||
  die "no $DOVECOT_DIR/run/lmtp: Dovecot not running, or without LMTP (install dovecot-lmtpd: scripts/install-test-deps, then restart Dovecot)"
mkdir -p "$DIR"
[[ -z $(ls -A "$DIR") ]] || die "DIR must be empty: $DIR"
# mktemp -d gives 0700; Postfix daemons run as "postfix" and must traverse DIR
# (and DOVECOT_DIR to reach its sockets: start-dovecot.sh made it go+x).
chmod go+x "$DIR"
runuser -u postfix -- test -r "$DOVECOT_DIR/run/lmtp" -a -x "$DOVECOT_DIR/run" ||
  die "user postfix cannot reach $DOVECOT_DIR/run (a parent directory is not world-executable?)"
runuser -u postfix -- test -x "$DIR" ||
  die "user postfix cannot reach $DIR (a parent directory is not world-executable?)"

DOMAIN=gatepost.test
TEMPFAIL=tempfail@$DOMAIN

# --- TLS: server certificate from the Dovecot test CA ---
TLS=$DIR/tls
mkdir -p "$TLS"; chmod 700 "$TLS"
(
  cd "$TLS"
  openssl req -new -newkey rsa:2048 -nodes -keyout smtp.key -out smtp.csr -subj "/CN=localhost" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" > smtp.ext
  openssl x509 -req -in smtp.csr -CA "$DOVECOT_DIR/tls/ca.pem" -CAkey "$DOVECOT_DIR/tls/ca.key" -days 825 \
    -set_serial "0x$(openssl rand -hex 16)" -extfile smtp.ext -out smtp.pem 2>/dev/null
  rm -f smtp.csr smtp.ext
  openssl verify -CAfile "$DOVECOT_DIR/tls/ca.pem" smtp.pem >/dev/null
  chmod 600 smtp.key
) || die "certificate generation failed"

# --- users: every Dovecot user (passwd-file DOVECOT_DIR/users) gets an address ---
ETC=$DIR/etc
mkdir -p "$ETC"
USERS=()
while IFS=: read -r user _; do
  [[ -n $user && -d $DOVECOT_DIR/mail/$user/Maildir ]] && USERS+=("$user")
done < "$DOVECOT_DIR/users"
(( ${#USERS[@]} )) || die "no users with a Maildir in $DOVECOT_DIR/users"
# Dovecot accepts them over LMTP as <user>@anything (auth_username_format = %Ln).
for u in "${USERS[@]}"; do echo "$u@$DOMAIN OK"; done > "$ETC/mailboxes"
echo "$TEMPFAIL 451 4.3.0 <$TEMPFAIL>: temporary failure for testing, try again later" > "$ETC/recipient_access"
# Accepted at RCPT (an alias), refused by Dovecot's LMTP after: a real RFC 3464
# bounce, whose Final-Recipient (the alias's target) is not the address sent to.
BOUNCE=bounce@$DOMAIN
echo "$BOUNCE nosuchuser@$DOMAIN" > "$ETC/aliases"
# AUTH test user: the first user with a {PLAIN} password.
read -r AUTH_USER AUTH_PASSWORD < <(sed -n 's/^\([^:]*\):{PLAIN}\([^:]*\):.*/\1 \2/p' "$DOVECOT_DIR/users" | head -n 1) ||
  die "no {PLAIN} password in $DOVECOT_DIR/users"

QUEUE=$DIR/queue; DATA=$DIR/data
# Queue layout as Postfix's post-install creates it (faster than `postfix check`).
mkdir -p "$QUEUE" "$DATA"
for d in active bounce corrupt defer deferred flush hold incoming private saved trace; do
  mkdir -p "$QUEUE/$d"; chmod 700 "$QUEUE/$d"; chown postfix "$QUEUE/$d"
done
mkdir -p "$QUEUE/maildrop" "$QUEUE/public" "$QUEUE/pid"
chown postfix:postdrop "$QUEUE/maildrop" "$QUEUE/public"
chmod 730 "$QUEUE/maildrop"; chmod 710 "$QUEUE/public"
chown root:root "$QUEUE" "$QUEUE/pid"; chmod 755 "$QUEUE" "$QUEUE/pid"
chown postfix "$DATA"; chmod 700 "$DATA"
LOG=$DIR/postfix.log

if (( REQUIRE_AUTH )); then
  AUTH_RESTRICTION="permit_sasl_authenticated, check_client_access static:{530 5.7.0 Authentication required}"
else
  AUTH_RESTRICTION=""
fi

render() { # DIR/etc/main.cf and master.cf for PORT/TLS_PORT
  cat > "$ETC/main.cf" <<EOF
# Rendered by start-smtp.sh: a private Postfix instance for Gatepost tests.
compatibility_level = 3.6
queue_directory = $QUEUE
data_directory = $DATA
mail_owner = postfix
setgid_group = postdrop
myhostname = smtp.$DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_banner = \$myhostname ESMTP Gatepost test SMTP (Postfix)
biff = no
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
lmtp_host_lookup = native
maillog_file = $LOG
maillog_file_prefixes = $DIR

# Keep what the client sent: no header rewriting or completion (127.0.0.1
# would otherwise count as a local client), no 8bit -> 7bit conversion.
local_header_rewrite_clients =
always_add_missing_headers = no
disable_mime_output_conversion = yes

# Only @$DOMAIN, handed to Dovecot over LMTP; nothing is ever relayed.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$ETC/mailboxes
virtual_transport = lmtp:unix:$DOVECOT_DIR/run/lmtp
virtual_alias_maps = texthash:$ETC/aliases
# One recipient per LMTP transaction: each mailbox's copy gets its own
# "Delivered-To: <user>@$DOMAIN" (Dovecot leaves it out for several).
lmtp_destination_recipient_limit = 1
default_transport = error:5.7.1 the Gatepost test SMTP peer delivers to @$DOMAIN only
relay_transport = \$default_transport
relay_domains =
relay_domains_reject_code = 550
unknown_virtual_mailbox_reject_code = 550
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:$ETC/recipient_access, $AUTH_RESTRICTION
message_size_limit = $SIZE_LIMIT
disable_vrfy_command = yes
# Dovecot 2.3's LMTP has no SMTPUTF8, so it is not offered either; ETRN is pointless here.
smtputf8_enable = no
smtpd_discard_ehlo_keywords = etrn

# Tests: no delays, no rate limits; deferred mail retried every second.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_junk_command_limit = 1000
smtpd_client_event_limit_exceptions = 127.0.0.0/8
in_flow_delay = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h

# TLS with a certificate from the Dovecot test CA; AUTH only over TLS.
smtpd_tls_cert_file = $TLS/smtp.pem
smtpd_tls_key_file = $TLS/smtp.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $DOVECOT_DIR/run/auth-smtp
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_sasl_mechanism_filter = plain, login, cram-md5
smtpd_sasl_authenticated_header = yes
broken_sasl_auth_clients = no
EOF
  cat > "$ETC/master.cf" <<EOF
# Rendered by start-smtp.sh. No chroot; no listener but the two below.
# service     type  private unpriv chroot wakeup maxproc command + args
127.0.0.1:$PORT inet n - n - - smtpd
127.0.0.1:$TLS_PORT inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  # Postfix re-reads a config file or table modified within the last second
  # (it may still be being written) every 0.3 s until it is older: backdate them.
  touch -d '-1 minute' "$ETC"/*
}

# alive, started_at, free_ports, stop_with
source "$(dirname "${BASH_SOURCE[0]}")/process-lib.sh"

print_json() { # pid
  python3 - "$1" "$DIR" "$DOVECOT_DIR" "$PORT" "$TLS_PORT" "$DOMAIN" "$TEMPFAIL" "$AUTH_USER" "$AUTH_PASSWORD" \
    "$REQUIRE_AUTH" "$SIZE_LIMIT" "$LOG" "${USERS[@]}" <<'PY'
import json, sys
pid, d, dd, port, tls, domain, tempfail, user, password, require, size, log, *users = sys.argv[1:]
passwords = {}
for line in open(f"{dd}/users"):
    name, pw = line.split(":")[:2]
    if pw.startswith("{PLAIN}"):
        passwords[name] = pw[len("{PLAIN}"):]
print(json.dumps({
    "pid": int(pid), "host": "127.0.0.1", "port": int(port), "tlsPort": int(tls),
    "caFile": f"{dd}/tls/ca.pem", "certFile": f"{d}/tls/smtp.pem",
    "authUser": user, "authPassword": password, "authMechanisms": ["PLAIN", "LOGIN", "CRAM-MD5"],
    "domain": domain, "tempfailRecipient": tempfail, "bounceRecipient": f"bounce@{domain}",
    "requireAuth": require == "1", "sizeLimit": int(size),
    # Delivered mail: POP3 at the Dovecot of dovecotDir as popUser/popPassword
    # (null: certificate login only), or the files in maildirNew.
    "mailboxes": {f"{u}@{domain}": {"popUser": u, "popPassword": passwords.get(u),
                                    "maildirNew": f"{dd}/mail/{u}/Maildir/new"} for u in users},
    "dovecotDir": dd, "config": f"{d}/etc", "log": log,
    "queueCommand": ["postqueue", "-c", f"{d}/etc", "-j"],
}))
PY
}

# Ports are free when chosen but could be taken before Postfix binds them
# (e.g. a parallel test run): retry with fresh ports in that case.
for _ in 1 2 3; do
  read -r PORT TLS_PORT < <(free_ports)
  render
  : > "$LOG"
  # -d: master stays in the foreground (its PID is ours to report and kill);
  # stdio detached so a caller reading our stdout to EOF is not held open.
  # setsid: the master must lead its own process group (it signals the group to
  # stop its children); not being a group leader here, setsid execs in place.
  setsid "$POSTFIX_LIBEXEC/master" -d -c "$ETC" </dev/null >>"$DIR/master.out" 2>&1 &
  PID=$!
  if python3 - "$PID" "$PORT" "$TLS_PORT" "$DOVECOT_DIR/tls/ca.pem" <<'PY'
import os, socket, ssl, sys, time
pid, port, tls_port, ca = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:  # master exited (config error, port taken)? It is then a zombie of our shell.
        if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX":
            sys.exit(1)
    except FileNotFoundError:
        sys.exit(1)
    try:  # the 220 greeting on both ports, the TLS one after a verified handshake
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if not s.makefile("rb").readline().startswith(b"220 "):
                raise OSError("no greeting")
            s.sendall(b"QUIT\r\n")
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=5),
                             server_hostname="127.0.0.1") as s:
            if not s.makefile("rb").readline().startswith(b"220 "):
                raise OSError("no TLS greeting")
            s.sendall(b"QUIT\r\n")
        sys.exit(0)
    except ssl.SSLCertVerificationError as e:
        print(f"start-smtp.sh: certificate not verified: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError:
        time.sleep(0.02)
sys.exit(1)
PY
  then
    [[ -z $WATCH_PID ]] || stop_with "$WATCH_PID" "$PID"
    print_json "$PID"
    PID=""   # started: it is the caller's now
    exit 0
  fi
  # How it ended, for the error message: a master that died on its own has a status
  # (128+N: killed by signal N); one that never greeted is stopped here.
  if alive "$PID"; then HOW="did not greet; stopped it"; else HOW="exited"; fi
  kill "$PID" 2>/dev/null || true
  STATUS=0; wait "$PID" 2>/dev/null || STATUS=$?
  HOW="$HOW (status $STATUS)"
  PID=""
  # A port taken between choosing and binding (other tests bind ports too) makes the master
  # exit before its log service runs, so the log may say nothing: any exit gets fresh ports.
  [[ $HOW == exited* ]] || grep -q "Address already in use" "$LOG" "$DIR/master.out" || break
  rm -f "$QUEUE/pid/master.pid" "$DATA/master.lock"
done
echo "start-smtp.sh: Postfix on 127.0.0.1:$PORT/$TLS_PORT ${HOW:-did not start} within 10 s; tail of $LOG and $DIR/master.out:" >&2
tail -n 30 "$LOG" "$DIR/master.out" >&2
exit 1
