import Foundation

/// One header field, unfolded. `value` keeps encoded words as sent; ``decodedValue`` decodes them.
public struct HeaderField: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    /// The value with RFC 2047 encoded words decoded, for display fields such as Subject.
    public var decodedValue: String { EncodedWords.decode(value) }
}

/// A parsed header block: the top-level message header or one MIME part's header.
public struct MessageHeader: Sendable, Hashable {
    public var fields: [HeaderField]

    public init(fields: [HeaderField] = []) {
        self.fields = fields
    }

    /// The first field named `name` (case-insensitive), as sent.
    public subscript(_ name: String) -> String? {
        fields.first { $0.name.equalsIgnoringASCIICase(name) }?.value
    }

    public func all(_ name: String) -> [String] {
        fields.filter { $0.name.equalsIgnoringASCIICase(name) }.map(\.value)
    }

    /// Content-Type, defaulting to text/plain as RFC 2045 section 5.2 says (or message/rfc822
    /// inside multipart/digest, which the caller passes as `default`).
    public func contentType(default defaultType: ContentType = .textPlain) -> ContentType {
        guard let raw = self["Content-Type"], let parsed = ContentType(parsing: raw) else { return defaultType }
        return parsed
    }

    public var contentDisposition: ContentDisposition? {
        self["Content-Disposition"].flatMap(ContentDisposition.init(parsing:))
    }

    public var transferEncoding: TransferEncoding {
        TransferEncoding(headerValue: self["Content-Transfer-Encoding"])
    }

    /// Message-ID without angle brackets or surrounding space, if present and non-empty.
    public var messageID: String? {
        self["Message-ID"].flatMap(MessageHeader.stripAngles)
    }

    /// `<id@host>` -> `id@host`; nil when nothing is left.
    public static func stripAngles(_ raw: String) -> String? {
        // ASCII trimming: Foundation's Unicode trimming was a few percent of a poll's CPU, and a
        // message id is ASCII (RFC 5322 msg-id).
        var text = raw.trimmingASCIIWhitespace()
        if text.hasPrefix("<"), let close = text.firstIndex(of: ">") {
            text = String(text[text.index(after: text.startIndex)..<close]).trimmingASCIIWhitespace()
        }
        return text.isEmpty ? nil : text
    }

    /// Parses a raw header block (without the blank line that ends it). Lines may end in CRLF or
    /// bare LF; continuation lines (starting with space or tab) are unfolded; a line without a
    /// colon that is not a continuation is skipped rather than failing the whole message, since
    /// real mailers emit such lines (mbox "From " lines among them).
    public static func parse(_ block: [UInt8]) -> MessageHeader {
        var fields: [HeaderField] = []
        var currentName: String?
        var currentValue: [UInt8] = []

        func flush() {
            if let name = currentName {
                var start = currentValue.startIndex
                var end = currentValue.endIndex
                while start < end, ASCII.isWhitespace(currentValue[start]) { start += 1 }
                while end > start, ASCII.isWhitespace(currentValue[end - 1]) { end -= 1 }
                let value = Charset.decode(currentValue[start..<end], charset: nil)
                fields.append(HeaderField(name: name, value: value))
            }
            currentName = nil
            currentValue.removeAll(keepingCapacity: true)
        }

        var lineStart = 0
        while lineStart < block.count {
            var lineEnd = lineStart
            while lineEnd < block.count, block[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            var contentEnd = lineEnd
            if contentEnd > lineStart, block[contentEnd - 1] == UInt8(ascii: "\r") { contentEnd -= 1 }
            let line = block[lineStart..<contentEnd]
            lineStart = lineEnd + 1

            guard let first = line.first else { continue }
            if first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
                if currentName != nil {
                    // Unfolding removes the CRLF, keeps the whitespace (RFC 5322 section 2.2.3).
                    currentValue.append(contentsOf: line)
                }
                continue
            }
            flush()
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let nameBytes = line[line.startIndex..<colon]
            let name = String(decoding: nameBytes, as: UTF8.self).trimmingASCIIWhitespace()
            guard !name.isEmpty, !name.contains(" ") else { continue }
            currentName = name
            currentValue.append(contentsOf: line[(colon + 1)...])
        }
        flush()
        return MessageHeader(fields: fields)
    }
}
