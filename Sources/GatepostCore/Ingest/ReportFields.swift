import GatepostCatalog
import GatepostMIME

/// The fields Gatepost needs from a report's machine-readable part: RFC 8098
/// (message/disposition-notification) or RFC 3464 (message/delivery-status).
public struct ReportFields: Sendable, Hashable {
    public var originalMessageID: String?
    public var finalRecipient: String?
    /// `Disposition` of an MDN, or the first recipient's `Action` (with `Status`) of a DSN.
    public var disposition: String?
    /// Every recipient the report speaks of, in order.
    public var recipients: [RecipientReport] = []

    /// `text` is the report part: header-like blocks separated by blank lines.
    public static func parse(_ bytes: [UInt8]) -> ReportFields {
        // Each blank-line separated block is a header block; RFC 3464 puts per-message fields
        // first and per-recipient fields after.
        var blocks: [[UInt8]] = [[]]
        var lineStart = 0
        for index in bytes.indices where bytes[index] == 0x0A {
            let line = bytes[lineStart...index]
            let isBlank = line.allSatisfy { $0 == 0x0D || $0 == 0x0A || $0 == 0x20 || $0 == 0x09 }
            if isBlank {
                if !(blocks.last?.isEmpty ?? true) { blocks.append([]) }
            } else {
                blocks[blocks.count - 1].append(contentsOf: line)
            }
            lineStart = index + 1
        }
        if lineStart < bytes.count { blocks[blocks.count - 1].append(contentsOf: bytes[lineStart...]) }
        let headers = blocks.filter { !$0.isEmpty }.map(MessageHeader.parse)

        var fields = ReportFields()
        for header in headers {
            if fields.originalMessageID == nil, let id = header["Original-Message-ID"] {
                fields.originalMessageID = MessageHeader.stripAngles(id)
            }
            if fields.finalRecipient == nil, let recipient = header["Final-Recipient"] {
                fields.finalRecipient = Self.address(recipient)
            }
            if fields.disposition == nil, let disposition = header["Disposition"] {
                fields.disposition = disposition
            }
            if fields.disposition == nil, let action = header["Action"] {
                fields.disposition = header["Status"].map { "\(action) \($0)" } ?? action
            }
            if let recipient = header["Final-Recipient"] {
                fields.recipients.append(RecipientReport(
                    recipient: Self.address(recipient),
                    action: header["Action"].map { $0.trimmingASCIIWhitespace().asciiLowercased() },
                    status: header["Status"].map { $0.split(separator: " ").first.map(String.init) ?? $0 },
                    disposition: header["Disposition"]
                ))
            }
        }
        return fields
    }

    /// `rfc822; user@example.com` -> `user@example.com`.
    static func address(_ field: String) -> String {
        let value = field.split(separator: ";", maxSplits: 1).last.map(String.init) ?? field
        return value.trimmingCharacters(in: .whitespaces)
    }
}

import Foundation
