import Foundation
import GatepostCatalog
import GatepostMIME
import GatepostSMIME

/// Whether a received message gets an RFC 8098 MDN, and to whom.
public enum AcknowledgmentDecision: Sendable, Equatable {
    case notRequested
    /// `finalRecipient` is the site's mailbox (``RemoteSite/POP3/address``, else its user name
    /// when that is an address, else `from`): what the site knows, never a header the sender wrote.
    case send(to: [MailAddress], from: MailAddress, finalRecipient: MailAddress, receipt: ReceiptForm = .unsigned)
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
        let mailbox = site.pop3.address.flatMap { try? MailAddress($0) } ?? (try? MailAddress(site.pop3.user))
        return .send(to: recipients, from: from, finalRecipient: mailbox ?? from, receipt: receiptForm(header: header, site: site))
    }

    /// A signed receipt when the sender asks for one we can give (RFC 3335: pkcs7-signature,
    /// a digest we compute, and the site has our key); an MDN saying which required option
    /// cannot be met (processed/error, RFC 8098 section 3.2.6.3) rather than silence; else
    /// an unsigned MDN (an optional option may be ignored).
    public static func receiptForm(header: MessageHeader, site: RemoteSite) -> ReceiptForm {
        let options = DispositionNotificationOptions.parse(header["Disposition-Notification-Options"] ?? "")
        var unmet: [String] = []
        for option in options where option.required && !DispositionNotificationOptions.signedReceiptOptions.contains(option.name) {
            unmet.append("\(option.name) (not implemented)")
        }
        var form = ReceiptForm.unsigned
        let protocolOption = options.first { $0.name == "signed-receipt-protocol" }
        let micalgOption = options.first { $0.name == "signed-receipt-micalg" }
        if let protocolOption {
            let algorithm = micalgOption.flatMap { option in
                option.values.lazy.compactMap { name in MICAlgorithm(name: name).map { ($0, name.lowercased()) } }.first
            } ?? (micalgOption == nil ? (MICAlgorithm.sha256, "sha-256") : nil)
            if !protocolOption.values.contains(where: { $0.lowercased() == "pkcs7-signature" }) {
                if protocolOption.required { unmet.append("signed-receipt-protocol \(protocolOption.values.joined(separator: ", ")) (Gatepost signs with pkcs7-signature)") }
            } else if site.smime?.key == nil {
                if protocolOption.required { unmet.append("signed-receipt-protocol (the site has no smime key to sign with)") }
            } else if let algorithm {
                form = .signed(algorithm.0, name: algorithm.1)
            } else if protocolOption.required || micalgOption?.required == true {
                unmet.append("signed-receipt-micalg \(micalgOption?.values.joined(separator: ", ") ?? "") (Gatepost computes \(MICAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
        }
        return unmet.isEmpty ? form : .cannotMeet("required options not supported: " + unmet.joined(separator: "; "))
    }

    /// The digest the sender asks a signed receipt's MIC for, when a signed receipt will be given:
    /// computed over the content while it is received.
    public static func receiptMIC(header: MessageHeader, site: RemoteSite) -> (algorithm: MICAlgorithm, name: String)? {
        guard header["Disposition-Notification-To"] != nil, case .signed(let algorithm, let name) = receiptForm(header: header, site: site) else { return nil }
        return (algorithm, name)
    }
}

/// What kind of MDN answers a message, by its Disposition-Notification-Options.
public enum ReceiptForm: Sendable, Equatable {
    var unmetReason: String? {
        if case .cannotMeet(let reason) = self { return reason }
        return nil
    }

    case unsigned
    /// multipart/signed with a Received-Content-MIC of this digest (named as the sender did).
    case signed(MICAlgorithm, name: String)
    /// An MDN with an error disposition saying what cannot be met.
    case cannotMeet(String)
}

/// RFC 8098 section 2.2 (and RFC 3335 for signed receipts): `name=importance, value, value; ...`.
public enum DispositionNotificationOptions {
    public struct Option: Sendable, Equatable {
        public var name: String
        public var required: Bool
        public var values: [String]
    }

    static let signedReceiptOptions: Set<String> = ["signed-receipt-protocol", "signed-receipt-micalg"]

    public static func parse(_ field: String) -> [Option] {
        field.split(separator: ";").compactMap { item in
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { return nil }
            let name = pair[0].trimmingCharacters(in: .whitespaces).lowercased()
            let values = pair[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let importance = values.first?.lowercased(), !name.isEmpty else { return nil }
            return Option(name: name, required: importance == "required", values: Array(values.dropFirst()).filter { !$0.isEmpty })
        }
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
        finalRecipient: MailAddress? = nil, receipt: ReceiptForm = .unsigned, identity: SMIMEIdentity? = nil,
        spool: Spool, now: Date = Date()
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
        var errors: [String] = []
        if failed { errors.append(record.error ?? "kept for an operator") }
        if case .cannotMeet(let reason) = receipt { errors.append(reason) }
        var notification = DispositionNotification(
            reportingUA: reportingUA(for: from),
            originalRecipient: header["Original-Recipient"],
            finalRecipient: finalRecipient ?? from,
            originalMessageID: record.messageId,
            type: .processed,
            isError: !errors.isEmpty,
            errorText: errors.isEmpty ? nil : errors.joined(separator: "; "),
            humanReadableText: human + (receipt.unmetReason.map { "\r\n\r\nThe receipt you asked for cannot be given: \($0)." } ?? "") + "\r\n",
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
        let bytes: [UInt8]
        if case .signed(let algorithm, let name) = receipt, let identity {
            // A signed receipt (RFC 3335): the report, with the MIC of what was received, signed.
            notification.receivedContentMIC = record.security?.mic
            let entity = notification.entity()
            let signature = try CMS.signDetached(bytes: entity, identity: identity, digest: algorithm.openSSLName)
            fields.append(("MIME-Version", "1.0"))
            let signed = MessageComposer.signedEntity(signature: signature, micalg: name)
            bytes = MessageComposer.headerBytes(fields) + signed.head + entity + signed.tail
        } else {
            bytes = notification.compose(header: fields)
        }
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
