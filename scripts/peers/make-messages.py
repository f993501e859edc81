#!/usr/bin/env python3
"""Write test messages straight into a Maildir `new` folder, plus a manifest of what
Gatepost should make of each one.

  make-messages.py --count N --seed S --out MAILDIR/new --manifest FILE.json
                   [--attachment-size BYTES] [--mix xfer,msg,eerp,recover]

The MIME is written by Python's own `email` package, independently of Gatepost's parser.
Classes are cycled through in --mix order (repeat a name to weight it). The same seed gives
byte-identical messages, so use a fresh seed per batch (Message-IDs derive from it).

Byte format: files are stored with LF line ends, as a Maildir MDA stores them. Dovecot's RETR
turns every LF into CRLF (CRLF already in a file stays CRLF), so what a POP3 client gets after
dot-unstuffing, without the final ".\\r\\n", is exactly the CRLF form generated here: that is
what "sha256" of a RECOVER message and "messageSize" (= the LIST size) describe.

Manifest: a JSON array in maildir (= POP3 message number) order; see MANIFEST_FIELDS below.
"""
import argparse
import hashlib
import json
import os
import random
import re
import time
from datetime import datetime, timedelta, timezone
from email import policy, utils
from email.message import EmailMessage

# Every header and body line is CRLF-terminated, as on the wire.
POLICY = policy.SMTP
DOMAIN = "partner.example"
TO = "Gatepost Inbound <gatepost@ours.example>"
BASE_DATE = datetime(2026, 3, 2, 8, 0, 0, tzinfo=timezone.utc)

MANIFEST_FIELDS = """
index            1-based position among the messages of this run (POP3 order if the maildir
                 held no unseen messages before)
maildirFile      file name written in --out
type             XFER | MSG | EERP | RECOVER (how Gatepost must classify it)
fileName         XFER: attachment name as sent (decoded); RECOVER: "RECOVER"; else null
expectedFileName XFER: fileName reduced to its last path component (Gatepost's SafeFileName)
sha256, size     XFER: of the decoded attachment; RECOVER: of the whole message as RETR
                 delivers it (CRLF, dot-unstuffed, no final ".\\r\\n"); else null
messageSize      the whole message as RETR delivers it (= POP3 LIST size)
messageId        Message-ID without <>, as Gatepost records it
subject, from, to, date   header values (subject decoded)
ackRequested     true when Disposition-Notification-To is set
XFER extras:     contentType, transferEncoding
EERP extras:     originalMessageId (without <>), disposition, finalRecipient
RECOVER extras:  variant ("single-part" | "two-attachments")
"""

# Lines that need dot-stuffing on the wire (a lone "." would end RETR early if not stuffed),
# and a long line (well past 78, under SMTP's 998 limit).
DOT_LINES = [".", "..", ".leading dot", "...three dots", ". dot space"]


def long_line(rng, n=900):
    words = ["gatepost", "transfer", "mailbox", "partner", "ledger", "invoice", "pallet"]
    out = []
    while sum(len(w) + 1 for w in out) < n:
        out.append(rng.choice(words))
    return " ".join(out)[:n]


def body_text(rng, intro):
    dots = ["."] + rng.sample(DOT_LINES[1:], 2)  # always a lone ".": the case that must be stuffed
    rng.shuffle(dots)
    lines = [intro, ""] + dots + ["", long_line(rng), "", "-- ", "Partner test mailer"]
    return "\n".join(lines) + "\n"


def new_message(i, seed, rng, subject, ack):
    msg = EmailMessage(policy=POLICY)
    sender = f"Partner {seed % 97} <sender{i % 3}@{DOMAIN}>"
    msg["From"] = sender
    msg["To"] = TO
    msg["Date"] = utils.format_datetime(BASE_DATE + timedelta(minutes=i))
    msg["Subject"] = subject
    mid = f"gp-{seed}-{i:05d}.{rng.getrandbits(48):012x}@{DOMAIN}"
    msg["Message-ID"] = f"<{mid}>"
    if ack:
        msg["Disposition-Notification-To"] = sender
    meta = {"messageId": mid, "subject": subject, "from": sender, "to": TO,
            "date": msg["Date"], "ackRequested": ack}
    return msg, meta


def csv_bytes(rng, size):
    # RFC 4180 CSV: CRLF line ends, UTF-8, ends with CRLF. Sent as quoted-printable either as
    # text (CRLF = QP hard line breaks, RFC 2045 6.7) or as bytes (CRLF encoded as =0D=0A);
    # a correct MIME decoder yields exactly these bytes both ways.
    rows, total = ["Artikel;Menge;Preis;Bemerkung"], 30
    while total < size:
        rows.append(f"{rng.randint(1000, 9999)};{rng.randint(1, 500)};{rng.randint(1, 99999) / 100:.2f};"
                    + rng.choice(["Größe M", "naïve café", "ok", "=equals=", "Ende. ", "x" * 120]))
        total += len(rows[-1]) + 2
    return ("\r\n".join(rows) + "\r\n").encode("utf-8")


def xfer_variant(k, rng, size):
    """(fileName, bytes, maintype, subtype, cte): every 5 XFERs cover binary/base64, non-ASCII
    names (RFC 2231), quoted-printable CSV (text and binary style) and one hostile path."""
    v = k % 5
    if v == 0:
        return f"payload-{k:03d}.bin", rng.randbytes(size), "application", "octet-stream", "base64"
    if v == 1:
        name = "Übersicht 2026.csv" if k == 1 else f"Übersicht 2026 ({k}).csv"
        return name, csv_bytes(rng, size), "text", "csv", "quoted-printable"
    if v == 2 and k == 2:
        return "../../etc/passwd", rng.randbytes(size), "application", "octet-stream", "base64"
    if v == 2:
        return f"Bericht-{k:03d}.pdf", rng.randbytes(size), "application", "pdf", "base64"
    if v == 3:
        return f"orders-{k:03d}.csv", csv_bytes(rng, size), "text", "csv", "quoted-printable"
    return f"Größenprüfung résumé {k:03d}.dat", rng.randbytes(size), "application", "octet-stream", "base64"


def build(kind, i, k, seed, rng, size):
    """Returns (EmailMessage, manifest fields). k counts messages of this kind so far."""
    if kind == "xfer":
        name, data, maintype, subtype, cte = xfer_variant(k, rng, size)
        msg, meta = new_message(i, seed, rng, f"Transfer {k}: {name}", ack=k % 2 == 0)
        msg.set_content(body_text(rng, f"File {name} is attached."), cte="8bit")  # long line kept
        if k % 5 == 1:  # text-style QP: CRLFs become hard line breaks
            msg.add_attachment(data.decode("utf-8"), subtype=subtype, charset="utf-8", cte=cte, filename=name)
        else:
            params = {"charset": "utf-8"} if maintype == "text" else None
            msg.add_attachment(data, maintype=maintype, subtype=subtype, cte=cte, filename=name, params=params)
        base = re.split(r"[/\\]", name)[-1]
        meta.update(type="XFER", fileName=name, expectedFileName=base, sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data), contentType=f"{maintype}/{subtype}", transferEncoding=cte)
    elif kind == "msg":
        msg, meta = new_message(i, seed, rng, f"Nachricht {k} – Lieferfenster ändern sich", ack=k % 3 == 0)
        text = body_text(rng, f"Message {k}: delivery windows change next week. Grüße!")
        msg.set_content(text)
        html = "<html><body>" + "".join(f"<p>{line}</p>\n" for line in text.splitlines()) + "</body></html>\n"
        msg.add_alternative(html, subtype="html")
        meta.update(type="MSG", fileName=None, sha256=None, size=None)
    elif kind == "eerp":
        msg, meta = new_message(i, seed, rng, f"Disposition notification {k}", ack=False)
        original = f"gatepost-out-{seed}-{k:04d}@ours.example"
        final = f"sender{k % 3}@{DOMAIN}"
        disposition = "automatic-action/MDN-sent-automatically; processed"
        msg.set_content(body_text(rng, f"Your message <{original}> was processed."))
        msg.make_mixed()  # multipart/mixed holding the text part...
        msg.set_type("multipart/report")  # ...retyped, keeping its boundary
        msg.set_param("report-type", "disposition-notification")
        report = EmailMessage(policy=POLICY)
        report["Content-Type"] = "message/disposition-notification"
        # The generator writes a str payload of message/* parts verbatim: CRLF it ourselves.
        report.set_payload("".join(f"{line}\r\n" for line in [
            "Reporting-UA: partner-mailer.example; Gatepost test peer",
            f"Final-Recipient: rfc822; {final}",
            f"Original-Message-ID: <{original}>",
            f"Disposition: {disposition}"]))
        msg.attach(report)
        meta.update(type="EERP", fileName=None, sha256=None, size=None, originalMessageId=original,
                    disposition=disposition, finalRecipient=final)
    elif kind == "recover":
        single = k % 2 == 0
        msg, meta = new_message(i, seed, rng, f"Recover {k}: " + ("plain text" if single else "two files"),
                                ack=k % 4 == 1)
        msg.set_content(body_text(rng, "A single-part message: Gatepost keeps it whole."), cte="7bit")
        if not single:
            for n in (1, 2):
                msg.add_attachment(rng.randbytes(max(1, size // 2)), maintype="application",
                                   subtype="octet-stream", filename=f"part-{k:03d}-{n}.bin")
        meta.update(type="RECOVER", fileName="RECOVER", variant="single-part" if single else "two-attachments")
    else:
        raise SystemExit(f"unknown class {kind!r} in --mix")
    # The email package draws boundaries from the global RNG: fix them so that a seed
    # always gives the same bytes.
    for n, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"=_gatepost_{seed}_{i}_{n}_{rng.getrandbits(32):08x}")
    wire = msg.as_bytes(policy=POLICY)
    # Invariants the byte-exact expectations rely on: CRLF only, and a final CRLF.
    if b"\r\n" not in wire or wire.replace(b"\r\n", b"").count(b"\n") or wire.replace(b"\r\n", b"").count(b"\r") \
            or not wire.endswith(b"\r\n"):
        raise SystemExit(f"message {i}: generator produced bare CR/LF or no final CRLF")
    if meta["type"] == "RECOVER":
        meta.update(sha256=hashlib.sha256(wire).hexdigest(), size=len(wire))
    meta["messageSize"] = len(wire)
    return wire, meta


def leading_secs(name):
    m = re.match(r"\d+", name)
    return int(m.group()) if m else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, epilog="manifest fields:" + MANIFEST_FIELDS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True, help="the Maildir's new/ folder")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--attachment-size", type=int, default=4096)
    ap.add_argument("--mix", default="xfer,msg,eerp,recover")
    args = ap.parse_args()
    mix = [m.strip().lower() for m in args.mix.split(",") if m.strip()]
    if not mix or args.count < 0 or args.attachment_size < 1:
        ap.error("need --count >= 0, --attachment-size >= 1 and a non-empty --mix")

    new = os.path.abspath(args.out)
    if not os.path.isdir(new):
        ap.error(f"--out {new} is not a directory")
    maildir = os.path.dirname(new)
    tmp = os.path.join(maildir, "tmp") if os.path.isdir(os.path.join(maildir, "tmp")) else new
    owner = os.stat(new)  # files must be readable by Dovecot's mail user: give them to it
    # Dovecot numbers new files by the seconds prefix of their names: one second per message,
    # after anything already there, keeps POP3 order = manifest order.
    existing = [leading_secs(f) for d in (new, os.path.join(maildir, "cur")) if os.path.isdir(d)
                for f in os.listdir(d)]
    secs = max([int(time.time())] + [s + 1 for s in existing])

    rng = random.Random(args.seed)
    counters, manifest = {}, []
    for i in range(args.count):
        kind = mix[i % len(mix)]
        k = counters.get(kind, 0)
        counters[kind] = k + 1
        wire, meta = build(kind, i, k, args.seed, rng, args.attachment_size)
        name = f"{secs + i}.M{i:06d}P{os.getpid()}Q{args.seed}.gatepost"
        # Maildir delivery: write elsewhere, then rename into new/ (atomic, never half-read).
        staging = os.path.join(tmp, ("." if tmp == new else "") + name)
        with open(staging, "wb") as f:
            f.write(wire.replace(b"\r\n", b"\n"))
        os.chmod(staging, 0o644)
        if os.geteuid() == 0:
            os.chown(staging, owner.st_uid, owner.st_gid)
        os.rename(staging, os.path.join(new, name))
        manifest.append({"index": i + 1, "maildirFile": name, **meta})

    with open(args.manifest, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
