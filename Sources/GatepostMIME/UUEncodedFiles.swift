#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Receives a text body split into its own text and the files uuencoded in it.
public protocol UUEncodedFileHandler {
    /// Text outside any encoded file, line endings included. Valid only during the call.
    mutating func text(_ bytes: UnsafeRawBufferPointer) throws
    /// A `begin MODE NAME` (or `begin-base64 MODE NAME`) line; `name` is as sent, not yet safe.
    mutating func fileDidBegin(name: String) throws
    mutating func file(didReceive bytes: UnsafeRawBufferPointer) throws
    /// `complete` is false when the body ended (or a line broke the format) before `end`.
    mutating func fileDidEnd(complete: Bool) throws
}

/// Finds uuencoded files in a text body, as old mailers and some EDI systems still send them:
/// `begin 644 name`, lines of uuencode, a zero-length line, `end` (and `begin-base64` ... `====`,
/// the base64 form of `uuencode -m`). Streaming: it holds one line at most, and runs of text
/// lines pass through as one span.
public struct UUEncodedFileExtractor {
    private enum Mode {
        case text
        case uuencode
        case base64(Base64Decoder)
    }

    private var mode = Mode.text
    /// An unfinished line from the previous chunk.
    private var carry: [UInt8] = []
    /// A line longer than this is text (or ends a broken file); it is passed on in pieces.
    public static let maxLineLength = 4096
    private var midLine = false
    private var output = [UInt8](repeating: 0, count: maxLineLength)

    public init() {}

    public mutating func feed<Handler: UUEncodedFileHandler>(_ chunk: UnsafeRawBufferPointer, into handler: inout Handler) throws {
        guard !chunk.isEmpty else { return }
        var offset = 0
        if !carry.isEmpty {
            guard let lf = findLF(chunk, from: 0) else {
                carry.append(contentsOf: chunk)
                if carry.count > Self.maxLineLength { try passLongLine(into: &handler) }
                return
            }
            carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0...lf]))
            var line: [UInt8] = []
            swap(&line, &carry)
            _ = try line.withUnsafeBytes { try processLines($0, atEnd: false, into: &handler) }
            line.removeAll(keepingCapacity: true)
            swap(&line, &carry)
            offset = lf + 1
        }
        let rest = UnsafeRawBufferPointer(rebasing: chunk[offset...])
        let consumed = try processLines(rest, atEnd: false, into: &handler)
        if consumed < rest.count {
            carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[consumed...]))
            if carry.count > Self.maxLineLength { try passLongLine(into: &handler) }
        }
    }

    public mutating func finish<Handler: UUEncodedFileHandler>(into handler: inout Handler) throws {
        if !carry.isEmpty {
            var line: [UInt8] = []
            swap(&line, &carry)
            _ = try line.withUnsafeBytes { try processLines($0, atEnd: true, into: &handler) }
        }
        switch mode {
        case .text:
            break
        case .uuencode:
            try handler.fileDidEnd(complete: false)
        case .base64(var decoder):
            var tail: [UInt8] = []
            decoder.finish(into: &tail)
            try tail.withUnsafeBytes { try handler.file(didReceive: $0) }
            try handler.fileDidEnd(complete: false)
        }
        mode = .text
    }

    private func findLF(_ buffer: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < buffer.count, let base = buffer.baseAddress else { return nil }
        guard let found = memchr(base + start, 0x0A, buffer.count - start) else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    private mutating func passLongLine<Handler: UUEncodedFileHandler>(into handler: inout Handler) throws {
        if case .text = mode {} else {
            // No encoded line is this long: the file is broken here; what follows is text.
            try endFile(complete: false, into: &handler)
        }
        try carry.withUnsafeBytes { try handler.text($0) }
        carry.removeAll(keepingCapacity: true)
        midLine = true
    }

    private mutating func processLines<Handler: UUEncodedFileHandler>(
        _ buffer: UnsafeRawBufferPointer, atEnd: Bool, into handler: inout Handler
    ) throws -> Int {
        var position = 0
        var textStart: Int?
        while position < buffer.count {
            let lineEnd: Int
            if let lf = findLF(buffer, from: position) {
                lineEnd = lf + 1
            } else if atEnd {
                lineEnd = buffer.count
            } else {
                break
            }
            let line = UnsafeRawBufferPointer(rebasing: buffer[position..<lineEnd])
            let continuesLongLine = midLine
            midLine = false
            // A line longer than any encoded line is text, however it arrived: whole, or in
            // pieces through passLongLine. The same rule both ways keeps the result chunk-free.
            let contentLength = line.last == 0x0A ? line.count - 1 : line.count
            let isLong = continuesLongLine || contentLength > Self.maxLineLength
            if isLong, !Self.isText(mode) {
                try endFile(complete: false, into: &handler)
            }
            if case .text = mode {
                if !isLong, line.first == UInt8(ascii: "b"), let begin = Self.beginLine(line) {
                    if let start = textStart {
                        try handler.text(UnsafeRawBufferPointer(rebasing: buffer[start..<position]))
                        textStart = nil
                    }
                    try handler.fileDidBegin(name: begin.name)
                    mode = begin.base64 ? .base64(Base64Decoder()) : .uuencode
                } else if textStart == nil {
                    textStart = position
                }
            } else {
                try fileLine(Self.withoutLineEnding(line), into: &handler)
            }
            position = lineEnd
        }
        if let start = textStart {
            try handler.text(UnsafeRawBufferPointer(rebasing: buffer[start..<position]))
        }
        return position
    }

    private static func isText(_ mode: Mode) -> Bool {
        if case .text = mode { return true }
        return false
    }

    private static func withoutLineEnding(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var end = line.count
        while end > 0, line[end - 1] == 0x0A || line[end - 1] == 0x0D { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: line[0..<end])
    }

    /// `begin 644 name` or `begin-base64 644 name`: the mode is 3 or 4 octal digits.
    static func beginLine(_ line: UnsafeRawBufferPointer) -> (name: String, base64: Bool)? {
        let text = Array(withoutLineEnding(line))
        let base64Prefix = Array("begin-base64 ".utf8)
        let plainPrefix = Array("begin ".utf8)
        let isBase64 = text.starts(with: base64Prefix)
        guard isBase64 || text.starts(with: plainPrefix) else { return nil }
        var rest = text.dropFirst(isBase64 ? base64Prefix.count : plainPrefix.count)
        let mode = rest.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }
        guard (3...4).contains(mode.count) else { return nil }
        rest = rest.dropFirst(mode.count)
        guard rest.first == UInt8(ascii: " ") else { return nil }
        let name = String(decoding: rest.dropFirst(), as: UTF8.self).trimmingASCIIWhitespace()
        guard !name.isEmpty else { return nil }
        return (name, isBase64)
    }

    private mutating func fileLine<Handler: UUEncodedFileHandler>(_ line: UnsafeRawBufferPointer, into handler: inout Handler) throws {
        switch mode {
        case .text:
            return
        case .base64(var decoder):
            if line.starts(with: "====".utf8) {
                var tail: [UInt8] = []
                decoder.finish(into: &tail)
                try tail.withUnsafeBytes { try handler.file(didReceive: $0) }
                try endFile(complete: true, into: &handler)
                return
            }
            let written = output.withUnsafeMutableBufferPointer { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return decoder.decode(line, writingTo: base)
            }
            mode = .base64(decoder)
            try output.withUnsafeBytes { try handler.file(didReceive: UnsafeRawBufferPointer(rebasing: $0[0..<written])) }
        case .uuencode:
            if line.count == 3, line.starts(with: "end".utf8) {
                try endFile(complete: true, into: &handler)
                return
            }
            guard let first = line.first else { return }  // blank lines between data and `end`
            // uuencode uses the characters from space to backquote only: anything else means
            // this was never a file (a prose line starting "begin 644"), or it broke off.
            guard line.allSatisfy({ $0 >= 0x20 && $0 <= 0x60 }) else {
                try endFile(complete: false, into: &handler)
                return
            }
            let length = Int((first &- 32) & 63)
            guard length > 0 else { return }  // the zero-length line before `end`
            // Characters are (value + 32), with "`" for 0; trailing spaces may have been stripped.
            var written = 0
            var index = 1
            while written < length {
                var group: UInt32 = 0
                for offset in 0..<4 {
                    let char = index + offset < line.count ? line[index + offset] : 32
                    group = group << 6 | UInt32((char &- 32) & 63)
                }
                index += 4
                for shift in [16, 8, 0] where written < length {
                    output[written] = UInt8(truncatingIfNeeded: group >> UInt32(shift))
                    written += 1
                }
            }
            try output.withUnsafeBytes { try handler.file(didReceive: UnsafeRawBufferPointer(rebasing: $0[0..<written])) }
        }
    }

    private mutating func endFile<Handler: UUEncodedFileHandler>(complete: Bool, into handler: inout Handler) throws {
        mode = .text
        try handler.fileDidEnd(complete: complete)
    }
}
