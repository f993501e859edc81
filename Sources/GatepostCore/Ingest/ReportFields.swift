import GatepostCatalog
import GatepostMIME

/// The fields Gatepost needs from a report's machine-readable part: RFC 8098
/// (message/disposition-notification) or RFC 3464 (message/delivery-status).
public struct ReportFields: Sendable, Hashable {
    public var originalMessageID: String?
    /// A DSN's `Original-Envelope-Id`: the ENVID the sender gave in MAIL FROM (RFC 3461).
    public var originalEnvelopeID: String?
    public var finalRecipient: String?
    /// `Disposition` of an MDN, or the first recipient's `Action` (with `Status`) of a DSN.
    public var disposition: String?
    /// Every recipient the report speaks of, in order.
    public var recipients: [RecipientReport] = []
    /// A signed receipt's `Received-Content-MIC` (RFC 3335): "<base64>, <algorithm>".
    public var receivedContentMIC: String?

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
            if fields.originalEnvelopeID == nil, let id = header["Original-Envelope-Id"] {
                fields.originalEnvelopeID = Self.xtextDecoded(id.trimmingASCIIWhitespace())
            }
            if fields.finalRecipient == nil, let recipient = header["Final-Recipient"] {
                fields.finalRecipient = Self.address(recipient)
            }
            if fields.receivedContentMIC == nil, let mic = header["Received-Content-MIC"] {
                fields.receivedContentMIC = mic.trimmingASCIIWhitespace()
            }
            if fields.disposition == nil, let disposition = header["Disposition"] {
                fields.disposition = disposition
            }
            if fields.disposition == nil, let action = header["Action"] {
                fields.disposition = header["Status"].map { "\(action) \($0)" } ?? action
            }
            if let recipient = header["Final-Recipient"] {
                // The address the sender named (ORCPT) is the one to match with what it sent;
                // the final one may be an alias's target.
                let original = header["Original-Recipient"].map(Self.address).map(Self.xtextDecoded)
                fields.recipients.append(RecipientReport(
                    recipient: original ?? Self.address(recipient),
                    action: header["Action"].map { $0.trimmingASCIIWhitespace().asciiLowercased() },
                    status: header["Status"].map { $0.split(separator: " ").first.map(String.init) ?? $0 },
                    disposition: header["Disposition"]
                ))
            }
        }
        return fields
    }

    /// The Message-ID in what a report returns of the original message (its `text/rfc822-headers`
    /// or `message/rfc822` part): the header only, up to its first blank line.
    public static func returnedMessageID(_ bytes: [UInt8]) -> String? {
        var end = bytes.endIndex
        var lineStart = 0
        for index in bytes.indices where bytes[index] == 0x0A {
            let line = bytes[lineStart..<index]
            if line.isEmpty || line == [0x0D] {
                end = lineStart
                break
            }
            lineStart = index + 1
        }
        return MessageHeader.parse(Array(bytes[..<end]))["Message-ID"].flatMap(MessageHeader.stripAngles)
    }

    /// RFC 3461 xtext: `+XX` is the byte XX in hexadecimal; anything else stands for itself. A
    /// malformed `+` is kept as it is.
    static func xtextDecoded(_ text: String) -> String {
        guard text.contains("+") else { return text }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "+"), utf8.count >= 2,
               let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `rfc822; user@example.com` -> `user@example.com`.
    static func address(_ field: String) -> String {
        let value = field.split(separator: ";", maxSplits: 1).last.map(String.init) ?? field
        return value.trimmingCharacters(in: .whitespaces)
    }
}

import Foundation
