import Foundation
import GatepostCatalog
import GatepostMIME

/// Whether a received message gets an RFC 8098 MDN, and to whom.
public enum AcknowledgmentDecision: Sendable, Equatable {
    case notRequested
    /// `finalRecipient` is the site's mailbox (``RemoteSite/POP3/address``, else its user name
    /// when that is an address, else `from`): what the site knows, never a header the sender wrote.
    case send(to: [MailAddress], from: MailAddress, finalRecipient: MailAddress)
    /// Requested, but not sent automatically; `reason` goes to the log and the record's state
    /// says `failed`.
    case refused(reason: String)
}

public enum AcknowledgmentPolicy {
    /// More addresses than this in Disposition-Notification-To is no acknowledgment request but
    /// a way to make us mail many people: refused.
    public static let maxRecipients = 5

    /// RFC 8098 section 2.1 and the site's settings, as one pure function.
    public static func decide(record: TransferRecord, header: MessageHeader, site: RemoteSite) -> AcknowledgmentDecision {
        guard let requested = header["Disposition-Notification-To"] else { return .notRequested }
        // Never acknowledge a report (no MDN loops), even one kept whole because it could not be
        // parsed, nor a message already acknowledged once.
        if record.type == .eerp || header.contentType().mimeType == "multipart/report" { return .notRequested }
        if record.fileName == TransferRecord.duplicateFileName { return .notRequested }
        guard let smtp = site.smtp, smtp.acknowledgments else {
            return .refused(reason: "the site has no smtp: settings (or acknowledgments: false)")
        }
        guard let fromText = smtp.from, let from = try? MailAddress(fromText) else {
            return .refused(reason: "the site's smtp: settings have no from: address")
        }
        let recipients = MailAddress.list(requested)
        guard !recipients.isEmpty else { return .refused(reason: "Disposition-Notification-To holds no valid address") }
        guard recipients.count <= maxRecipients else {
            return .refused(reason: "Disposition-Notification-To names \(recipients.count) addresses (at most \(maxRecipients) are acknowledged)")
        }
        // An MDN to an address other than the envelope sender's could be used to mail a third
        // party: only when Return-Path agrees, or the site trusts its partner's setup.
        if !smtp.acknowledgeAnyAddress {
            guard let returnPath = header["Return-Path"].flatMap({ MailAddress.list($0).first }) else {
                return .refused(reason: "no Return-Path to compare Disposition-Notification-To with (RFC 8098 section 2.1)")
            }
            let sender = returnPath.address.lowercased()
            guard recipients.allSatisfy({ $0.address.lowercased() == sender }) else {
                return .refused(reason: "Disposition-Notification-To differs from Return-Path <\(returnPath)> (RFC 8098 section 2.1)")
            }
        }
        // RFC 8098 section 2.2: an option marked `required` that we do not implement (a signed
        // receipt, say) means no MDN rather than one the sender cannot use.
        if let options = header["Disposition-Notification-Options"] {
            let required = options.split(separator: ";").compactMap { option -> String? in
                let pair = option.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[1].trimmingCharacters(in: .whitespaces).lowercased().hasPrefix("required") else { return nil }
                return pair[0].trimmingCharacters(in: .whitespaces)
            }
            if !required.isEmpty {
                return .refused(reason: "Disposition-Notification-Options requires \(required.joined(separator: ", ")), which Gatepost does not implement")
            }
        }
        let mailbox = site.pop3.address.flatMap { try? MailAddress($0) } ?? (try? MailAddress(site.pop3.user))
        return .send(to: recipients, from: from, finalRecipient: mailbox ?? from)
    }
}

/// Writes the MDN for a received transfer into the spool's `out/` and describes its outbox entry.
public enum AcknowledgmentWriter {
    /// The Reporting-UA: our mail domain, not this machine's (internal) host name.
    static func reportingUA(for from: MailAddress) -> String {
        "\(from.address.split(separator: "@").last.map(String.init) ?? "gatepost.invalid"); Gatepost"
    }

    /// The header fields of the original worth returning, made safe.
    static let returnedFields = ["From", "To", "Subject", "Date", "Message-ID"]

    public static func write(
        for record: TransferRecord, header: MessageHeader, to recipients: [MailAddress], from: MailAddress,
        finalRecipient: MailAddress? = nil, spool: Spool, now: Date = Date()
    ) throws -> OutboxEntry {
        let id = TransferRecord.newID(at: now)
        let domain = from.address.split(separator: "@").last.map(String.init) ?? "gatepost.invalid"
        let messageID = "\(id).mdn@\(domain)"
        let failed = record.fileName == TransferRecord.recoverFileName
        let subject = header["Subject"].map(EncodedWords.decode) ?? ""
        let human = failed
            ? "Your message \(record.messageId.map { "<\($0)>" } ?? "") was received by \(from) but could not be processed as a file transfer; it is kept for an operator: \(record.error ?? "unknown reason")."
            : "Your message \(record.messageId.map { "<\($0)>" } ?? "") was received and processed by \(from)"
                + (record.fileName.map { " (\($0), \(record.size) bytes, SHA-256 \(record.sha256 ?? "-"))" } ?? "") + "."
        let returned: MessageComposer.Fields = returnedFields.compactMap { name in
            header[name].map { (name, OutgoingHeader.unstructured($0)) }
        }
        let original = MessageComposer.headerBytes(returned)
        let notification = DispositionNotification(
            reportingUA: reportingUA(for: from),
            originalRecipient: header["Original-Recipient"],
            finalRecipient: finalRecipient ?? from,
            originalMessageID: record.messageId,
            type: .processed,
            isError: failed,
            errorText: failed ? record.error : nil,
            humanReadableText: human + "\r\n",
            originalHeader: original.isEmpty ? nil : original
        )
        var fields: MessageComposer.Fields = [
            ("From", from.address),
            ("To", recipients.map(\.address).joined(separator: ", ")),
            ("Subject", OutgoingHeader.unstructured("Disposition notification: \(subject)")),
            ("Date", OutgoingHeader.date(now)),
            ("Message-ID", "<\(messageID)>"),
            // RFC 3834: an automatic response; other systems must not answer it automatically.
            ("Auto-Submitted", "auto-replied"),
        ]
        if let original = record.messageId.flatMap(DispositionNotification.messageID) {
            fields.append(("In-Reply-To", original))
            fields.append(("References", original))
        }
        let bytes = notification.compose(header: fields)
        let written = try spool.writeOutgoing(name: id + ".eml") { write in
            try bytes.withUnsafeBytes { try write($0) }
        }
        // The null envelope sender (RFC 8098 section 3, as RFC 3798 had it): nothing, not even a
        // bounce, answers an MDN.
        return OutboxEntry(
            id: id, kind: .acknowledgment, transferId: record.id, site: record.site, mailFrom: "",
            recipients: recipients.map(\.address), path: written.path, messageId: messageID, nextAttempt: now, createdAt: now
        )
    }
}
