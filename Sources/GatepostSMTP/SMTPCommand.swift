import NIOCore

/// A command line the client sends (RFC 5321, RFC 3207 STARTTLS, RFC 4954 AUTH). Printing one
/// shows its ``logDescription``: SASL data never reaches a log by way of string interpolation.
public enum SMTPCommand: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    case ehlo(String)
    case helo(String)
    case startTLS
    /// `initialResponse` is base64 text; an empty one is sent as `=` (RFC 4954 section 4).
    case auth(mechanism: String, initialResponse: String?)
    /// A SASL response to a 334 challenge: base64 text, empty, or `*` to cancel.
    case saslResponse(String)
    /// `from` empty is the null reverse-path `<>` (bounces).
    case mailFrom(String, parameters: [String])
    case recipient(String, parameters: [String])
    case data
    case reset
    case noop
    case quit

    /// The command as it may appear in a log or an error: SASL data is masked, since initial
    /// responses and answers carry passwords and tokens (base64 is not protection).
    public var logDescription: String {
        switch self {
        case .ehlo(let name): "EHLO \(name)"
        case .helo(let name): "HELO \(name)"
        case .startTLS: "STARTTLS"
        case .auth(let mechanism, let initial): initial == nil ? "AUTH \(mechanism)" : "AUTH \(mechanism) ****"
        case .saslResponse: "(SASL response) ****"
        case .mailFrom(let from, let parameters): (["MAIL FROM:<\(from)>"] + parameters).joined(separator: " ")
        case .recipient(let to, let parameters): (["RCPT TO:<\(to)>"] + parameters).joined(separator: " ")
        case .data: "DATA"
        case .reset: "RSET"
        case .noop: "NOOP"
        case .quit: "QUIT"
        }
    }

    public var description: String { logDescription }
    public var debugDescription: String { logDescription }

    /// Writes the command line. Arguments must not contain CR, LF or NUL: an address or a host
    /// name from a configuration file must never be able to smuggle a second command onto the wire.
    public func encode(into buffer: inout ByteBuffer) throws(SMTPError) {
        func checked(_ text: String) throws(SMTPError) -> String {
            guard !text.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw SMTPError.invalidArgument("a command argument contains a line break")
            }
            return text
        }
        let line: String = switch self {
        case .ehlo(let name): "EHLO \(try checked(name))"
        case .helo(let name): "HELO \(try checked(name))"
        case .startTLS: "STARTTLS"
        case .auth(let mechanism, let initial):
            if let initial { "AUTH \(try checked(mechanism)) \(initial.isEmpty ? "=" : try checked(initial))" }
            else { "AUTH \(try checked(mechanism))" }
        case .saslResponse(let response): try checked(response)
        case .mailFrom(let from, let parameters):
            (["MAIL FROM:<\(try checked(from))>"] + (try parameters.map(checked))).joined(separator: " ")
        case .recipient(let to, let parameters):
            (["RCPT TO:<\(try checked(to))>"] + (try parameters.map(checked))).joined(separator: " ")
        case .data: "DATA"
        case .reset: "RSET"
        case .noop: "NOOP"
        case .quit: "QUIT"
        }
        buffer.writeString(line)
        buffer.writeStaticString("\r\n")
    }
}

/// Sender and recipients of one message (the SMTP envelope, RFC 5321 section 2.3.1).
public struct SMTPEnvelope: Sendable, Hashable {
    /// The reverse-path; empty for the null sender `<>`.
    public var from: String
    public var recipients: [String]
    /// Delivery status notifications to ask for (RFC 3461), when the server offers DSN; a
    /// server without it is sent the message without asking.
    public var deliveryStatus: DeliveryStatusRequest?

    public init(from: String, recipients: [String], deliveryStatus: DeliveryStatusRequest? = nil) {
        self.from = from
        self.recipients = recipients
        self.deliveryStatus = deliveryStatus
    }

    /// Whether an address needs SMTPUTF8 (RFC 6531) to be sent.
    var needsSMTPUTF8: Bool {
        ([from] + recipients).contains { $0.utf8.contains { $0 >= 0x80 } }
    }

    /// Rejects what cannot be a mailbox on the wire: angle brackets (they would end the path),
    /// control characters (command smuggling) and empty recipients.
    func validate() throws(SMTPError) {
        guard !recipients.isEmpty else { throw SMTPError.invalidArgument("a message needs at least one recipient") }
        try Self.validate(from, role: "sender")
        for recipient in recipients {
            guard !recipient.isEmpty else { throw SMTPError.invalidArgument("an empty recipient address") }
            try Self.validate(recipient, role: "recipient")
        }
    }

    private static func validate(_ address: String, role: String) throws(SMTPError) {
        if address.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "<" || $0 == ">" }) {
            throw SMTPError.invalidArgument("the \(role) address \"\(printable(address))\" contains control characters or angle brackets")
        }
    }

    static func printable(_ text: String) -> String {
        String(text.prefix(80).unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
    }
}

/// The delivery status notifications (RFC 3461) a message asks for, for every recipient, with
/// only the header of the message returned (`RET=HDRS`: a bounce does not carry the file back),
/// tagged with `envelopeID` so that a report names what it is about even when the message's
/// own header is lost.
public struct DeliveryStatusRequest: Sendable, Hashable {
    /// When a report is wanted (NOTIFY).
    public enum Notify: String, Sendable, Hashable, CaseIterable {
        case success = "SUCCESS", failure = "FAILURE", delay = "DELAY"
    }

    /// ENVID: printable ASCII, at most 100 characters (RFC 3461 section 4.4); sent as xtext.
    public var envelopeID: String
    /// Empty: NOTIFY=NEVER.
    public var notify: [Notify]

    public init(envelopeID: String, notify: [Notify] = Notify.allCases) {
        self.envelopeID = envelopeID
        self.notify = notify
    }

    var mailParameters: [String] { ["RET=HDRS", "ENVID=" + Self.xtext(String(envelopeID.prefix(100)))] }

    /// The RCPT TO parameters for `recipient`: NOTIFY, and ORCPT (the address as we named it,
    /// which the report gives back as Original-Recipient) when it is ASCII.
    func recipientParameters(_ recipient: String) -> [String] {
        var parameters = ["NOTIFY=" + (notify.isEmpty ? "NEVER" : notify.map(\.rawValue).joined(separator: ","))]
        if recipient.utf8.allSatisfy({ $0 < 0x80 }) { parameters.append("ORCPT=rfc822;" + Self.xtext(recipient)) }
        return parameters
    }

    /// RFC 3461 section 4: `+`, `=`, spaces, controls and non-ASCII as `+XX`.
    static func xtext(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if byte >= 0x21, byte <= 0x7E, byte != UInt8(ascii: "+"), byte != UInt8(ascii: "=") {
                out.append(Character(Unicode.Scalar(byte)))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "+" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}

/// What the server said about one recipient (its RCPT TO reply).
public struct SMTPRecipientResult: Sendable, Hashable, CustomStringConvertible {
    public enum Status: Sendable, Hashable {
        /// 2xx: the server takes responsibility for this recipient.
        case accepted
        /// 4xx: not now (mailbox busy, greylisting, quota): send to this recipient again later.
        case refusedTemporarily
        /// 5xx: no such mailbox, relaying denied, policy: sending again will not help.
        case refusedPermanently
    }

    public var recipient: String
    public var reply: SMTPReply

    public init(recipient: String, reply: SMTPReply) {
        self.recipient = recipient
        self.reply = reply
    }

    public var status: Status {
        switch reply.category {
        case .positiveCompletion: .accepted
        case .transientNegative: .refusedTemporarily
        // A 3xx to RCPT is not in RFC 5321; treating it as a refusal errs on the side of resending.
        case .positiveIntermediate, .permanentNegative: .refusedPermanently
        }
    }

    public var isAccepted: Bool { status == .accepted }

    public var description: String { "<\(recipient)>: \(reply)" }
}

/// A message the server accepted, for at least one recipient.
public struct SMTPSendResult: Sendable, Hashable {
    /// One entry per envelope recipient, in envelope order.
    public var recipients: [SMTPRecipientResult]
    /// The reply to the end of data, e.g. `250 2.0.0 Ok: queued as 4Bx7Yq1Z2`: the text names the
    /// server's queue id, which is what its operator needs to trace the message.
    public var finalReply: SMTPReply

    public init(recipients: [SMTPRecipientResult], finalReply: SMTPReply) {
        self.recipients = recipients
        self.finalReply = finalReply
    }

    public var acceptedRecipients: [String] { recipients.filter(\.isAccepted).map(\.recipient) }
    public var refusedRecipients: [SMTPRecipientResult] { recipients.filter { !$0.isAccepted } }
}

/// A message the server did not take, with the reply that decided it.
public struct SMTPTransactionFailure: Sendable, Hashable, CustomStringConvertible {
    public enum Stage: Sendable, Hashable {
        /// MAIL FROM was refused (sender, size, or policy).
        case mailFrom
        /// Every RCPT TO was refused.
        case recipients
        /// DATA was refused.
        case data
        /// The server refused the message after receiving it (content scanning, size, storage).
        case endOfData
    }

    public var stage: Stage
    public var reply: SMTPReply
    /// The recipients' replies as far as they are known (empty when MAIL FROM was refused
    /// without pipelining).
    public var recipients: [SMTPRecipientResult]

    public init(stage: Stage, reply: SMTPReply, recipients: [SMTPRecipientResult]) {
        self.stage = stage
        self.reply = reply
        self.recipients = recipients
    }

    /// Whether sending the same message again later may work. With every recipient refused, it
    /// may as soon as one of them was refused only for now (4xx): those are worth retrying.
    public var isTransient: Bool {
        switch stage {
        case .recipients: recipients.contains { $0.status == .refusedTemporarily }
        case .mailFrom, .data, .endOfData: reply.isTransientFailure
        }
    }

    public var description: String {
        switch stage {
        case .mailFrom:
            return "the server refused the sender: \(reply)"
        case .recipients:
            return "the server refused every recipient: " + recipients.map(\.description).joined(separator: "; ")
        case .data:
            return "the server refused DATA: \(reply)"
        case .endOfData:
            return "the server refused the message after receiving it: \(reply)"
        }
    }
}
