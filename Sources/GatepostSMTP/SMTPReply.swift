import NIOCore

/// An RFC 3463 enhanced status code, e.g. `5.1.1` (bad destination mailbox address).
public struct SMTPEnhancedStatusCode: Sendable, Hashable, CustomStringConvertible {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    public var statusClass: Int
    public var subject: Int
    public var detail: Int

    public init(statusClass: Int, subject: Int, detail: Int) {
        self.statusClass = statusClass
        self.subject = subject
        self.detail = detail
    }

    public var description: String { "\(statusClass).\(subject).\(detail)" }

    /// Parses `class.subject.detail` at the start of `text`, followed by a space or the end.
    /// RFC 3463: class is 2, 4 or 5; subject and detail are 1 to 3 digits.
    static func parse(prefixOf text: Substring) -> (code: SMTPEnhancedStatusCode, rest: Substring)? {
        var fields: [Int] = []
        var index = text.startIndex
        var digits = 0
        var value = 0
        while index < text.endIndex {
            let character = text[index]
            if let digit = character.wholeNumberValue, character.isASCII {
                digits += 1
                value = value * 10 + digit
                guard digits <= 3 else { return nil }
            } else if character == "." && fields.count < 2 && digits > 0 {
                fields.append(value)
                digits = 0
                value = 0
            } else {
                break
            }
            index = text.index(after: index)
        }
        guard fields.count == 2, digits > 0 else { return nil }
        fields.append(value)
        guard [2, 4, 5].contains(fields[0]), fields[0] < 10 else { return nil }
        if index < text.endIndex {
            guard text[index] == " " else { return nil }
            index = text.index(after: index)
        }
        return (SMTPEnhancedStatusCode(statusClass: fields[0], subject: fields[1], detail: fields[2]), text[index...])
    }
}

/// A complete server reply: one or more lines with the same three-digit code (RFC 5321 section 4.2).
public struct SMTPReply: Sendable, Hashable, CustomStringConvertible {
    /// What the first digit of the code says about the command (RFC 5321 section 4.2.1).
    public enum Category: Sendable, Hashable {
        /// 2xx: done.
        case positiveCompletion
        /// 3xx: go on (354 after DATA, 334 during AUTH).
        case positiveIntermediate
        /// 4xx: not now; the same command may work later.
        case transientNegative
        /// 5xx: no; repeating the command will not help.
        case permanentNegative
    }

    public var code: Int
    /// The RFC 3463 code of the first line, when the server sends one (RFC 2034).
    public var enhancedStatusCode: SMTPEnhancedStatusCode?
    /// The text of each line, without the reply code and without the enhanced status code.
    public var lines: [String]

    public init(code: Int, enhancedStatusCode: SMTPEnhancedStatusCode? = nil, lines: [String]) {
        self.code = code
        self.enhancedStatusCode = enhancedStatusCode
        self.lines = lines
    }

    public var category: Category {
        switch code / 100 {
        case 2: .positiveCompletion
        case 3: .positiveIntermediate
        case 4: .transientNegative
        default: .permanentNegative
        }
    }

    public var isPositiveCompletion: Bool { category == .positiveCompletion }
    /// 4xx: retrying later may succeed.
    public var isTransientFailure: Bool { category == .transientNegative }
    /// 5xx: retrying will not help.
    public var isPermanentFailure: Bool { category == .permanentNegative }

    /// All lines joined with a space, for messages to the operator.
    public var text: String { lines.joined(separator: " ") }

    /// The reply as one line for logs and errors, e.g. `550 5.1.1 no such user`. Control characters
    /// from the server are replaced so that a reply cannot forge log lines.
    public var description: String {
        var out = "\(code)"
        if let enhancedStatusCode { out += " \(enhancedStatusCode)" }
        let text = self.text
        if !text.isEmpty { out += " " + text }
        return String(out.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
    }
}

/// Why bytes from the server are not an SMTP reply.
public enum SMTPReplyParserError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A line longer than the limit (RFC 5321 section 4.5.3.1.5 allows 512 octets).
    case lineTooLong(limit: Int)
    /// A multi-line reply with more lines than the limit.
    case tooManyLines(limit: Int)
    /// A line that does not start with a three-digit code followed by `-`, a space or its end.
    case malformedLine(String)
    /// A continuation line whose code differs from the first line's.
    case inconsistentCode(first: Int, line: Int)

    public var description: String {
        switch self {
        case .lineTooLong(let limit): "a reply line longer than \(limit) bytes"
        case .tooManyLines(let limit): "a reply with more than \(limit) lines"
        case .malformedLine(let line): "a line that is not an SMTP reply: \"\(line)\""
        case .inconsistentCode(let first, let line): "a multi-line reply mixing codes \(first) and \(line)"
        }
    }
}

/// Incremental parser of SMTP replies: feed it bytes as they arrive, take replies as they
/// complete. Bytes after a complete reply stay in the caller's buffer, so that the caller can see
/// whether the server sent more than it should have (after STARTTLS).
public struct SMTPReplyParser: Sendable {
    public struct Limits: Sendable, Hashable {
        /// Octets per line, without CRLF. RFC 5321 says 512; servers exceed it with long texts.
        public var maxLineLength: Int
        /// Lines per reply; EHLO answers have a few dozen at most.
        public var maxLinesPerReply: Int

        public init(maxLineLength: Int = 2048, maxLinesPerReply: Int = 256) {
            self.maxLineLength = maxLineLength
            self.maxLinesPerReply = maxLinesPerReply
        }
    }

    public let limits: Limits
    private var partialLine: [UInt8] = []
    private var code: Int?
    private var lines: [String] = []

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Whether part of a reply has arrived but not its last line.
    public var hasPartialReply: Bool { !partialLine.isEmpty || code != nil }

    /// Consumes lines from `buffer` until a reply is complete and returns it; nil when `buffer`
    /// ran out first (everything was consumed and kept for the next call).
    public mutating func nextReply(from buffer: inout ByteBuffer) throws(SMTPReplyParserError) -> SMTPReply? {
        while buffer.readableBytes > 0 {
            let view = buffer.readableBytesView
            guard let lf = view.firstIndex(of: 0x0A) else {
                partialLine += view
                buffer.moveReaderIndex(forwardBy: view.count)
                // The CR of a CRLF split across reads is not part of the line.
                guard partialLine.count <= limits.maxLineLength + 1 else { throw .lineTooLong(limit: limits.maxLineLength) }
                return nil
            }
            partialLine += view[view.startIndex..<lf]
            buffer.moveReaderIndex(forwardBy: lf - view.startIndex + 1)
            // CRLF is the terminator; a bare LF is tolerated, as most clients do.
            if partialLine.last == 0x0D { partialLine.removeLast() }
            guard partialLine.count <= limits.maxLineLength else { throw .lineTooLong(limit: limits.maxLineLength) }
            let line = partialLine
            partialLine.removeAll(keepingCapacity: true)
            if let reply = try consume(line: line) { return reply }
        }
        return nil
    }

    private mutating func consume(line: [UInt8]) throws(SMTPReplyParserError) -> SMTPReply? {
        guard line.count >= 3,
              let hundreds = Self.digit(line[0]), (2...5).contains(hundreds),
              let tens = Self.digit(line[1]), let units = Self.digit(line[2]),
              line.count == 3 || line[3] == UInt8(ascii: " ") || line[3] == UInt8(ascii: "-")
        else {
            throw .malformedLine(Self.printable(line))
        }
        let lineCode = hundreds * 100 + tens * 10 + units
        if let code, code != lineCode { throw .inconsistentCode(first: code, line: lineCode) }
        code = lineCode
        guard lines.count < limits.maxLinesPerReply else { throw .tooManyLines(limit: limits.maxLinesPerReply) }
        lines.append(line.count > 4 ? String(decoding: line[4...], as: UTF8.self) : "")
        let isLast = line.count == 3 || line[3] == UInt8(ascii: " ")
        guard isLast else { return nil }
        defer {
            code = nil
            lines.removeAll(keepingCapacity: true)
        }
        return Self.reply(code: lineCode, lines: lines)
    }

    /// Splits off the enhanced status code (RFC 2034 repeats it on every line) when the first
    /// line has one whose class matches the reply code.
    static func reply(code: Int, lines: [String]) -> SMTPReply {
        guard let first = lines.first,
              let enhanced = SMTPEnhancedStatusCode.parse(prefixOf: first[...])?.code,
              enhanced.statusClass == code / 100
        else {
            return SMTPReply(code: code, lines: lines)
        }
        let stripped = lines.map { line in
            if let parsed = SMTPEnhancedStatusCode.parse(prefixOf: line[...]), parsed.code == enhanced {
                return String(parsed.rest)
            }
            return line
        }
        return SMTPReply(code: code, enhancedStatusCode: enhanced, lines: stripped)
    }

    private static func digit(_ byte: UInt8) -> Int? {
        (0x30...0x39).contains(byte) ? Int(byte - 0x30) : nil
    }

    /// The start of an offending line, safe to show: at most 80 characters, controls replaced.
    static func printable(_ line: [UInt8]) -> String {
        String(decoding: line.prefix(80).map { $0 < 0x20 || $0 == 0x7F ? UInt8(ascii: "?") : $0 }, as: UTF8.self)
    }
}
