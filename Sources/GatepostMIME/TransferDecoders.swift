/// Content-Transfer-Encoding of a part (RFC 2045 section 6).
public enum TransferEncoding: Sendable, Hashable {
    case identity      // 7bit, 8bit, binary, and anything unknown: bytes as they are
    case base64
    case quotedPrintable

    public init(headerValue: String?) {
        switch headerValue?.trimmingASCIIWhitespace().asciiLowercased() {
        case "base64": self = .base64
        case "quoted-printable": self = .quotedPrintable
        default: self = .identity
        }
    }
}

/// A body decoder that keeps a few bytes of state between chunks of any size.
public protocol StreamingTransferDecoder: Sendable {
    /// The most bytes decoding `inputCount` bytes can produce, state carried in included.
    static func maxDecodedCount(_ inputCount: Int) -> Int
    /// Decodes `input` into `output` (a distinct label, so that `&array` never converts to it),
    /// which must have room for ``maxDecodedCount(_:)`` bytes; returns how many it wrote.
    mutating func decode(_ input: UnsafeRawBufferPointer, writingTo output: UnsafeMutablePointer<UInt8>) -> Int
    /// The body ended: what the decoder still holds.
    mutating func finish(into output: inout [UInt8])
}

extension StreamingTransferDecoder {
    /// Appends the decoded bytes to `output`: for small inputs (encoded words, tests).
    public mutating func decode(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        let old = output.count
        let room = Self.maxDecodedCount(input.count)
        output.append(contentsOf: repeatElement(0, count: room))
        let written = output.withUnsafeMutableBufferPointer { buffer in
            // `old + room == buffer.count`, so the base address exists whenever room > 0.
            guard let base = buffer.baseAddress else { return 0 }
            return decode(input, writingTo: base + old)
        }
        output.removeLast(room - written)
    }
}

/// Streaming base64 decoder. Characters outside the alphabet (line breaks, spaces, junk some
/// mailers add) are skipped; padding ends a quantum, and decoding resumes after it, so
/// concatenated base64 blocks decode too.
public struct Base64Decoder: StreamingTransferDecoder {
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

    /// The most bytes decoding `inputCount` characters can produce (with a partial quantum
    /// carried in from an earlier chunk).
    public static func maxDecodedCount(_ inputCount: Int) -> Int {
        inputCount / 4 * 3 + 3
    }

    public mutating func decode<Bytes: Sequence>(_ input: Bytes, into output: inout [UInt8]) where Bytes.Element == UInt8 {
        let bytes = Array(input)
        bytes.withUnsafeBytes { decode($0, into: &output) }
    }

    /// The hot path takes four alphabet characters at a time and
    /// drops to one at a time only around line breaks, padding and junk.
    public mutating func decode(_ input: UnsafeRawBufferPointer, writingTo output: UnsafeMutablePointer<UInt8>) -> Int {
        guard let base = input.baseAddress, !input.isEmpty else { return 0 }
        let source = base.assumingMemoryBound(to: UInt8.self)
        let end = input.count
        var index = 0
        var written = 0
        return Self.table.withUnsafeBufferPointer { table -> Int in
            while index < end {
                if count == 0 {
                    while index + 4 <= end {
                        let a = table[Int(source[index])]
                        let b = table[Int(source[index + 1])]
                        let c = table[Int(source[index + 2])]
                        let d = table[Int(source[index + 3])]
                        // Alphabet values are below 64; skip (0xFF) and padding (0xFE) have the top bits set.
                        guard (a | b | c | d) & 0xC0 == 0 else { break }
                        let word = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                        output[written] = UInt8(truncatingIfNeeded: word >> 16)
                        output[written + 1] = UInt8(truncatingIfNeeded: word >> 8)
                        output[written + 2] = UInt8(truncatingIfNeeded: word)
                        written += 3
                        index += 4
                    }
                    if index >= end { break }
                }
                let value = table[Int(source[index])]
                index += 1
                if value < 64 {
                    quantum = quantum << 6 | UInt32(value)
                    count += 1
                    if count == 4 {
                        output[written] = UInt8(truncatingIfNeeded: quantum >> 16)
                        output[written + 1] = UInt8(truncatingIfNeeded: quantum >> 8)
                        output[written + 2] = UInt8(truncatingIfNeeded: quantum)
                        written += 3
                        quantum = 0
                        count = 0
                    }
                } else if value == 0xFE {
                    written += flushPartialQuantum(into: output + written)
                }
            }
            return written
        }
    }

    /// Emits what a truncated final quantum holds (2 or 3 characters carry 1 or 2 bytes).
    public mutating func finish(into output: inout [UInt8]) {
        let tail = takePartialQuantum()
        output.append(contentsOf: [tail.first, tail.second].prefix(tail.count))
    }

    /// What a partial quantum (2 or 3 characters) holds: 1 or 2 bytes; then starts a new quantum.
    private mutating func takePartialQuantum() -> (count: Int, first: UInt8, second: UInt8) {
        defer {
            quantum = 0
            count = 0
        }
        switch count {
        case 2: return (1, UInt8(truncatingIfNeeded: quantum >> 4), 0)
        case 3: return (2, UInt8(truncatingIfNeeded: quantum >> 10), UInt8(truncatingIfNeeded: quantum >> 2))
        default: return (0, 0, 0)
        }
    }

    private mutating func flushPartialQuantum(into output: UnsafeMutablePointer<UInt8>) -> Int {
        let tail = takePartialQuantum()
        if tail.count > 0 { output[0] = tail.first }
        if tail.count > 1 { output[1] = tail.second }
        return tail.count
    }
}

/// Streaming quoted-printable decoder (RFC 2045 section 6.7) over raw body bytes in chunks of
/// any size. `=XX` becomes a byte, `=` at a line end is a soft break, whitespace before a line
/// break is transport padding and dropped, and a malformed `=` is kept literally, as RFC 2045
/// recommends for robustness. The state carried between chunks is a few bytes at most.
public struct QuotedPrintableDecoder: StreamingTransferDecoder {
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

    /// The most bytes decoding `inputCount` bytes can produce: held-back whitespace and an
    /// unfinished escape may come out with them.
    public static func maxDecodedCount(_ inputCount: Int) -> Int {
        inputCount + maxPendingWhitespace + 3
    }

    private static let maxPendingWhitespace = 1024

    /// Runs of ordinary characters are copied without a state change.
    public mutating func decode(_ input: UnsafeRawBufferPointer, writingTo output: UnsafeMutablePointer<UInt8>) -> Int {
        guard let base = input.baseAddress, !input.isEmpty else { return 0 }
        let source = base.assumingMemoryBound(to: UInt8.self)
        let end = input.count
        var index = 0
        var written = 0
        while index < end {
            if case .normal = state, pendingWhitespace.isEmpty {
                let runStart = index
                while index < end, !Self.isSpecial(source[index]) { index += 1 }
                let run = index - runStart
                if run > 0 {
                    (output + written).update(from: source + runStart, count: run)
                    written += run
                }
                if index >= end { break }
            }
            decode(source[index], into: output, written: &written)
            index += 1
        }
        return written
    }

    @inline(__always)
    private static func isSpecial(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "=") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
            || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n")
    }

    private mutating func decode(_ byte: UInt8, into output: UnsafeMutablePointer<UInt8>, written: inout Int) {
        func emit(_ value: UInt8) {
            output[written] = value
            written += 1
        }
        switch state {
        case .normal:
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                pendingWhitespace.append(byte)
                if pendingWhitespace.count >= Self.maxPendingWhitespace { flushWhitespace(into: output, written: &written) }
            case UInt8(ascii: "\r"), UInt8(ascii: "\n"):
                pendingWhitespace.removeAll(keepingCapacity: true)
                emit(byte)
            case UInt8(ascii: "="):
                flushWhitespace(into: output, written: &written)
                state = .equals
            default:
                flushWhitespace(into: output, written: &written)
                emit(byte)
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
                emit(UInt8(ascii: "="))
                state = .normal
                decode(byte, into: output, written: &written)
            }
        case .equalsHex(let first):
            if let high = hexValue(first), let low = hexValue(byte) {
                emit(high << 4 | low)
                state = .normal
            } else {
                emit(UInt8(ascii: "="))
                emit(first)
                state = .normal
                decode(byte, into: output, written: &written)
            }
        case .equalsWhitespace:
            if byte == UInt8(ascii: "\r") {
                state = .softBreakCR
            } else if byte == UInt8(ascii: "\n") {
                state = .normal
            } else if byte != UInt8(ascii: " "), byte != UInt8(ascii: "\t") {
                emit(UInt8(ascii: "="))
                emit(UInt8(ascii: " "))
                state = .normal
                decode(byte, into: output, written: &written)
            }
        case .softBreakCR:
            state = .normal
            if byte != UInt8(ascii: "\n") { decode(byte, into: output, written: &written) }
        }
    }

    private mutating func flushWhitespace(into output: UnsafeMutablePointer<UInt8>, written: inout Int) {
        guard !pendingWhitespace.isEmpty else { return }
        pendingWhitespace.withUnsafeBufferPointer { whitespace in
            if let base = whitespace.baseAddress {
                (output + written).update(from: base, count: whitespace.count)
            }
        }
        written += pendingWhitespace.count
        pendingWhitespace.removeAll(keepingCapacity: true)
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
