#!/usr/bin/env python3
"""Writes one message with a large base64 attachment into a Maildir new/ folder, streaming.

    make-large-message.py --out MAILDIR/new --size BYTES [--name big.bin]

The attachment is pseudo-random (a random block, varied per block so nothing repeats), written
in 76-character base64 lines; nothing is held whole in memory, so a 1 GiB attachment takes a few
MiB. Prints one JSON line: maildirFile, fileName, size (of the attachment), sha256 (of the
attachment), messageBytes (of the file written), messageId.
"""
import argparse, base64, hashlib, json, os, random, time

BLOCK = 57 * 55188  # about 3 MiB, a whole number of 57-byte base64 lines: no padding mid-stream


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the Maildir's new/ folder")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--name", default="big.bin")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    new = os.path.abspath(args.out)
    tmp = os.path.join(os.path.dirname(new), "tmp")
    if not os.path.isdir(tmp):
        tmp = new
    owner = os.stat(new)
    name = f"{int(time.time())}.M{os.getpid()}L.gatepost"
    message_id = f"<large-{args.seed}-{args.size}@gatepost.test>"
    staging = os.path.join(tmp, ("." if tmp == new else "") + name)

    rng = random.Random(args.seed)
    base = bytearray(rng.randbytes(BLOCK))
    digest = hashlib.sha256()
    written = 0
    with open(staging, "wb", buffering=1 << 20) as f:
        # LF line endings, as in a Maildir; Dovecot sends CRLF.
        f.write((
            "From: Partner <edi@partner.example>\n"
            "To: alice@gatepost.test\n"
            f"Subject: large file {args.size} bytes\n"
            f"Message-ID: {message_id}\n"
            "MIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="large-boundary"\n'
            "\n"
            "--large-boundary\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "\n"
            "The file is attached.\n"
            "--large-boundary\n"
            f'Content-Type: application/octet-stream; name="{args.name}"\n'
            f'Content-Disposition: attachment; filename="{args.name}"\n'
            "Content-Transfer-Encoding: base64\n"
            "\n").encode())
        counter = 0
        while written < args.size:
            base[0:8] = counter.to_bytes(8, "little")
            counter += 1
            block = bytes(base[:min(BLOCK, args.size - written)])
            digest.update(block)
            f.write(base64.encodebytes(block))
            written += len(block)
        f.write(b"--large-boundary--\n")
    os.chmod(staging, 0o644)
    if os.geteuid() == 0:
        os.chown(staging, owner.st_uid, owner.st_gid)
    target = os.path.join(new, name)
    os.rename(staging, target)
    print(json.dumps({
        "maildirFile": name, "fileName": args.name, "size": written, "sha256": digest.hexdigest(),
        "messageBytes": os.path.getsize(target), "messageId": message_id.strip("<>"),
    }))


if __name__ == "__main__":
    main()
