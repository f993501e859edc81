import Foundation

/// Why an outgoing message could not be written. Nothing was sent.
public enum MessageCompositionError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidAddress(String)
    case unreadableFile(String)

    public var description: String {
        switch self {
        case .invalidAddress(let text):
            "`\(MailAddress.printable(text))` is not a usable mail address (expected local@domain, no spaces or line breaks)"
        case .unreadableFile(let path): "cannot read \(path)"
        }
    }
}

/// An RFC 5321 mailbox (`local@domain`) fit for an envelope and a header: ASCII, no white space,
/// no line breaks, no characters that would change a header's structure. Whatever a received
/// message said, only a validated address reaches an outgoing message.
public struct MailAddress: Sendable, Hashable, CustomStringConvertible {
    public let address: String

    public init(_ text: String) throws(MessageCompositionError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard Self.isValid(trimmed) else { throw .invalidAddress(text) }
        address = trimmed
    }

    /// The addresses of an address-list header (`Name <a@b>, c@d`); entries that are not valid
    /// addresses are left out.
    public static func list(_ field: String) -> [MailAddress] {
        field.split(separator: ",").compactMap { item -> MailAddress? in
            let text = String(item)
            if let open = text.lastIndex(of: "<"), let close = text.lastIndex(of: ">"), open < close {
                return try? MailAddress(String(text[text.index(after: open)..<close]))
            }
            return try? MailAddress(text)
        }
    }

    public var description: String { address }

    static func isValid(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (3...254).contains(bytes.count) else { return false }
        guard let at = bytes.lastIndex(of: UInt8(ascii: "@")), at > 0, at < bytes.count - 1, at <= 64 else { return false }
        // atext of RFC 5322 plus "." (dot-atom); quoted local parts are not accepted here.
        let localAllowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~.".utf8)
        let domainAllowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.[]:".utf8)
        let local = bytes[..<at]
        let domain = bytes[(at + 1)...]
        guard local.allSatisfy(localAllowed.contains), domain.allSatisfy(domainAllowed.contains) else { return false }
        guard local.first != UInt8(ascii: "."), local.last != UInt8(ascii: "."), !text.contains("..") else { return false }
        return domain.first != UInt8(ascii: ".") && domain.last != UInt8(ascii: ".")
    }

    /// For error messages: control characters shown, length capped.
    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.prefix(100).map { $0.properties.generalCategory == .control ? "?" : Character($0) })
    }
}

/// Header field values for outgoing messages.
public enum OutgoingHeader {
    /// Unstructured text (Subject, a human-readable line) made safe for a header: control
    /// characters (CR and LF above all, so nothing received can add a header) become spaces,
    /// non-ASCII is RFC 2047 encoded (UTF-8, base64), and long values are folded.
    public static func unstructured(_ text: String) -> String {
        let cleaned = String(text.unicodeScalars.map { scalar -> Character in
            scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}" ? " " : Character(scalar)
        })
        let collapsed = cleaned.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        // Plain ASCII folds at spaces; a word too long for a line goes the encoded way, which
        // can be cut anywhere (RFC 5322 caps a line at 998 characters).
        if collapsed.utf8.allSatisfy({ $0 < 0x80 }), !collapsed.split(separator: " ").contains(where: { $0.utf8.count > 76 }) {
            return fold(collapsed)
        }
        // Encoded words of at most 75 characters: 45 bytes of UTF-8 each, cut on scalar boundaries.
        var words: [String] = []
        var chunk: [UInt8] = []
        for scalar in collapsed.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if chunk.count + bytes.count > 45 {
                words.append("=?utf-8?b?" + Data(chunk).base64EncodedString() + "?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?utf-8?b?" + Data(chunk).base64EncodedString() + "?=") }
        return words.joined(separator: "\r\n ")
    }

    /// Folds at spaces so that lines stay under 78 characters where possible.
    static func fold(_ text: String) -> String {
        guard text.utf8.count > 76 else { return text }
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            if !line.isEmpty, line.utf8.count + 1 + word.utf8.count > 76 {
                lines.append(line)
                line = String(word)
            } else {
                line = line.isEmpty ? String(word) : line + " " + word
            }
        }
        lines.append(line)
        return lines.joined(separator: "\r\n ")
    }

    /// A `filename` parameter: plain when it is a safe ASCII token or quoted string, RFC 2231
    /// (`filename*=utf-8''...`) otherwise.
    public static func fileNameParameter(_ name: String, parameter: String = "filename") -> String {
        let isPlain = name.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
        if isPlain, name.utf8.count <= 60 {
            return "\(parameter)=\"\(name)\""
        }
        let unreserved = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~".utf8)
        let encoded = name.utf8.map { byte in
            unreserved.contains(byte) ? String(UnicodeScalar(byte)) : String(format: "%%%02X", byte)
        }.joined()
        return "\(parameter)*=utf-8''\(encoded)"
    }

    /// RFC 5322 date-time, as `Date:` wants it.
    public static func date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }
}

/// Writes outgoing messages as a stream of bytes to `write`, so that a large attachment goes
/// from its file through the base64 encoder to the spool in small pieces.
public enum MessageComposer {
    /// A header: fields in order; values must already be safe (see ``OutgoingHeader``).
    public typealias Fields = [(name: String, value: String)]

    /// The fields as header lines, each folded (at white space) to at most 78 characters where
    /// it can be: the field name counts, and values folded before keep their folds.
    public static func headerBytes(_ fields: Fields) -> [UInt8] {
        var out: [UInt8] = []
        for (name, value) in fields {
            out += Array((fold("\(name): \(value)") + "\r\n").utf8)
        }
        return out
    }

    /// `line` (a field, perhaps already folded) with every physical line past 78 characters
    /// broken at its last space before column 78 (or the first one after, for a long word).
    static func fold(_ line: String, width: Int = 78) -> String {
        var out: [String] = []
        for physical in line.components(separatedBy: "\r\n") {
            var rest = Substring(physical)
            while rest.utf8.count > width {
                let bytes = Array(rest.utf8)
                // Never at the leading white space of a continuation line.
                let start = bytes.firstIndex { $0 != 0x20 && $0 != 0x09 } ?? 0
                var cut = bytes[..<(width + 1)].lastIndex { $0 == 0x20 || $0 == 0x09 }
                if let found = cut, found <= start { cut = nil }
                if cut == nil { cut = bytes[(width + 1)...].firstIndex { $0 == 0x20 || $0 == 0x09 } }
                guard let at = cut else { break }
                out.append(String(decoding: bytes[..<at], as: UTF8.self))
                rest = Substring(String(decoding: bytes[at...], as: UTF8.self))
            }
            out.append(String(rest))
        }
        return out.joined(separator: "\r\n")
    }

    /// A text/plain message in UTF-8 (base64, so any text and any line length goes), with
    /// `header` before it.
    public static func textMessage(header: Fields, text: String) -> [UInt8] {
        var head = header
        head.append(("MIME-Version", "1.0"))
        head.append(("Content-Type", "text/plain; charset=utf-8"))
        head.append(("Content-Transfer-Encoding", "base64"))
        return headerBytes(head) + Array("\r\n".utf8) + base64Lines(Array(text.utf8))
    }

    /// A multipart/signed entity (RFC 1847, RFC 5751 section 3.5) around a signed MIME entity
    /// (the bytes that were signed, which go between `head` and `tail` unchanged) and its
    /// detached signature, base64. `micalg` names the digest.
    public static func signedEntity(signature: [UInt8], micalg: String) -> (head: [UInt8], tail: [UInt8]) {
        let boundary = makeBoundary()
        var head = Array("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=\(micalg);\r\n boundary=\"\(boundary)\"\r\n\r\n".utf8)
        head += Array("This is an S/MIME signed message.\r\n--\(boundary)\r\n".utf8)
        var tail = Array("\r\n--\(boundary)\r\n".utf8)
        tail += Array("Content-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n".utf8)
        tail += Array("Content-Disposition: attachment; filename=smime.p7s\r\n\r\n".utf8)
        tail += base64Lines(signature)
        tail += Array("--\(boundary)--\r\n".utf8)
        return (head, tail)
    }

    /// The header of an S/MIME encrypted entity (RFC 5751 section 3.3); its body is the CMS
    /// structure, base64 (``writeBase64(file:write:)``).
    public static func encryptedEntityHeader(smimeType: String) -> [UInt8] {
        Array(("Content-Type: application/pkcs7-mime; smime-type=\(smimeType); name=smime.p7m\r\n"
            + "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n").utf8)
    }

    /// A file's bytes as they are.
    public static func writeFile(_ path: String, write: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw MessageCompositionError.unreadableFile(path) }
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: 256 << 10), !chunk.isEmpty {
            try chunk.withUnsafeBytes(write)
        }
    }

    /// A file's bytes in base64, 76-character lines.
    public static func writeBase64(file path: String, write: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw MessageCompositionError.unreadableFile(path) }
        defer { try? handle.close() }
        // 57 bytes make one 76-character line.
        while let chunk = try handle.read(upToCount: 57 * 1149), !chunk.isEmpty {
            try base64Lines(Array(chunk)).withUnsafeBytes(write)
        }
    }

    /// A fresh boundary that cannot occur in base64 or quoted-printable text ("=_" and ".").
    public static func makeBoundary() -> String {
        "=_gatepost." + UUID().uuidString.lowercased()
    }

    /// multipart/mixed: a UTF-8 text part, then the file at `path` as a base64 attachment.
    /// `fileData` sees the file's bytes as they are read, so the caller can hash exactly what
    /// was sent.
    public static func writeFileMessage(
        header: Fields, text: String, filePath path: String, fileName: String, contentType: String = "application/octet-stream",
        fileData: (Data) -> Void = { _ in }, write: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw MessageCompositionError.unreadableFile(path) }
        defer { try? handle.close() }
        let boundary = makeBoundary()
        var head = header
        head.append(("MIME-Version", "1.0"))
        head.append(("Content-Type", "multipart/mixed; boundary=\"\(boundary)\""))
        var out = headerBytes(head) + Array("\r\n".utf8)
        out += Array("This is a MIME message with one attached file.\r\n--\(boundary)\r\n".utf8)
        out += Array("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n".utf8)
        out += base64Lines(Array(text.utf8))
        out += Array("--\(boundary)\r\n".utf8)
        out += Array("Content-Type: \(contentType); \(OutgoingHeader.fileNameParameter(fileName, parameter: "name"))\r\n".utf8)
        out += Array("Content-Disposition: attachment; \(OutgoingHeader.fileNameParameter(fileName))\r\n".utf8)
        out += Array("Content-Transfer-Encoding: base64\r\n\r\n".utf8)
        try out.withUnsafeBytes(write)
        // 57 bytes make one 76-character line; 57 * 1149 is about 64 KiB per read.
        let readSize = 57 * 1149
        while true {
            let data = handle.readData(ofLength: readSize)
            if data.isEmpty { break }
            fileData(data)
            try base64Lines(Array(data)).withUnsafeBytes(write)
        }
        try Array("--\(boundary)--\r\n".utf8).withUnsafeBytes(write)
    }

    /// base64 in 76-character lines, each ended by CRLF (RFC 2045 section 6.8).
    static func base64Lines(_ bytes: [UInt8]) -> [UInt8] {
        guard !bytes.isEmpty else { return [] }
        let encoded = Data(bytes).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        return Array(encoded.utf8) + [0x0D, 0x0A]
    }
}

/// An RFC 8098 message disposition notification: multipart/report with a human-readable part,
/// the machine-readable message/disposition-notification part, and the original's header.
public struct DispositionNotification: Sendable {
    public enum DispositionType: String, Sendable {
        case processed, displayed, deleted, dispatched
    }

    public var reportingUA: String
    public var originalRecipient: String?
    public var finalRecipient: MailAddress
    public var originalMessageID: String?
    public var type: DispositionType
    /// RFC 8098 section 3.2.6.3: `error` when processing failed.
    public var isError: Bool
    /// Said in the Error field and the human-readable part when `isError`.
    public var errorText: String?
    public var humanReadableText: String
    /// The original message's header block, returned as text/rfc822-headers; nil to leave it out.
    public var originalHeader: [UInt8]?
    /// A signed receipt's `Received-Content-MIC` (RFC 3335): "<base64>, <algorithm>".
    public var receivedContentMIC: String?

    public init(
        reportingUA: String, originalRecipient: String?, finalRecipient: MailAddress, originalMessageID: String?,
        type: DispositionType = .processed, isError: Bool = false, errorText: String? = nil,
        humanReadableText: String, originalHeader: [UInt8]?, receivedContentMIC: String? = nil
    ) {
        self.reportingUA = reportingUA
        self.originalRecipient = originalRecipient
        self.finalRecipient = finalRecipient
        self.originalMessageID = originalMessageID
        self.type = type
        self.isError = isError
        self.errorText = errorText
        self.humanReadableText = humanReadableText
        self.originalHeader = originalHeader
        self.receivedContentMIC = receivedContentMIC
    }

    /// `automatic-action/MDN-sent-automatically; processed` (or `processed/error`).
    public var disposition: String {
        "automatic-action/MDN-sent-automatically; \(type.rawValue)\(isError ? "/error" : "")"
    }

    /// The whole message, header included. Every field from the original passes through
    /// ``OutgoingHeader`` or ``MailAddress``; nothing received reaches a header line raw.
    public func compose(header: MessageComposer.Fields) -> [UInt8] {
        var head = header
        head.append(("MIME-Version", "1.0"))
        return MessageComposer.headerBytes(head) + entity()
    }

    /// The multipart/report as a MIME entity (its Content-Type field, a blank line, its body):
    /// what a signed receipt signs.
    public func entity() -> [UInt8] {
        let boundary = MessageComposer.makeBoundary()
        var out = Array("Content-Type: multipart/report; report-type=disposition-notification;\r\n boundary=\"\(boundary)\"\r\n\r\n".utf8)
        out += Array("This is an RFC 8098 message disposition notification.\r\n".utf8)
        out += Array("--\(boundary)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n".utf8)
        out += MessageComposer.base64Lines(Array(humanReadableText.utf8))
        out += Array("--\(boundary)\r\nContent-Type: message/disposition-notification\r\n\r\n".utf8)
        var fields: MessageComposer.Fields = [("Reporting-UA", OutgoingHeader.unstructured(reportingUA))]
        if let originalRecipient, let address = try? MailAddress(originalRecipient.split(separator: ";").last.map(String.init) ?? originalRecipient) {
            fields.append(("Original-Recipient", "rfc822; \(address)"))
        }
        fields.append(("Final-Recipient", "rfc822; \(finalRecipient)"))
        if let originalMessageID, let id = Self.messageID(originalMessageID) {
            fields.append(("Original-Message-ID", id))
        }
        fields.append(("Disposition", disposition))
        if isError, let errorText {
            fields.append(("Error", OutgoingHeader.unstructured(errorText)))
        }
        if let receivedContentMIC {
            fields.append(("Received-Content-MIC", OutgoingHeader.unstructured(receivedContentMIC)))
        }
        out += MessageComposer.headerBytes(fields)
        if let originalHeader {
            out += Array("\r\n--\(boundary)\r\nContent-Type: text/rfc822-headers\r\n\r\n".utf8)
            out += Self.normalizedLines(originalHeader)
        }
        out += Array("\r\n--\(boundary)--\r\n".utf8)
        return out
    }

    /// `<id>` when `raw` is a usable msg-id (no white space or control characters), else nil.
    public static func messageID(_ raw: String) -> String? {
        guard let bare = MessageHeader.stripAngles(raw), bare.utf8.count <= 250,
              bare.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">") })
        else { return nil }
        return "<\(bare)>"
    }

    /// CRLF line endings throughout, and no blank line (which would end the part's header early).
    static func normalizedLines(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: true) {
            var content = Array(line)
            if content.last == 0x0D { content.removeLast() }
            guard !content.isEmpty else { continue }
            out += content + [0x0D, 0x0A]
        }
        return out
    }
}
