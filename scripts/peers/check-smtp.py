#!/usr/bin/env python3
"""Self-test of the SMTP test peer (start-smtp.sh: Postfix -> LMTP -> the test Dovecot).

  check-smtp.py [--keep]

Starts a Dovecot (start-dovecot.sh) and two SMTP peers on it: A with the defaults, B with
--require-auth --size-limit 100000. Sends with smtplib over STARTTLS + AUTH and over implicit
TLS (certificates verified against caFile, for localhost and 127.0.0.1), checks the ESMTP
extensions, AUTH only after STARTTLS, every SASL mechanism, a wrong password, per-recipient
250/550/451 (also pipelined on a raw socket), relaying refused, SIZE and --require-auth.
Then POP3s every mailbox (poplib, CA verified) and compares each message with what was
sent: the original bytes after trace headers only (Return-Path, Delivered-To, Received).
Also: Maildir ownership, empty queue, the --stop-with watchdog, failed starts leaving
nothing behind, and that `kill PID` stops each peer with all its processes.
Exits 0 and prints a summary only if every check holds; scratch dirs are removed unless
--keep or a check failed.
"""
import argparse
import base64
import email
import hashlib
import json
import os
import poplib
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from email import policy
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = {"pid", "host", "port", "tlsPort", "caFile", "authUser", "authPassword", "authMechanisms",
        "domain", "tempfailRecipient", "requireAuth", "sizeLimit", "mailboxes", "dovecotDir",
        "config", "log", "queueCommand", "certFile"}
TRACE_HEADERS = {b"return-path", b"delivered-to", b"received"}


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def run_json(*args):
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout
    lines = out.splitlines()
    check(len(lines) == 1, f"{os.path.basename(args[0])} printed {len(lines)} lines, not one: {out!r}")
    return json.loads(lines[0])


def state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def group_members(pgid):
    """Live processes in process group pgid (the Postfix master leads its own group)."""
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                found.append(int(p))
    return found


def stop(pid, seconds=10):
    """kill PID (the documented way) and wait until it and its process group are gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if state(pid) in (None, "Z", "X") and not group_members(pid):
            return
        time.sleep(0.05)
    raise Fail(f"{pid} or its children {group_members(pid)} still running {seconds}s after SIGTERM")


def port_closed(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def make_message(n, sender, to, subject, size=0):
    """A message with 8-bit UTF-8 text, a lone '.' line, '..' and 'From ' lines, trailing
    blanks, and optionally a binary attachment of `size` bytes (base64)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Message-ID"] = f"<check-smtp-{n}-{os.getpid()}@ours.example>"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Disposition-Notification-To"] = sender
    text = ("Grüße aus Köln — 8-bit body, sent as 8BITMIME.\n.\n..two dots\nFrom the start of a line\n"
            "trailing blanks   \n" + "long line " * 50 + "\nend\n")
    msg.set_content(text, cte="8bit")
    if size:
        data = hashlib.sha256(str(n).encode()).digest() * (size // 32 + 1)
        msg.add_attachment(data[:size], maintype="application", subtype="octet-stream",
                           filename=f"file-{n}.bin")
    raw = msg.as_bytes(policy=policy.SMTP)  # CRLF line ends, as on the wire
    check(b"\r\n.\r\n" in raw and b"\xc3\xbc" in raw, "test message lacks the dot line or 8-bit text")
    return raw


def smtp_starttls(info, ctx):
    """Plain-port session after EHLO; connected as "localhost", the name that STARTTLS then verifies."""
    s = smtplib.SMTP("localhost", info["port"], timeout=20)
    code, _ = s.ehlo("check-smtp.test")
    check(code == 250, f"EHLO {code}")
    return s


class Checker:
    def __init__(self, dovecot, a, b, base):
        self.dovecot, self.a, self.b, self.base = dovecot, a, b, base
        self.ctx = tls_context(a["caFile"])
        self.sent = {}  # Message-ID -> (raw bytes, recipients, expectations)
        self.notes = []

    def expect(self, raw, rcpts, authed_as, tls):
        mid = email.message_from_bytes(raw)["Message-ID"]
        check(mid not in self.sent, f"Message-ID {mid} used twice")
        self.sent[mid] = (raw, rcpts, authed_as, tls)

    def extensions(self):
        a = self.a
        s = smtp_starttls(a, self.ctx)
        feats = s.esmtp_features
        for ext in ("starttls", "size", "8bitmime", "pipelining", "enhancedstatuscodes"):
            check(ext in feats, f"{ext.upper()} not advertised on the plain port: {sorted(feats)}")
        check(int(feats["size"]) == a["sizeLimit"], f"SIZE {feats['size']} != sizeLimit {a['sizeLimit']}")
        check("auth" not in feats, f"AUTH advertised before STARTTLS: {feats.get('auth')}")
        check(not {"smtputf8", "etrn"} & set(feats), f"SMTPUTF8 or ETRN advertised: {sorted(feats)}")
        check(s.verify("alice")[0] == 502, "VRFY not disabled")
        code, resp = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0alice-secret").decode())
        check(code == 503, f"AUTH before STARTTLS answered {code} {resp!r}, not 503")
        s.starttls(context=self.ctx)
        s.ehlo("check-smtp.test")
        mechs = set(s.esmtp_features.get("auth", "").upper().split())
        check(mechs == set(a["authMechanisms"]), f"AUTH after STARTTLS {mechs} != {a['authMechanisms']}")
        s.quit()
        s = smtplib.SMTP_SSL("127.0.0.1", a["tlsPort"], context=self.ctx, timeout=20)  # checks the IP SAN
        s.ehlo("check-smtp.test")
        mechs = set(s.esmtp_features.get("auth", "").upper().split())
        check(mechs == set(a["authMechanisms"]), f"AUTH on the TLS port {mechs}")
        check("starttls" not in s.esmtp_features, "STARTTLS advertised inside implicit TLS")
        s.quit()
        self.notes.append("EHLO: STARTTLS SIZE 8BITMIME PIPELINING ENHANCEDSTATUSCODES; AUTH only after "
                          f"STARTTLS (503 before) and on the TLS port: {' '.join(a['authMechanisms'])}")

    def mechanisms(self):
        a = self.a
        for mech, port_kind in (("PLAIN", "starttls"), ("LOGIN", "tls"), ("CRAM-MD5", "tls"), ("CRAM-MD5", "starttls")):
            s = self.connect(a, port_kind)
            s.user, s.password = a["authUser"], a["authPassword"]
            code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")), initial_response_ok=True)
            check(code == 235, f"AUTH {mech} on {port_kind}: {code} {resp!r}")
            s.quit()
        s = self.connect(a, "tls")
        try:
            s.login(a["authUser"], "wrong-password")
            raise Fail("wrong password accepted")
        except smtplib.SMTPAuthenticationError as e:
            check(e.smtp_code == 535, f"wrong password: {e.smtp_code}")
        s.close()
        self.notes.append("AUTH PLAIN (STARTTLS), LOGIN and CRAM-MD5 (TLS port), CRAM-MD5 (STARTTLS): 235; "
                          "wrong password: 535")

    def connect(self, info, kind):
        if kind == "tls":
            s = smtplib.SMTP_SSL("127.0.0.1", info["tlsPort"], context=self.ctx, timeout=20)
            s.ehlo("check-smtp.test")
        else:
            s = smtp_starttls(info, self.ctx)
            s.starttls(context=self.ctx)
            s.ehlo("check-smtp.test")
        return s

    def send_messages(self):
        a, d = self.a, self.a["domain"]
        alice, bob, carol = (f"{u}@{d}" for u in ("alice", "bob", "carol"))
        # 1: STARTTLS + AUTH, five recipients: two delivered, one unknown (550), one
        #    temporary failure (451), one foreign domain (550, never relayed).
        s = self.connect(a, "starttls")
        s.login(a["authUser"], a["authPassword"])
        rcpts = [alice, f"nobody@{d}", a["tempfailRecipient"], bob, "someone@example.com"]
        raw = make_message(1, "gateway@ours.example", rcpts, "starttls + auth", size=300_000)
        refused = s.sendmail("gateway@ours.example", rcpts, raw, mail_options=["BODY=8BITMIME"])
        codes = {r: c for r, (c, _) in refused.items()}
        check(codes == {f"nobody@{d}": 550, a["tempfailRecipient"]: 451, "someone@example.com": 550},
              f"per-recipient refusals {refused}")
        s.quit()
        self.expect(raw, [alice, bob], a["authUser"], True)
        # 2: implicit TLS + AUTH LOGIN to carol.
        s = self.connect(a, "tls")
        s.user, s.password = a["authUser"], a["authPassword"]
        s.auth("LOGIN", s.auth_login)
        raw = make_message(2, "gateway@ours.example", [carol], "implicit tls + auth login", size=5000)
        check(s.sendmail("gateway@ours.example", [carol], raw, mail_options=["BODY=8BITMIME"]) == {}, "send 2")
        s.quit()
        self.expect(raw, [carol], a["authUser"], True)
        # 3: implicit TLS + CRAM-MD5 to alice.
        s = self.connect(a, "tls")
        s.user, s.password = a["authUser"], a["authPassword"]
        s.auth("CRAM-MD5", s.auth_cram_md5)
        raw = make_message(3, "other@ours.example", [alice], "implicit tls + cram-md5")
        check(s.sendmail("other@ours.example", [alice], raw, mail_options=["BODY=8BITMIME"]) == {}, "send 3")
        s.quit()
        self.expect(raw, [alice], a["authUser"], True)
        # 4: plain port, no TLS, no AUTH (accepted like an MX), every command pipelined in
        #    one write: MAIL, 3 RCPTs (250, 550, 451), DATA; then the message.
        raw = make_message(4, "mx@partner.example", [alice], "pipelined, no tls, no auth")
        sock = socket.create_connection(("127.0.0.1", a["port"]), timeout=20)
        f = sock.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline()
                check(line.endswith(b"\r\n"), f"reply line {line!r}")
                lines.append(line)
                if line[3:4] == b" ":
                    return int(line[:3]), b"".join(lines)
        check(reply()[0] == 220, "greeting")
        sock.sendall(b"EHLO check-smtp.test\r\n")
        check(b"PIPELINING" in reply()[1], "PIPELINING not in EHLO")
        sock.sendall(f"MAIL FROM:<mx@partner.example> BODY=8BITMIME SIZE={len(raw)}\r\nRCPT TO:<{alice}>\r\n"
                     f"RCPT TO:<nobody@{d}>\r\nRCPT TO:<{a['tempfailRecipient']}>\r\nDATA\r\n".encode())
        got = [reply()[0] for _ in range(5)]
        check(got == [250, 250, 550, 451, 354], f"pipelined replies {got}")
        stuffed = b"".join((b"." + l if l.startswith(b".") else l) for l in raw.splitlines(keepends=True))
        sock.sendall(stuffed + b".\r\nQUIT\r\n")
        code, text = reply()
        check(code == 250, f"end of DATA: {text!r}")
        check(reply()[0] == 221, "QUIT")
        sock.close()
        self.expect(raw, [alice], None, False)
        # 5: an RFC 8098 MDN (check-mdn.py's sample), as Gatepost will send them.
        sample = os.path.join(self.base, "mdn-sample.eml")
        subprocess.run([sys.executable, os.path.join(HERE, "check-mdn.py"), "--write-sample", sample], check=True)
        raw = open(sample, "rb").read()
        s = self.connect(a, "starttls")
        s.login(a["authUser"], a["authPassword"])
        check(s.sendmail("gateway@ours.example", [carol], raw, mail_options=["BODY=8BITMIME"]) == {}, "send MDN")
        s.quit()
        self.expect(raw, [carol], a["authUser"], True)
        self.mdn_id = email.message_from_bytes(raw)["Message-ID"]
        self.notes.append("per RCPT: known 250, unknown 550, tempfail 451, foreign domain 550 (no relay), "
                          "also pipelined in one write on the plain port without TLS/AUTH")

    def require_auth_and_size(self):
        b, d = self.b, self.b["domain"]
        check(b["requireAuth"] is True and b["sizeLimit"] == 100000, f"B's JSON {b['requireAuth']} {b['sizeLimit']}")
        s = smtp_starttls(b, self.ctx)
        check(int(s.esmtp_features["size"]) == 100000, "B's SIZE")
        s.starttls(context=self.ctx)
        s.ehlo("check-smtp.test")
        s.mail("gateway@ours.example")
        code, resp = s.rcpt(f"bob@{d}")
        check(code == 530, f"--require-auth: unauthenticated RCPT got {code} {resp!r}")
        s.rset()
        s.login(b["authUser"], b["authPassword"])
        code, resp = s.mail("gateway@ours.example", ["SIZE=200000"])
        check(code == 552, f"MAIL SIZE=200000 over the 100000 limit got {code} {resp!r}")
        s.rset()
        big = make_message(5, "gateway@ours.example", [f"bob@{d}"], "too big", size=150_000)
        try:
            s.sendmail("gateway@ours.example", [f"bob@{d}"], big)  # no SIZE= announced
            raise Fail("oversized DATA accepted")
        except smtplib.SMTPDataError as e:
            check(e.smtp_code == 552, f"oversized DATA: {e.smtp_code}")
        except smtplib.SMTPSenderRefused as e:  # smtplib announces SIZE itself
            check(e.smtp_code == 552, f"oversized MAIL: {e.smtp_code}")
        s.rset()
        raw = make_message(6, "gateway@ours.example", [f"bob@{d}"], "via B, authenticated")
        check(s.sendmail("gateway@ours.example", [f"bob@{d}"], raw) == {}, "send 6 via B")
        s.quit()
        self.expect(raw, [f"bob@{d}"], b["authUser"], True)
        self.notes.append("B (--require-auth --size-limit 100000): unauthenticated RCPT 530, SIZE=200000 552, "
                          "oversized message 552, authenticated mail delivered")

    def wait_delivered(self, seconds=15):
        want = {}
        for raw, rcpts, _, _ in self.sent.values():
            for r in rcpts:
                want[r] = want.get(r, 0) + 1
        deadline = time.monotonic() + seconds
        while True:
            have = {r: self.stat(r) for r in want}
            if have == want:
                return want
            check(time.monotonic() < deadline, f"not delivered within {seconds}s: POP3 STAT {have}, expected {want}; "
                                               f"queue: {self.queue(self.a)} {self.queue(self.b)}")
            time.sleep(0.1)

    def pop(self, address):
        box = self.a["mailboxes"][address]
        p = poplib.POP3_SSL("127.0.0.1", self.dovecot["tlsPort"], context=self.ctx, timeout=20)
        p.user(box["popUser"])
        p.pass_(box["popPassword"])
        return p

    def stat(self, address):
        p = self.pop(address)
        n = p.stat()[0]
        p.quit()
        return n

    def queue(self, info):
        r = subprocess.run(info["queueCommand"], capture_output=True, text=True, timeout=10)
        check(r.returncode == 0, f"{' '.join(info['queueCommand'])}: {r.stderr}")
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def compare(self):
        checked = 0
        for address in sorted({r for _, rcpts, _, _ in self.sent.values() for r in rcpts}):
            p = self.pop(address)
            count = p.stat()[0]
            for i in range(1, count + 1):
                resp, lines, octets = p.retr(i)
                wire = b"\r\n".join(lines) + b"\r\n"  # poplib has undone the dot-stuffing
                mid = email.message_from_bytes(wire)["Message-ID"]
                check(mid in self.sent, f"{address} #{i}: unexpected message {mid}")
                raw, rcpts, authed_as, tls = self.sent[mid]
                check(address in rcpts, f"{mid} delivered to {address}, sent to {rcpts}")
                check(wire.endswith(raw), f"{address} {mid}: delivered bytes do not end with the sent message")
                trace = wire[:-len(raw)]
                names = [l.split(b":", 1)[0].lower() for l in trace.split(b"\r\n") if l and l[:1] not in b" \t"]
                check(names and set(names) <= TRACE_HEADERS, f"{address} {mid}: headers added: {names}")
                text = trace.decode("ascii", "replace")
                check(f"Delivered-To: {address}\r\n" in text, f"{mid}: no Delivered-To: {address}")
                sender = email.utils.parseaddr(email.message_from_bytes(raw)["From"])[1]
                check(text.startswith(f"Return-Path: <{sender}>\r\n"), f"{mid}: Return-Path {text[:80]!r}")
                check(("(Authenticated sender: %s)" % authed_as in text) if authed_as else
                      "Authenticated sender" not in text, f"{mid}: Received header about AUTH: {text!r}")
                check(("using TLSv1." in text) == tls, f"{mid}: Received header about TLS")
                checked += 1
                if mid == self.mdn_id:  # the delivered MDN, checked by the independent MDN checker
                    path = os.path.join(self.base, "mdn-delivered.eml")
                    open(path, "wb").write(wire)
                    r = subprocess.run([sys.executable, os.path.join(HERE, "check-mdn.py"), "--require-automatic",
                                        "--expect-original-message-id", "<orders-42@acme.example>",
                                        "--expect-disposition-type", "processed", path],
                                       capture_output=True, text=True, timeout=30)
                    check(r.returncode == 0 and json.loads(r.stdout)["valid"], f"check-mdn on the delivered MDN: {r.stderr}")
                    self.notes.append("an RFC 8098 MDN sent through SMTP -> LMTP -> POP3 passes check-mdn.py")
                    continue
                msg = email.message_from_bytes(wire, policy=policy.default)
                check("Grüße aus Köln" in msg.get_body(("plain",)).get_content(), f"{mid}: 8-bit text changed")
            p.quit()
        # Dovecot wrote the files itself: owned by the mail user, in the user's Maildir.
        for address, box in self.a["mailboxes"].items():
            md = os.path.dirname(box["maildirNew"])
            for sub in ("new", "cur"):
                for name in os.listdir(os.path.join(md, sub)):
                    st = os.stat(os.path.join(md, sub, name))
                    check(st.st_uid == self.dovecot["mailUid"], f"{name} owned by uid {st.st_uid}")
        check(self.queue(self.a) == [] and self.queue(self.b) == [], "mail left in a Postfix queue")
        return checked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="gp-smtp-check.")
    os.chmod(base, 0o755)
    dirs = {k: os.path.join(base, k) for k in ("dovecot", "a", "b", "c", "bad")}
    pids, ok, t0 = [], False, time.monotonic()
    try:
        me = str(os.getpid())
        dovecot = run_json(os.path.join(HERE, "start-dovecot.sh"), dirs["dovecot"], "--stop-with", me)
        pids.append(dovecot["pid"])
        check(dovecot.get("lmtpSocket"), "Dovecot has no LMTP (dovecot-lmtpd missing? run scripts/install-test-deps)")
        starts = []
        t = time.monotonic()
        a = run_json(os.path.join(HERE, "start-smtp.sh"), dirs["a"], "--dovecot", dirs["dovecot"], "--stop-with", me)
        starts.append(time.monotonic() - t)
        pids.insert(0, a["pid"])
        t = time.monotonic()
        b = run_json(os.path.join(HERE, "start-smtp.sh"), dirs["b"], "--dovecot", dirs["dovecot"], "--stop-with", me,
                     "--require-auth", "--size-limit", "100000")
        starts.append(time.monotonic() - t)
        pids.insert(0, b["pid"])
        for info in (a, b):
            check(KEYS <= set(info), f"JSON keys missing: {KEYS - set(info)}")
            check(b"master" in open(f"/proc/{info['pid']}/cmdline", "rb").read(), "pid is not the Postfix master")
            check(info["caFile"] == dovecot["caFile"], "caFile is not the Dovecot CA")
        ports = {a["port"], a["tlsPort"], b["port"], b["tlsPort"], dovecot["plainPort"], dovecot["tlsPort"]}
        check(len(ports) == 6 and min(ports) > 1024, f"ports {ports}")
        check(set(a["mailboxes"]) >= {"alice@gatepost.test", "bob@gatepost.test", "carol@gatepost.test"},
              f"mailboxes {list(a['mailboxes'])}")
        check(max(starts) < 3, f"start-smtp.sh took {max(starts):.2f}s")

        c = Checker(dovecot, a, b, base)
        c.extensions()
        c.mechanisms()
        c.send_messages()
        c.require_auth_and_size()
        delivered = c.wait_delivered()
        checked = c.compare()

        # A failed start leaves nothing behind: Dovecot dir that is not running.
        r = subprocess.run([os.path.join(HERE, "start-smtp.sh"), dirs["bad"], "--dovecot", dirs["a"]],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and r.stdout == "" and "start-smtp.sh:" in r.stderr,
              f"start against a non-Dovecot dir: rc {r.returncode} {r.stdout!r} {r.stderr!r}")
        # --stop-with: C stops by itself within ~1 s of its watched process.
        sleeper = subprocess.Popen(["sleep", "600"])
        cinfo = run_json(os.path.join(HERE, "start-smtp.sh"), dirs["c"], "--dovecot", dirs["dovecot"],
                         "--stop-with", str(sleeper.pid))
        pids.insert(0, cinfo["pid"])
        sleeper.kill()
        sleeper.wait()
        deadline = time.monotonic() + 5
        while (state(cinfo["pid"]) not in (None, "Z", "X") or group_members(cinfo["pid"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        check(state(cinfo["pid"]) in (None, "Z", "X") and not group_members(cinfo["pid"]),
              "--stop-with: Postfix still running 5s after the watched process exited")
        check(port_closed(cinfo["port"]) and port_closed(cinfo["tlsPort"]), "C's ports still open")

        for info in (b, a):
            stop(info["pid"])
            check(port_closed(info["port"]) and port_closed(info["tlsPort"]), f"ports of {info['pid']} still open")
        stop(dovecot["pid"])
        ok = True
        print(f"check-smtp: OK ({time.monotonic() - t0:.1f}s; start-smtp.sh {starts[0]:.2f}s and {starts[1]:.2f}s)")
        print(f"  A: STARTTLS {a['port']}, TLS {a['tlsPort']}; B (--require-auth): {b['port']}, {b['tlsPort']}; "
              f"Dovecot POP3S {dovecot['tlsPort']}; certificates verified for localhost and 127.0.0.1")
        for note in c.notes:
            print("  " + note)
        print(f"  delivered over LMTP and POP3-retrieved: {checked} messages ({', '.join(f'{k} {v}' for k, v in sorted(delivered.items()))}); "
              "each = trace headers (Return-Path, Delivered-To, Received with AUTH/TLS) + the sent bytes; "
              "files owned by the mail user; queues empty")
        print("  failed start exits non-zero with nothing on stdout; --stop-with and kill PID stop all processes")
    except Exception as e:  # Fail, or whatever a server or a script did wrong
        import traceback
        traceback.print_exc()
        detail = getattr(e, "stderr", None) or ""
        print(f"check-smtp: FAILED: {type(e).__name__}: {e} {detail}", file=sys.stderr)
        for name in ("a/postfix.log", "b/postfix.log", "dovecot/dovecot.log"):
            log = os.path.join(base, name)
            if os.path.exists(log):
                print(f"--- tail of {log}", file=sys.stderr)
                print("".join(open(log, errors="replace").readlines()[-15:]), file=sys.stderr)
    finally:
        for pid in pids:
            try:
                stop(pid)
            except Fail:
                os.kill(pid, signal.SIGKILL)
        if ok and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        elif not ok:
            print(f"kept for inspection: {base}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
