import Foundation
import GatepostCatalog
import GatepostMIME

/// Whether a received message gets an RFC 8098 MDN, and to whom.
public enum AcknowledgmentDecision: Sendable, Equatable {
    case notRequested
    case send(to: [MailAddress], from: MailAddress)
    /// Requested, but not sent automatically; `reason` goes to the log and the record's state
    /// says `failed`.
    case refused(reason: String)
}

public enum AcknowledgmentPolicy {
    /// RFC 8098 section 2.1 and the site's settings, as one pure function.
    public static func decide(record: TransferRecord, header: MessageHeader, site: RemoteSite) -> AcknowledgmentDecision {
        guard let requested = header["Disposition-Notification-To"] else { return .notRequested }
        // Never acknowledge a report (no MDN loops), nor a message already acknowledged once.
        if record.type == .eerp { return .notRequested }
        if record.fileName == TransferRecord.duplicateFileName { return .notRequested }
        guard let smtp = site.smtp, smtp.acknowledgments else {
            return .refused(reason: "the site has no smtp: settings (or acknowledgments: false)")
        }
        guard let fromText = smtp.from, let from = try? MailAddress(fromText) else {
            return .refused(reason: "the site's smtp: settings have no from: address")
        }
        let recipients = MailAddress.list(requested)
        guard !recipients.isEmpty else { return .refused(reason: "Disposition-Notification-To holds no valid address") }
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
        return .send(to: recipients, from: from)
    }
}

/// Writes the MDN for a received transfer into the spool's `out/` and describes its outbox entry.
public enum AcknowledgmentWriter {
    public static let reportingUA: String = {
        let host = ProcessInfo.processInfo.hostName
        return "\(host.isEmpty ? "localhost" : host); Gatepost"
    }()

    /// The header fields of the original worth returning, made safe.
    static let returnedFields = ["From", "To", "Subject", "Date", "Message-ID"]

    public static func write(
        for record: TransferRecord, header: MessageHeader, to recipients: [MailAddress], from: MailAddress, spool: Spool,
        now: Date = Date()
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
        var original: [UInt8] = []
        for name in returnedFields {
            if let value = header[name] {
                original += Array("\(name): \(OutgoingHeader.unstructured(value))\r\n".utf8)
            }
        }
        let notification = DispositionNotification(
            reportingUA: reportingUA,
            originalRecipient: header["Original-Recipient"],
            finalRecipient: from,
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
        return OutboxEntry(
            id: id, kind: .acknowledgment, transferId: record.id, site: record.site, mailFrom: from.address,
            recipients: recipients.map(\.address), path: written.path, messageId: messageID, nextAttempt: now, createdAt: now
        )
    }
}
