/// One message of each class, as a partner's mailer would send them; the demo's mailbox.
public enum DemoMailbox {
    public static let orderCSV = "order_id,item,quantity\r\n4711,widget,12\r\n4712,gadget,3\r\n"

    public static var messages: [ScriptedPOP3Server.Message] {
        [
            .init(uidl: "demo-xfer-1", bytes: crlf(xfer)),
            .init(uidl: "demo-msg-1", bytes: crlf(msg)),
            .init(uidl: "demo-eerp-1", bytes: crlf(eerp)),
            .init(uidl: "demo-recover-1", bytes: crlf(recover)),
        ]
    }

    static func crlf(_ text: String) -> [UInt8] {
        Array(text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n").utf8)
    }

    // "b3JkZXJfaWQs..." is orderCSV in base64.
    static let xfer = """
    From: ACME Orders <orders@acme.example>
    To: gateway@ours.example
    Subject: Purchase orders for today
    Date: Wed, 25 Nov 2026 08:00:00 +0000
    Message-ID: <xfer-0001@acme.example>
    Disposition-Notification-To: orders@acme.example
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="==acme-1=="

    --==acme-1==
    Content-Type: text/plain; charset=utf-8

    Today's purchase orders are attached.
    --==acme-1==
    Content-Type: text/csv; name="orders-2026-11-25.csv"
    Content-Disposition: attachment; filename="orders-2026-11-25.csv"
    Content-Transfer-Encoding: base64

    \(base64(orderCSV, wrap: true))
    --==acme-1==--
    """

    static let msg = """
    From: ACME Orders <orders@acme.example>
    To: gateway@ours.example
    Subject: Delivery window changes next week
    Date: Wed, 25 Nov 2026 08:05:00 +0000
    Message-ID: <msg-0001@acme.example>
    MIME-Version: 1.0
    Content-Type: multipart/alternative; boundary="alt"

    --alt
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    Deliveries next week arrive between 6 and 10 a.m. =E2=80=94 the dock team
    --alt
    Content-Type: text/html; charset=utf-8

    <p>Deliveries next week arrive between 6 and 10 a.m. &mdash; the dock team</p>
    --alt--
    """

    static let eerp = """
    From: ACME Gateway <gateway@acme.example>
    To: gateway@ours.example
    Subject: Disposition notification
    Date: Wed, 25 Nov 2026 08:10:00 +0000
    Message-ID: <mdn-0001@acme.example>
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=disposition-notification; boundary="rpt"

    --rpt
    Content-Type: text/plain; charset=utf-8

    The file you sent was processed.
    --rpt
    Content-Type: message/disposition-notification

    Reporting-UA: gateway.acme.example; ACME MFT
    Final-Recipient: rfc822; orders@acme.example
    Original-Message-ID: <out-0001@ours.example>
    Disposition: automatic-action/MDN-sent-automatically; processed
    --rpt--
    """

    static let recover = """
    From: someone@acme.example
    To: gateway@ours.example
    Subject: Question about invoice 2026-118
    Date: Wed, 25 Nov 2026 08:15:00 +0000
    Message-ID: <plain-0001@acme.example>

    Hello, could you resend invoice 2026-118?
    .A line starting with a dot survives byte-stuffing.
    """

    /// Base64, wrapped at 76 characters when `wrap` (MIME bodies), unwrapped for SASL.
    static func base64(_ text: String, wrap: Bool = false) -> String {
        let encoded = Data(text.utf8).base64EncodedString(options: wrap ? [.lineLength76Characters, .endLineWithLineFeed] : [])
        return encoded
    }
}

import Foundation
