#!/usr/bin/env python3
"""Self-test of the Dovecot test peer: start-dovecot.sh + make-messages.py, checked over raw
POP3 sockets (not poplib, which hides line ends and dot-stuffing).

  check-dovecot.py [--count 20] [--seed 4242] [--attachment-size N] [--mix ...] [--keep]

Starts instance A with start-dovecot.sh and instance B with --config-only plus the printed
startCommand (both ways a harness may use), both at once. Exits 0 and prints a summary only
if every check holds; the scratch dirs are removed unless --keep or a check failed.
"""
import argparse
import base64
import email
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from email import policy

HERE = os.path.dirname(os.path.abspath(__file__))


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class POP3:
    """Minimal POP3 client on a raw socket: every line must end in CRLF."""

    def __init__(self, port, ctx=None, hostname="127.0.0.1"):
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.sock = ctx.wrap_socket(sock, server_hostname=hostname) if ctx else sock
        self.f = self.sock.makefile("rb")
        self.stuffed = 0  # dot-stuffed lines seen in multi-line replies
        self.greeting = self.line()
        check(self.greeting.startswith(b"+OK"), f"greeting {self.greeting!r}")

    def line(self):
        data = self.f.readline(1 << 20)
        check(data.endswith(b"\r\n"), f"line not CRLF-terminated: {data[-80:]!r}")
        return data

    def cmd(self, text, expect=b"+OK"):
        self.sock.sendall(text.encode() + b"\r\n")
        resp = self.line()
        check(resp.startswith(expect), f"{text.split()[0]} -> {resp!r}")
        return resp

    def multi(self):
        """Multi-line body, dot-unstuffed, without the terminating '.\\r\\n'."""
        out = []
        while (data := self.line()) != b".\r\n":
            if data.startswith(b"."):
                self.stuffed += 1
                data = data[1:]
            out.append(data)
        return b"".join(out)

    def stls(self, ctx, hostname):
        self.cmd("STLS")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=hostname)
        self.f = self.sock.makefile("rb")

    def capa(self):
        self.cmd("CAPA")
        return [l.decode().strip() for l in self.multi().splitlines()]

    def uidl(self):
        self.cmd("UIDL")
        return dict(l.decode().split() for l in self.multi().splitlines())

    def close(self):
        try:
            self.cmd("QUIT")
        finally:
            self.sock.close()


def tls_context(cafile):
    """Certificate and hostname verification on, plus RFC 5280 strictness (Python 3.13's default)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def b64(s):
    return base64.b64encode(s.encode()).decode()


def wait_ports(ports, seconds=10):
    deadline = time.monotonic() + seconds
    while True:
        try:
            for p in ports:
                socket.create_connection(("127.0.0.1", p), timeout=1).close()
            return
        except OSError:
            check(time.monotonic() < deadline, f"ports {ports} not open after {seconds}s")
            time.sleep(0.05)


def stop(pid, seconds=10):
    """kill PID (the documented way to stop) and wait until the master is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reaps it if it is our child (instance B)
        except ChildProcessError:
            pass
        try:  # gone, or a zombie waiting for init (not our child) to reap it
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX":
                return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise Fail(f"dovecot {pid} still running {seconds}s after SIGTERM")


def leftover_processes(directory):
    """Processes whose command line mentions the instance (master and its children)."""
    tag = os.path.basename(directory).encode()
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmdline = open(f"/proc/{p}/cmdline", "rb").read()
                state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if tag in cmdline and state not in "ZX":
                found.append(int(p))
    return found


def check_instance_a(info, manifest, maildir_new):
    ctx = tls_context(info["caFile"])
    counts, lone_dot = {}, False

    # Implicit TLS, certificate checked against 127.0.0.1 (IP SAN).
    pop = POP3(info["tlsPort"], ctx, "127.0.0.1")
    check(re.search(rb"<[^<>@\s]+@[^<>\s]+>\r\n$", pop.greeting), f"no APOP timestamp: {pop.greeting!r}")
    capa = pop.capa()
    sasl = next((c.split()[1:] for c in capa if c.startswith("SASL ")), [])
    check({"UIDL", "USER"} <= set(capa), f"CAPA on TLS port: {capa}")
    check({"PLAIN", "LOGIN", "CRAM-MD5"} <= set(sasl), f"SASL in CAPA: {capa}")
    pop.cmd("USER alice")
    pop.cmd("PASS alice-secret")
    stat = pop.cmd("STAT").split()
    check(int(stat[1]) == len(manifest), f"STAT {stat} but {len(manifest)} messages written")
    pop.cmd("LIST")
    sizes = {int(n): int(s) for n, s in (l.split() for l in pop.multi().splitlines())}
    uidls = pop.uidl()
    check(len(set(uidls.values())) == len(manifest), "UIDLs not unique")
    check(all(re.fullmatch(r"[0-9a-fA-F]{16}", u) for u in uidls.values()), f"UIDL format {uidls}")
    for entry in manifest:
        n = entry["index"]
        resp = pop.cmd(f"RETR {n}")
        wire = pop.multi()
        on_disk = open(os.path.join(maildir_new, entry["maildirFile"]), "rb").read()
        # Byte format: LF file -> CRLF on the wire, nothing else changed.
        check(wire == on_disk.replace(b"\n", b"\r\n"), f"#{n}: RETR bytes != file with LF->CRLF")
        check(len(wire) == sizes[n] == entry["messageSize"] == int(resp.split()[1]),
              f"#{n}: size RETR {len(wire)} LIST {sizes[n]} manifest {entry['messageSize']} {resp!r}")
        lone_dot |= b"\r\n.\r\n" in wire  # a line "." inside the message, sent as ".."
        msg = email.message_from_bytes(wire, policy=policy.default)
        check(msg["Message-ID"].strip("<>") == entry["messageId"], f"#{n}: Message-ID order mismatch")
        kind = entry["type"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "RECOVER":
            check(hashlib.sha256(wire).hexdigest() == entry["sha256"], f"#{n}: RECOVER sha256 mismatch")
            check(len(wire) == entry["size"], f"#{n}: RECOVER size")
        elif kind == "XFER":
            files = [p for p in msg.walk() if p.is_attachment()]
            check(msg.get_content_type() == "multipart/mixed" and len(files) == 1, f"#{n}: XFER shape")
            data = files[0].get_payload(decode=True)
            check(files[0].get_filename() == entry["fileName"], f"#{n}: filename {files[0].get_filename()!r}")
            check(hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"],
                  f"#{n}: decoded attachment sha256/size mismatch ({entry['fileName']})")
        elif kind == "MSG":
            check(msg.get_content_type() == "multipart/alternative" and
                  [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"], f"#{n}: MSG shape")
        elif kind == "EERP":
            check(msg.get_content_type() == "multipart/report" and
                  msg.get_param("report-type") == "disposition-notification", f"#{n}: EERP type")
            report = [p for p in msg.iter_parts() if p.get_content_type() == "message/disposition-notification"]
            check(len(report) == 1, f"#{n}: no disposition-notification part")
            text = report[0].as_bytes().decode()
            check(f"Original-Message-ID: <{entry['originalMessageId']}>" in text, f"#{n}: Original-Message-ID")
        check(bool(msg["Disposition-Notification-To"]) == entry["ackRequested"], f"#{n}: ackRequested")
    check(pop.stuffed > 0 and lone_dot, f"dot-stuffing not exercised ({pop.stuffed} stuffed lines)")
    pop.close()

    # STLS on the plain port, certificate checked against "localhost"; UIDLs must be stable.
    pop = POP3(info["plainPort"])
    capa = pop.capa()
    check("STLS" in capa, f"no STLS in plain-port CAPA: {capa}")
    check(re.search(rb"<[^<>@\s]+@[^<>\s]+>", pop.greeting), "no APOP timestamp on plain port")
    pop.stls(ctx, "localhost")
    pop.cmd("USER alice")
    pop.cmd("PASS alice-secret")
    check(pop.uidl() == uidls, "UIDLs changed between sessions")
    pop.cmd("DELE 1")
    pop.close()
    pop = POP3(info["tlsPort"], ctx)
    pop.cmd("USER alice")
    pop.cmd("PASS alice-secret")
    after = pop.uidl()
    check(sorted(after.values()) == sorted(u for k, u in uidls.items() if k != "1"), "UIDLs after DELE")
    pop.close()

    # Every login mechanism Gatepost may use (plain port, no TLS: the server must allow it).
    mechanisms = []
    pop = POP3(info["plainPort"])
    stamp = re.search(rb"<[^<>]+>", pop.greeting).group()
    pop.cmd(f"APOP bob {hashlib.md5(stamp + b'bob-secret').hexdigest()}")
    pop.close(); mechanisms.append("APOP")
    pop = POP3(info["plainPort"])
    pop.cmd(f"AUTH PLAIN {b64(chr(0) + 'carol' + chr(0) + 'carol-secret')}")
    pop.close(); mechanisms.append("PLAIN")
    pop = POP3(info["plainPort"])
    pop.cmd("AUTH LOGIN", b"+ ")
    pop.cmd(b64("bob"), b"+ ")
    pop.cmd(b64("bob-secret"))
    pop.close(); mechanisms.append("LOGIN")
    pop = POP3(info["tlsPort"], ctx)
    challenge = base64.b64decode(pop.cmd("AUTH CRAM-MD5", b"+ ")[2:].strip())
    digest = hmac.new(b"carol-secret", challenge, hashlib.md5).hexdigest()
    pop.cmd(b64(f"carol {digest}"))
    pop.close(); mechanisms.append("CRAM-MD5")
    pop = POP3(info["tlsPort"], ctx)
    pop.cmd("USER alice")
    pop.cmd("PASS wrong", b"-ERR")
    pop.sock.close(); mechanisms.append("wrong password refused")
    return counts, mechanisms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--attachment-size", default="4096")
    ap.add_argument("--mix", default="xfer,msg,eerp,recover")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    dir_a = tempfile.mkdtemp(prefix="gp-dovecot-a.")
    dir_b = tempfile.mkdtemp(prefix="gp-dovecot-b.")
    pids, ok = [], False
    try:
        t0 = time.monotonic()
        run = lambda *a: json.loads(subprocess.run(a, check=True, capture_output=True, text=True).stdout)
        # A: started by the script; the watchdog stops it should this check die.
        info_a = run(os.path.join(HERE, "start-dovecot.sh"), dir_a, "--stop-with", str(os.getpid()))
        pids.append(info_a["pid"])
        # B: --config-only, started by us as a harness would.
        info_b = run(os.path.join(HERE, "start-dovecot.sh"), dir_b, "--config-only")
        check(info_b["pid"] is None, "--config-only must not start dovecot")
        proc_b = subprocess.Popen(info_b["startCommand"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids.append(proc_b.pid)
        wait_ports([info_b["plainPort"], info_b["tlsPort"]])
        ports = {info_a["plainPort"], info_a["tlsPort"], info_b["plainPort"], info_b["tlsPort"]}
        check(len(ports) == 4 and not ports & {110, 995}, f"port clash {ports}")
        started = time.monotonic() - t0

        manifest_file = os.path.join(dir_a, "manifest.json")
        subprocess.run([sys.executable, os.path.join(HERE, "make-messages.py"), "--count", str(args.count),
                        "--seed", str(args.seed), "--out", info_a["maildirs"]["alice"],
                        "--manifest", manifest_file, "--attachment-size", args.attachment_size,
                        "--mix", args.mix], check=True)
        manifest = json.load(open(manifest_file))
        check(len(manifest) == args.count, "manifest length")

        counts, mechanisms = check_instance_a(info_a, manifest, info_a["maildirs"]["alice"])

        # B is independent: its own users, certificates and an empty mailbox.
        ctx_b = tls_context(info_b["caFile"])
        pop = POP3(info_b["tlsPort"], ctx_b)
        pop.cmd("USER bob")
        pop.cmd("PASS bob-secret")
        check(pop.cmd("STAT").split()[1] == b"0", "instance B mailbox not empty")
        pop.close()
        try:  # A's CA must not validate B's server certificate
            POP3(info_b["tlsPort"], tls_context(info_a["caFile"]))
            raise Fail("instance B accepted with instance A's CA")
        except ssl.SSLCertVerificationError:
            pass

        for pid in pids:
            stop(pid)
        for d, info in ((dir_a, info_a), (dir_b, info_b)):
            deadline = time.monotonic() + 3  # the watchdog notices within 1 s
            while leftover_processes(d) and time.monotonic() < deadline:
                time.sleep(0.1)
            check(not leftover_processes(d), f"processes left for {d}: {leftover_processes(d)}")
            try:
                socket.create_connection(("127.0.0.1", info["tlsPort"]), timeout=1).close()
                raise Fail(f"port {info['tlsPort']} still open after stop")
            except ConnectionRefusedError:
                pass
        ok = True
        print(f"check-dovecot: OK ({time.monotonic() - t0:.1f}s; both instances up in {started:.1f}s)")
        print(f"  A {dir_a}: plain {info_a['plainPort']} (STLS), tls {info_a['tlsPort']}; "
              f"B {dir_b}: plain {info_b['plainPort']}, tls {info_b['tlsPort']} (--config-only)")
        print(f"  {len(manifest)} messages RETRieved byte-exact (file LF -> wire CRLF, LIST size = bytes): "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print("  RECOVER sha256, XFER attachment sha256/fileName, MSG/EERP structure: match the manifest")
        print("  CAPA: USER UIDL SASL PLAIN LOGIN CRAM-MD5; STLS on plain port; APOP timestamp in greeting")
        print(f"  logins: USER/PASS, {', '.join(mechanisms)}; UIDLs stable across sessions and DELE")
        print("  certificates verified for 127.0.0.1 and localhost; B rejects A's CA; both stopped with kill PID")
    except (Fail, subprocess.CalledProcessError, OSError, ssl.SSLError) as e:
        detail = getattr(e, "stderr", None) or ""
        print(f"check-dovecot: FAILED: {e} {detail}", file=sys.stderr)
        for d in (dir_a, dir_b):
            log = os.path.join(d, "dovecot.log")
            if os.path.exists(log):
                print(f"--- tail of {log}", file=sys.stderr)
                print("".join(open(log).readlines()[-15:]), file=sys.stderr)
    finally:
        for pid in pids:
            try:
                stop(pid)
            except Fail:
                os.kill(pid, signal.SIGKILL)
        if ok and not args.keep:
            shutil.rmtree(dir_a, ignore_errors=True)
            shutil.rmtree(dir_b, ignore_errors=True)
        elif not ok:
            print(f"kept for inspection: {dir_a} {dir_b}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
