/// Content-Transfer-Encoding of a part (RFC 2045 section 6).
public enum TransferEncoding: Sendable, Hashable {
    case identity      // 7bit, 8bit, binary, and anything unknown: bytes as they are
    case base64
    case quotedPrintable

    public init(headerValue: String?) {
        switch headerValue?.trimmingCharacters(in: .whitespaces).lowercased() {
        case "base64": self = .base64
        case "quoted-printable": self = .quotedPrintable
        default: self = .identity
        }
    }
}

/// Streaming base64 decoder. Characters outside the alphabet (line breaks, spaces, junk some
/// mailers add) are skipped; padding ends a quantum, and decoding resumes after it, so
/// concatenated base64 blocks decode too.
public struct Base64Decoder: Sendable {
    private var quantum: UInt32 = 0
    private var count = 0

    public init() {}

    private static let table: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, char) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(char)] = UInt8(index)
        }
        // The URL-safe alphabet shows up in the wild; it never collides with the standard one.
        table[Int(UInt8(ascii: "-"))] = 62
        table[Int(UInt8(ascii: "_"))] = 63
        table[Int(UInt8(ascii: "="))] = 0xFE
        return table
    }()

    public mutating func decode<Bytes: Sequence>(_ input: Bytes, into output: inout [UInt8]) where Bytes.Element == UInt8 {
        Self.table.withUnsafeBufferPointer { table in
            for byte in input {
                let value = table[Int(byte)]
                if value < 64 {
                    quantum = quantum << 6 | UInt32(value)
                    count += 1
                    if count == 4 {
                        output.append(UInt8(truncatingIfNeeded: quantum >> 16))
                        output.append(UInt8(truncatingIfNeeded: quantum >> 8))
                        output.append(UInt8(truncatingIfNeeded: quantum))
                        quantum = 0
                        count = 0
                    }
                } else if value == 0xFE {
                    flushPartialQuantum(into: &output)
                }
            }
        }
    }

    /// Emits what a truncated final quantum holds (2 or 3 characters carry 1 or 2 bytes).
    public mutating func finish(into output: inout [UInt8]) {
        flushPartialQuantum(into: &output)
    }

    private mutating func flushPartialQuantum(into output: inout [UInt8]) {
        switch count {
        case 2:
            output.append(UInt8(truncatingIfNeeded: quantum >> 4))
        case 3:
            output.append(UInt8(truncatingIfNeeded: quantum >> 10))
            output.append(UInt8(truncatingIfNeeded: quantum >> 2))
        default:
            break
        }
        quantum = 0
        count = 0
    }
}

/// Streaming quoted-printable decoder (RFC 2045 section 6.7) over raw body bytes in chunks of
/// any size. `=XX` becomes a byte, `=` at a line end is a soft break, whitespace before a line
/// break is transport padding and dropped, and a malformed `=` is kept literally, as RFC 2045
/// recommends for robustness. The state carried between chunks is a few bytes at most.
public struct QuotedPrintableDecoder: Sendable {
    private enum State: Sendable {
        case normal
        case equals
        case equalsHex(UInt8)
        case equalsWhitespace
        case softBreakCR
    }

    private var state = State.normal
    /// Spaces and tabs seen but not yet known to be content (they are dropped before a line break).
    private var pendingWhitespace: [UInt8] = []

    public init() {}

    public mutating func decode(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        for byte in input {
            decode(byte, into: &output)
        }
    }

    private mutating func decode(_ byte: UInt8, into output: inout [UInt8]) {
        switch state {
        case .normal:
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                pendingWhitespace.append(byte)
                if pendingWhitespace.count > 1024 { flushWhitespace(into: &output) }
            case UInt8(ascii: "\r"), UInt8(ascii: "\n"):
                pendingWhitespace.removeAll(keepingCapacity: true)
                output.append(byte)
            case UInt8(ascii: "="):
                flushWhitespace(into: &output)
                state = .equals
            default:
                flushWhitespace(into: &output)
                output.append(byte)
            }
        case .equals:
            if hexValue(byte) != nil {
                state = .equalsHex(byte)
            } else if byte == UInt8(ascii: "\r") {
                state = .softBreakCR
            } else if byte == UInt8(ascii: "\n") {
                state = .normal
            } else if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") {
                state = .equalsWhitespace
            } else {
                output.append(UInt8(ascii: "="))
                state = .normal
                decode(byte, into: &output)
            }
        case .equalsHex(let first):
            if let high = hexValue(first), let low = hexValue(byte) {
                output.append(high << 4 | low)
                state = .normal
            } else {
                output.append(UInt8(ascii: "="))
                output.append(first)
                state = .normal
                decode(byte, into: &output)
            }
        case .equalsWhitespace:
            if byte == UInt8(ascii: "\r") {
                state = .softBreakCR
            } else if byte == UInt8(ascii: "\n") {
                state = .normal
            } else if byte != UInt8(ascii: " "), byte != UInt8(ascii: "\t") {
                output.append(UInt8(ascii: "="))
                output.append(UInt8(ascii: " "))
                state = .normal
                decode(byte, into: &output)
            }
        case .softBreakCR:
            state = .normal
            if byte != UInt8(ascii: "\n") { decode(byte, into: &output) }
        }
    }

    /// The body ended: an unfinished escape is kept literally.
    public mutating func finish(into output: inout [UInt8]) {
        switch state {
        case .equals, .equalsWhitespace: output.append(UInt8(ascii: "="))
        case .equalsHex(let first): output.append(contentsOf: [UInt8(ascii: "="), first])
        case .normal, .softBreakCR: break
        }
        flushWhitespace(into: &output)
        state = .normal
    }

    private mutating func flushWhitespace(into output: inout [UInt8]) {
        if !pendingWhitespace.isEmpty {
            output.append(contentsOf: pendingWhitespace)
            pendingWhitespace.removeAll(keepingCapacity: true)
        }
    }
}
