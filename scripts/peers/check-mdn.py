#!/usr/bin/env python3
"""Independent checker of RFC 8098 Message Disposition Notifications (MDNs), with Python's
`email` package (not Gatepost's MIME code), for the tests of the MDNs Gatepost sends.

  check-mdn.py [--expect-original-message-id ID] [--expect-final-recipient ADDR]
               [--expect-disposition-type TYPE] [--require-automatic] FILE...
  check-mdn.py --self-test
  check-mdn.py --write-sample FILE     (a valid MDN, e.g. to send through the SMTP peer)

FILE is one message (CRLF or LF line ends; trace headers such as Return-Path, Received,
Delivered-To and an mbox "From " line are fine; "-" reads standard input).

For each FILE one line of JSON goes to stdout: {"file", "valid", "errors", "warnings",
"headers" (From, To, Subject, Date, Message-ID, Auto-Submitted), "parts" (content types),
"humanReadable" (the text), "fields" (Reporting-UA, MDN-Gateway, Original-Recipient,
Final-Recipient and Original-Message-ID as text, Disposition as {raw, actionMode,
sendingMode, type, modifiers, modifierTexts}, Error as a list, extension fields),
"thirdPart" (content type or null)}. Every error is also printed to stderr as
"check-mdn: FILE: what is wrong". Exit status: 0 all valid, 1 some invalid, 2 usage or I/O.

What must hold (RFC 8098 section 3; * = required here though optional in the RFC, because
Gatepost always sends it):
  - top level multipart/report; report-type=disposition-notification; MIME-Version, From, Date
  - 2 or 3 parts: text/plain (human-readable), message/disposition-notification (7bit, ASCII),
    optionally message/rfc822, text/rfc822-headers, message/global or message/global-headers
  - fields: Reporting-UA*, Final-Recipient (address-type; address), Original-Message-ID*
    (<id@domain>), Disposition, each once; Original-Recipient and MDN-Gateway at most once
  - Disposition: action-mode/sending-mode; type[/modifier[, modifier...]] with action-mode
    manual-action|automatic-action, sending-mode MDN-sent-manually|MDN-sent-automatically,
    type displayed|deleted|dispatched|processed, or "failed"/"denied" of RFC 2298/3798 (with a
    warning; AS1/AS2 gateways still send "failed"); modifiers "error" or extension atoms, an
    AS2-style ": text" after a modifier is kept in modifierTexts
  - --require-automatic: automatic-action/MDN-sent-automatically, as Gatepost must send
"""
import argparse
import email
import json
import os
import re
import sys
import tempfile
from email import policy

ACTION_MODES = {"manual-action", "automatic-action"}
SENDING_MODES = {"mdn-sent-manually", "mdn-sent-automatically"}
TYPES = {"displayed", "deleted", "dispatched", "processed"}
LEGACY_TYPES = {"failed", "denied"}  # RFC 2298 / RFC 3798, removed by RFC 8098
THIRD_PART_TYPES = {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
SINGLE_FIELDS = ["Reporting-UA", "MDN-Gateway", "Original-Recipient", "Final-Recipient",
                 "Original-Message-ID", "Disposition"]
REQUIRED_FIELDS = ["Reporting-UA", "Final-Recipient", "Original-Message-ID", "Disposition"]
ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
MSG_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")
FATAL_DEFECTS = (email.errors.NoBoundaryInMultipartDefect, email.errors.StartBoundaryNotFoundDefect,
                 email.errors.CloseBoundaryNotFoundDefect, email.errors.MultipartInvariantViolationDefect,
                 email.errors.FirstHeaderLineIsContinuationDefect, email.errors.MissingHeaderBodySeparatorDefect)


def unfold(value):
    return re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()


def strip_comments(value):
    """Remove RFC 5322 (comments), not nested deeper than one level, outside quotes."""
    return re.sub(r"\((?:[^()\\]|\\.)*\)", " ", value)


def parse_disposition(raw, errors, warnings):
    """RFC 8098 3.2.6: mode/mode; type[/modifier, ...] (OWS anywhere, comments allowed)."""
    text = " ".join(strip_comments(raw).split())
    result = {"raw": raw, "actionMode": None, "sendingMode": None, "type": None, "modifiers": [],
              "modifierTexts": {}}
    m = re.fullmatch(r"\s*([^;/\s]+)\s*/\s*([^;/\s]+)\s*;\s*([^/\s]+)\s*(?:/\s*(.*))?", text)
    if not m:
        errors.append(f"Disposition {raw!r} is not 'action-mode/sending-mode; type[/modifiers]'")
        return result
    action, sending, dtype, modifiers = m.groups()
    result.update(actionMode=action, sendingMode=sending, type=dtype)
    if action.lower() not in ACTION_MODES:
        errors.append(f"Disposition action-mode {action!r} is not manual-action or automatic-action")
    if sending.lower() not in SENDING_MODES:
        errors.append(f"Disposition sending-mode {sending!r} is not MDN-sent-manually or MDN-sent-automatically")
    if (action.lower() == "automatic-action") != (sending.lower() == "mdn-sent-automatically"):
        warnings.append(f"Disposition mixes {action} with {sending}")
    if dtype.lower() in LEGACY_TYPES:
        warnings.append(f"Disposition type {dtype!r} is from RFC 2298/3798, not RFC 8098")
    elif dtype.lower() not in TYPES:
        errors.append(f"Disposition type {dtype!r} is not displayed, deleted, dispatched or processed")
    if modifiers is not None:
        # AS1/AS2 (RFC 3335/4130) put a description after the modifier: "processed/error: decryption-failed".
        mods, _, description = modifiers.partition(":")
        for mod in (x.strip() for x in mods.split(",")):
            if not re.fullmatch(ATOM, mod or "-"):
                errors.append(f"Disposition modifier {mod!r} is not an atom (in {raw!r})")
            else:
                result["modifiers"].append(mod)
        if description.strip():
            result["modifierTexts"][result["modifiers"][-1] if result["modifiers"] else ""] = description.strip()
        if not result["modifiers"]:
            errors.append(f"Disposition has '/' but no modifier: {raw!r}")
    return result


def check_address_field(name, value, errors):
    """address-type ";" generic-address, e.g. "rfc822; gateway@example.com"."""
    m = re.fullmatch(r"\s*(" + ATOM + r")\s*;\s*(\S.*?)\s*", strip_comments(value))
    if not m:
        errors.append(f"{name} {value!r} is not 'address-type; address'")
        return
    if m.group(1).lower() == "rfc822" and not re.fullmatch(r"[^@\s]+@[^@\s]+", m.group(2)):
        errors.append(f"{name} {value!r}: an rfc822 address needs local@domain")


def check_bytes(data, name="-"):
    errors, warnings = [], []
    report = {"file": name, "valid": False, "errors": errors, "warnings": warnings, "headers": {},
              "parts": [], "humanReadable": None, "fields": {}, "thirdPart": None}
    if data.startswith(b"From "):  # mbox separator line
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    msg = email.message_from_bytes(data, policy=policy.compat32)
    report["headers"] = {h: (unfold(msg[h]) if msg[h] is not None else None)
                         for h in ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted")}
    for h in ("From", "Date"):
        if msg[h] is None:
            errors.append(f"no {h} header (RFC 5322 requires it)")
    if msg["MIME-Version"] is None:
        errors.append("no MIME-Version header")
    if msg["Message-ID"] is None:
        warnings.append("no Message-ID header")
    if msg["Auto-Submitted"] is None:
        warnings.append("no Auto-Submitted header (RFC 3834: auto-replied for automatic MDNs)")
    for part in msg.walk():
        for d in part.defects:
            if isinstance(d, FATAL_DEFECTS):
                errors.append(f"MIME structure: {type(d).__name__} in {part.get_content_type()}")

    ctype = msg.get_content_type()
    if ctype != "multipart/report":
        errors.append(f"top-level Content-Type is {ctype}, not multipart/report")
        return report
    rtype = msg.get_param("report-type")
    if not rtype or str(rtype).lower() != "disposition-notification":
        errors.append(f"report-type is {rtype!r}, not disposition-notification")
    parts = msg.get_payload()
    if not isinstance(parts, list):
        errors.append("multipart/report without parts")
        return report
    report["parts"] = [p.get_content_type() for p in parts]
    if not 2 <= len(parts) <= 3:
        errors.append(f"{len(parts)} parts ({', '.join(report['parts'])}); an MDN has 2 or 3")
        if len(parts) < 2:
            return report

    human = parts[0]
    if human.get_content_type() != "text/plain":
        errors.append(f"first part is {human.get_content_type()}, not text/plain (human-readable)")
    else:
        try:
            body = human.get_payload(decode=True) or b""
            report["humanReadable"] = body.decode(human.get_content_charset() or "us-ascii")
            if not report["humanReadable"].strip():
                errors.append("first part (human-readable text) is empty")
        except (LookupError, UnicodeDecodeError) as e:
            errors.append(f"first part does not decode as {human.get_content_charset()}: {e}")

    mdn = parts[1]
    if mdn.get_content_type() != "message/disposition-notification":
        errors.append(f"second part is {mdn.get_content_type()}, not message/disposition-notification")
    else:
        cte = (mdn["Content-Transfer-Encoding"] or "7bit").strip().lower()
        if cte != "7bit":
            errors.append(f"message/disposition-notification has Content-Transfer-Encoding {cte}; must be 7bit")
        payload = mdn.get_payload()
        block = payload[0] if isinstance(payload, list) and payload else None
        if block is None:
            errors.append("message/disposition-notification part has no fields")
        else:
            check_fields(block, report, errors, warnings)

    if len(parts) >= 3:
        third = parts[2].get_content_type()
        report["thirdPart"] = third
        if third not in THIRD_PART_TYPES:
            errors.append(f"third part is {third}, not one of {', '.join(sorted(THIRD_PART_TYPES))}")
    report["valid"] = not errors
    return report


def check_fields(block, report, errors, warnings):
    fields, seen = report["fields"], {}
    for key, value in block.items():
        canon = next((f for f in SINGLE_FIELDS + ["Error"] if f.lower() == key.lower()), key)
        if re.search(r"[^\x00-\x7f]", key + str(value)):
            errors.append(f"{canon}: non-ASCII in message/disposition-notification")
        seen[canon] = seen.get(canon, 0) + 1
        value = unfold(value)
        if canon == "Error":
            fields.setdefault("Error", []).append(value)
        elif canon in SINGLE_FIELDS:
            fields[canon] = value
        else:
            fields.setdefault("extensions", {})[key] = value
    if block.get_payload():
        errors.append("text after the fields of message/disposition-notification (a blank line inside it?)")
    for f in SINGLE_FIELDS:
        if seen.get(f, 0) > 1:
            errors.append(f"{f} appears {seen[f]} times")
    for f in REQUIRED_FIELDS:
        if f not in fields:
            errors.append(f"no {f} field in message/disposition-notification")
    if "Reporting-UA" in fields and not strip_comments(fields["Reporting-UA"]).split(";")[0].strip():
        errors.append(f"Reporting-UA {fields['Reporting-UA']!r} has no ua-name")
    for f in ("Final-Recipient", "Original-Recipient"):
        if f in fields:
            check_address_field(f, fields[f], errors)
    if "Original-Message-ID" in fields and not MSG_ID.fullmatch(fields["Original-Message-ID"]):
        errors.append(f"Original-Message-ID {fields['Original-Message-ID']!r} is not <id-left@id-right>")
    if "Disposition" in fields:
        fields["Disposition"] = parse_disposition(fields["Disposition"], errors, warnings)


def apply_expectations(report, args):
    fields, errors = report["fields"], report["errors"]
    disp = fields.get("Disposition") if isinstance(fields.get("Disposition"), dict) else None
    if args.expect_original_message_id:
        want = args.expect_original_message_id.strip()
        want = want if want.startswith("<") else f"<{want}>"
        if fields.get("Original-Message-ID") != want:
            errors.append(f"Original-Message-ID is {fields.get('Original-Message-ID')!r}, expected {want!r}")
    if args.expect_final_recipient:
        got = (fields.get("Final-Recipient") or "").split(";", 1)[-1].strip()
        if got.lower() != args.expect_final_recipient.lower():
            errors.append(f"Final-Recipient address is {got!r}, expected {args.expect_final_recipient!r}")
    if args.expect_disposition_type and disp and (disp["type"] or "").lower() != args.expect_disposition_type.lower():
        errors.append(f"Disposition type is {disp['type']!r}, expected {args.expect_disposition_type!r}")
    if args.require_automatic and disp and ((disp["actionMode"] or "").lower() != "automatic-action" or
                                           (disp["sendingMode"] or "").lower() != "mdn-sent-automatically"):
        errors.append(f"Disposition {disp['raw']!r} is not automatic-action/MDN-sent-automatically")
    report["valid"] = not errors


# --- self-test samples -------------------------------------------------------------------

GOOD = """Return-Path: <gateway@ours.example>
Delivered-To: alice@gatepost.test
Received: from smtp.gatepost.test by test with LMTP; Wed, 1 Jan 2025 10:00:01 +0000
From: Gatepost <gateway@ours.example>
To: partner@acme.example
Subject: Disposition notification: orders.csv
Date: Wed, 1 Jan 2025 10:00:00 +0000
Message-ID: <mdn-1@ours.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type="disposition-notification";
 boundary="=_mdn_boundary"

This is an MDN (RFC 8098).

--=_mdn_boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

The message <orders-42@acme.example> with the file orders.csv was received and
processed by Gatepost. Grüße.

--=_mdn_boundary
Content-Type: message/disposition-notification

Reporting-UA: gatepost.ours.example; Gatepost 1.0
Original-Recipient: rfc822; files@ours.example
Final-Recipient: rfc822; files@ours.example
Original-Message-ID: <orders-42@acme.example>
Disposition: automatic-action/MDN-sent-automatically; processed
X-Gatepost-SHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

--=_mdn_boundary
Content-Type: text/rfc822-headers

From: partner@acme.example
To: files@ours.example
Subject: orders.csv
Message-ID: <orders-42@acme.example>
Disposition-Notification-To: partner@acme.example

--=_mdn_boundary--
""".encode()  # 8-bit UTF-8 in the human-readable part


def variant(old, new, base=GOOD):
    assert old in base, old
    return base.replace(old, new, 1)


ERROR_DISP = variant(b"Disposition: automatic-action/MDN-sent-automatically; processed\n",
                     b"Disposition: automatic-action/MDN-sent-automatically;\n processed/error: decryption-failed\n"
                     b"Error: the file could not be decrypted\n")
FAILED_DISP = variant(b"; processed\n", b"; failed/Failure: unsupported format\n")
TWO_PARTS = GOOD.split(b"--=_mdn_boundary\nContent-Type: text/rfc822-headers")[0] + b"--=_mdn_boundary--\n"

SAMPLES = [  # (name, bytes, None if valid else a piece of the expected error)
    ("good: processed, 3 parts, LF", GOOD, None),
    ("good: CRLF line ends", GOOD.replace(b"\n", b"\r\n"), None),
    ("good: 2 parts", TWO_PARTS, None),
    ("good: processed/error with Error field", ERROR_DISP, None),
    ("good: legacy failed/Failure (warning)", FAILED_DISP, None),
    ("good: comments and spacing", variant(b"automatic-action/MDN-sent-automatically; processed",
                                           b"automatic-action (by Gatepost) / MDN-sent-automatically ;  processed"), None),
    ("bad: multipart/mixed", variant(b"multipart/report;", b"multipart/mixed;"), "not multipart/report"),
    ("bad: report-type", variant(b'report-type="disposition-notification"', b"report-type=delivery-status"),
     "report-type"),
    ("bad: first part html", variant(b"Content-Type: text/plain; charset=utf-8", b"Content-Type: text/html; charset=utf-8"),
     "first part is text/html"),
    ("bad: second part type", variant(b"Content-Type: message/disposition-notification", b"Content-Type: text/plain"),
     "second part is text/plain"),
    ("bad: no Disposition", variant(b"Disposition: automatic-action/MDN-sent-automatically; processed\n", b""),
     "no Disposition field"),
    ("bad: no Original-Message-ID", variant(b"Original-Message-ID: <orders-42@acme.example>\n", b""),
     "no Original-Message-ID"),
    ("bad: no Reporting-UA", variant(b"Reporting-UA: gatepost.ours.example; Gatepost 1.0\n", b""), "no Reporting-UA"),
    ("bad: Final-Recipient without type", variant(b"Final-Recipient: rfc822; files@ours.example",
                                                  b"Final-Recipient: files@ours.example"), "address-type; address"),
    ("bad: disposition mode", variant(b"automatic-action/MDN-sent-automatically", b"automatic/MDN-sent-automatically"),
     "action-mode 'automatic'"),
    ("bad: disposition type", variant(b"; processed\n", b"; accepted\n"), "type 'accepted'"),
    ("bad: no semicolon", variant(b"; processed\n", b" processed\n"), "is not 'action-mode/sending-mode"),
    ("bad: Original-Message-ID form", variant(b"Original-Message-ID: <orders-42@acme.example>",
                                              b"Original-Message-ID: orders-42"), "not <id-left@id-right>"),
    ("bad: Disposition twice", variant(b"X-Gatepost-SHA256", b"Disposition: manual-action/MDN-sent-manually; displayed\n"
                                                             b"X-Gatepost-SHA256"), "Disposition appears 2 times"),
    ("bad: base64 report part", variant(b"Content-Type: message/disposition-notification\n",
                                        b"Content-Type: message/disposition-notification\nContent-Transfer-Encoding: base64\n"),
     "must be 7bit"),
    ("bad: no closing boundary", GOOD.replace(b"--=_mdn_boundary--\n", b""), "CloseBoundaryNotFoundDefect"),
    ("bad: fourth part", variant(b"--=_mdn_boundary--", b"--=_mdn_boundary\nContent-Type: text/plain\n\nx\n\n--=_mdn_boundary--"),
     "4 parts"),
    ("bad: third part type", variant(b"Content-Type: text/rfc822-headers", b"Content-Type: application/pdf"),
     "third part is application/pdf"),
    ("bad: no Date", variant(b"Date: Wed, 1 Jan 2025 10:00:00 +0000\n", b""), "no Date header"),
]


def self_test():
    failures = 0
    with tempfile.TemporaryDirectory(prefix="check-mdn.") as tmp:
        for i, (name, data, want_error) in enumerate(SAMPLES):
            path = os.path.join(tmp, f"sample-{i}.eml")
            with open(path, "wb") as f:
                f.write(data)
            with open(path, "rb") as f:
                report = check_bytes(f.read(), path)
            if want_error is None:
                ok = report["valid"]
                if ok and i == 0:
                    f_ = report["fields"]
                    d = f_["Disposition"]
                    ok = (d["actionMode"], d["sendingMode"], d["type"], d["modifiers"]) == \
                        ("automatic-action", "MDN-sent-automatically", "processed", []) and \
                        f_["Original-Message-ID"] == "<orders-42@acme.example>" and \
                        f_["Final-Recipient"] == "rfc822; files@ours.example" and \
                        report["parts"] == ["text/plain", "message/disposition-notification", "text/rfc822-headers"] and \
                        "Grüße" in report["humanReadable"] and not report["warnings"]
                if ok and "processed/error" in name:
                    ok = report["fields"]["Disposition"]["modifiers"] == ["error"] and \
                        report["fields"]["Disposition"]["modifierTexts"] == {"error": "decryption-failed"} and \
                        report["fields"]["Error"] == ["the file could not be decrypted"]
                if ok and "legacy" in name:
                    ok = any("RFC 2298" in w for w in report["warnings"])
            else:
                ok = not report["valid"] and any(want_error in e for e in report["errors"])
            print(f"  {'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {report['errors'] or 'accepted'}"))
            failures += not ok
    # The expectations used by tests.
    args = argparse.Namespace(expect_original_message_id="orders-42@acme.example",
                              expect_final_recipient="files@ours.example", expect_disposition_type="processed",
                              require_automatic=True)
    report = check_bytes(GOOD)
    apply_expectations(report, args)
    exp_ok = report["valid"]
    args.expect_original_message_id, args.expect_disposition_type = "<other@acme.example>", "displayed"
    report = check_bytes(GOOD)
    apply_expectations(report, args)
    exp_ok &= not report["valid"] and len(report["errors"]) == 2
    report = check_bytes(variant(b"automatic-action/MDN-sent-automatically", b"manual-action/MDN-sent-manually"))
    apply_expectations(report, argparse.Namespace(expect_original_message_id=None, expect_final_recipient=None,
                                                  expect_disposition_type=None, require_automatic=True))
    exp_ok &= not report["valid"] and "not automatic-action" in report["errors"][0]
    print(f"  {'ok  ' if exp_ok else 'FAIL'} --expect-* and --require-automatic")
    failures += not exp_ok
    print(f"check-mdn self-test: {'OK' if not failures else 'FAILED'} ({len(SAMPLES) + 1 - failures} passed, {failures} failed)")
    return 0 if not failures else 1


def main():
    ap = argparse.ArgumentParser(description="Validate RFC 8098 MDN message files.")
    ap.add_argument("files", nargs="*", metavar="FILE")
    ap.add_argument("--self-test", action="store_true", help="check built-in good and bad samples")
    ap.add_argument("--write-sample", metavar="FILE", help="write a valid sample MDN (CRLF) and exit")
    ap.add_argument("--expect-original-message-id", metavar="ID")
    ap.add_argument("--expect-final-recipient", metavar="ADDR")
    ap.add_argument("--expect-disposition-type", metavar="TYPE")
    ap.add_argument("--require-automatic", action="store_true",
                    help="Disposition must be automatic-action/MDN-sent-automatically")
    args = ap.parse_args()
    if args.self_test:
        sys.exit(self_test())
    if args.write_sample:
        # Without the trace headers of the built-in sample: as a client would submit it.
        body = GOOD[GOOD.index(b"From: Gatepost"):]
        with open(args.write_sample, "wb") as f:
            f.write(body.replace(b"\n", b"\r\n"))
        sys.exit(0)
    if not args.files:
        ap.error("no FILE given (or use --self-test)")
    status = 0
    for name in args.files:
        try:
            data = sys.stdin.buffer.read() if name == "-" else open(name, "rb").read()
        except OSError as e:
            print(f"check-mdn: {name}: {e.strerror}", file=sys.stderr)
            status = 2
            continue
        report = check_bytes(data, name)
        apply_expectations(report, args)
        print(json.dumps(report, ensure_ascii=False))
        for e in report["errors"]:
            print(f"check-mdn: {name}: {e}", file=sys.stderr)
        if not report["valid"] and status == 0:
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
