#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An incremental MIME parser: bytes go in as they come off the wire, in chunks of any size, and
/// parts come out through a ``MIMEPartHandler`` with their bodies decoded. It holds at most one
/// header block, one unfinished line and a few bytes of decoder state, never a body.
///
/// Line endings may be CRLF or bare LF. Following RFC 2046 section 5.1.1, the line break before a
/// boundary belongs to the boundary, so it is held back until the next line shows whether it is
/// content. A boundary of an enclosing multipart also ends inner parts whose own closing boundary
/// is missing.
public struct MIMEStreamParser {
    private enum LineEnding {
        case none, lf, crlf

        var bytes: [UInt8] {
            switch self {
            case .none: []
            case .lf: [0x0A]
            case .crlf: [0x0D, 0x0A]
            }
        }
    }

    private enum LeafDecoder {
        case identity
        case base64(Base64Decoder)
        case quotedPrintable(QuotedPrintableDecoder)
    }

    private enum State {
        /// Collecting the header of a part that will get this parent and depth.
        case header(parent: Int?, depth: Int, defaultType: ContentType)
        /// In the body of leaf part `index`.
        case leaf(index: Int, decoder: LeafDecoder)
        /// Preamble or epilogue: text that belongs to no part.
        case discard
        /// `finish` was called.
        case finished
    }

    private struct OpenMultipart {
        /// `--` followed by the boundary.
        let delimiter: [UInt8]
        let index: Int
        let depth: Int
        let isDigest: Bool
    }

    public let limits: MIMELimits
    /// Every part seen so far, in order.
    public private(set) var parts: [MIMEPart] = []

    private var state: State = .header(parent: nil, depth: 0, defaultType: .textPlain)
    private var open: [OpenMultipart] = []
    private var headerBlock: [UInt8] = []
    private var bytesFed: Int64 = 0
    /// The unfinished last line of the previous chunk.
    private var carry: [UInt8] = []
    /// The line ending held back until the next line proves it is content.
    private var pendingEnding = LineEnding.none
    /// A long line was passed on in pieces; the rest of it is content, never a boundary.
    private var midLine = false
    /// Decoder output, reused: a body is decoded a slice at a time into this fixed buffer.
    private var decoded = [UInt8](repeating: 0, count: Self.decodedCapacity)
    private static let decodeSlice = 48 * 1024
    private static let decodedCapacity = max(
        Base64Decoder.maxDecodedCount(decodeSlice), QuotedPrintableDecoder.maxDecodedCount(decodeSlice)
    )

    /// Lines longer than this cannot be boundaries (RFC 2046 caps a boundary at 70 characters),
    /// so body lines longer than this pass through in pieces instead of being buffered.
    private static let longBodyLine = 16 * 1024

    public init(limits: MIMELimits = .default) {
        self.limits = limits
    }

    /// Parses the next chunk of the message.
    public mutating func feed<Handler: MIMEPartHandler>(_ chunk: UnsafeRawBufferPointer, into handler: inout Handler) throws {
        guard !chunk.isEmpty else { return }
        bytesFed += Int64(chunk.count)
        guard bytesFed <= limits.maxMessageSize else { throw MIMEError.limitExceeded(.messageSize) }
        var offset = 0
        if !carry.isEmpty {
            guard let lf = Self.findLF(chunk, from: 0) else {
                carry.append(contentsOf: chunk)
                try relieveCarry(into: &handler)
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
            try relieveCarry(into: &handler)
        }
    }

    /// Convenience for tests and small inputs.
    public mutating func feed<Handler: MIMEPartHandler>(_ bytes: [UInt8], into handler: inout Handler) throws {
        try bytes.withUnsafeBytes { try feed($0, into: &handler) }
    }

    /// Ends the message: closes every open part, including those whose closing boundary is missing.
    public mutating func finish<Handler: MIMEPartHandler>(into handler: inout Handler) throws {
        if case .finished = state { return }
        if !carry.isEmpty {
            var line: [UInt8] = []
            swap(&line, &carry)
            _ = try line.withUnsafeBytes { try processLines($0, atEnd: true, into: &handler) }
        }
        switch state {
        case .header:
            try endHeader(into: &handler)
            try closeLeaf(into: &handler, keepPendingEnding: true)
        case .leaf:
            try closeLeaf(into: &handler, keepPendingEnding: true)
        case .discard, .finished:
            break
        }
        while let multipart = open.popLast() {
            try handler.partDidEnd(multipart.index)
        }
        state = .finished
    }

    // MARK: - Lines

    private static func findLF(_ buffer: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < buffer.count, let base = buffer.baseAddress else { return nil }
        guard let found = memchr(base + start, 0x0A, buffer.count - start) else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    /// Processes every complete line in `buffer` (and, at the end of the message, the final
    /// unterminated one). Consecutive content lines of a leaf are passed on as one span.
    /// Returns how many bytes were consumed.
    private mutating func processLines<Handler: MIMEPartHandler>(
        _ buffer: UnsafeRawBufferPointer, atEnd: Bool, into handler: inout Handler
    ) throws -> Int {
        var position = 0
        var spanStart: Int?
        while position < buffer.count {
            let lineEnd: Int
            if let lf = Self.findLF(buffer, from: position) {
                lineEnd = lf + 1
            } else if atEnd {
                lineEnd = buffer.count
            } else {
                break
            }
            let line = UnsafeRawBufferPointer(rebasing: buffer[position..<lineEnd])
            let continuesLongLine = midLine
            midLine = false

            if !continuesLongLine, !open.isEmpty, let match = matchBoundary(line) {
                if let start = spanStart {
                    try emitLeafSpan(UnsafeRawBufferPointer(rebasing: buffer[start..<position]), into: &handler)
                    spanStart = nil
                }
                try handleBoundary(level: match.level, isClose: match.isClose, into: &handler)
            } else {
                switch state {
                case .leaf:
                    if spanStart == nil { spanStart = position }
                case .header:
                    if continuesLongLine {
                        throw MIMEError.limitExceeded(.headerLineLength)
                    }
                    try headerLine(line, into: &handler)
                case .discard, .finished:
                    break
                }
            }
            position = lineEnd
        }
        if let start = spanStart {
            try emitLeafSpan(UnsafeRawBufferPointer(rebasing: buffer[start..<position]), into: &handler)
        }
        return position
    }

    /// Keeps an unfinished line from growing without bound.
    private mutating func relieveCarry<Handler: MIMEPartHandler>(into handler: inout Handler) throws {
        switch state {
        case .header:
            if carry.count > limits.maxHeaderLineLength {
                throw MIMEError.limitExceeded(.headerLineLength)
            }
        case .leaf(let index, _):
            guard carry.count > Self.longBodyLine else { return }
            // Too long to be a boundary: pass it on now; what follows up to the line break is content.
            try emitPendingEnding(index, into: &handler)
            try carry.withUnsafeBytes { try decodeAndDeliver($0, into: &handler) }
            carry.removeAll(keepingCapacity: true)
            midLine = true
        case .discard, .finished:
            guard carry.count > Self.longBodyLine else { return }
            carry.removeAll(keepingCapacity: true)
            midLine = true
        }
    }

    private static func ending(of line: UnsafeRawBufferPointer) -> LineEnding {
        guard let last = line.last, last == 0x0A else { return .none }
        if line.count >= 2, line[line.count - 2] == 0x0D { return .crlf }
        return .lf
    }

    // MARK: - Boundaries

    private func matchBoundary(_ line: UnsafeRawBufferPointer) -> (level: Int, isClose: Bool)? {
        // Cheap test first: most lines do not start with "--".
        guard line.count >= 3, line[0] == 0x2D, line[1] == 0x2D, line.count <= 1024 else { return nil }
        var end = line.count
        while end > 0, line[end - 1] == 0x0A || line[end - 1] == 0x0D || line[end - 1] == 0x20 || line[end - 1] == 0x09 {
            end -= 1
        }
        for level in open.indices.reversed() {
            let delimiter = open[level].delimiter
            guard end >= delimiter.count else { continue }
            var matches = true
            for i in 0..<delimiter.count where line[i] != delimiter[i] {
                matches = false
                break
            }
            guard matches else { continue }
            let rest = end - delimiter.count
            if rest == 0 { return (level, false) }
            if rest == 2, line[delimiter.count] == 0x2D, line[delimiter.count + 1] == 0x2D { return (level, true) }
        }
        return nil
    }

    private mutating func handleBoundary<Handler: MIMEPartHandler>(level: Int, isClose: Bool, into handler: inout Handler) throws {
        switch state {
        case .header:
            // A part whose header never ended: it has that header and an empty body.
            try endHeader(into: &handler)
            try closeLeaf(into: &handler, keepPendingEnding: false)
        case .leaf:
            try closeLeaf(into: &handler, keepPendingEnding: false)
        case .discard, .finished:
            break
        }
        pendingEnding = .none
        // Inner multiparts whose closing boundary never came end here.
        while open.count > level + 1, let inner = open.popLast() {
            try handler.partDidEnd(inner.index)
        }
        let multipart = open[level]
        if isClose {
            open.removeLast()
            try handler.partDidEnd(multipart.index)
            state = .discard
        } else {
            state = .header(
                parent: multipart.index,
                depth: multipart.depth + 1,
                defaultType: multipart.isDigest ? .messageRFC822 : .textPlain
            )
        }
    }

    // MARK: - Headers

    private mutating func headerLine<Handler: MIMEPartHandler>(_ line: UnsafeRawBufferPointer, into handler: inout Handler) throws {
        var contentLength = line.count
        if contentLength > 0, line[contentLength - 1] == 0x0A { contentLength -= 1 }
        if contentLength > 0, line[contentLength - 1] == 0x0D { contentLength -= 1 }
        if contentLength == 0 {
            try endHeader(into: &handler)
            return
        }
        guard contentLength <= limits.maxHeaderLineLength else { throw MIMEError.limitExceeded(.headerLineLength) }
        guard headerBlock.count + line.count <= limits.maxHeaderBytes else { throw MIMEError.limitExceeded(.headerBytes) }
        headerBlock.append(contentsOf: line)
    }

    private mutating func endHeader<Handler: MIMEPartHandler>(into handler: inout Handler) throws {
        guard case .header(let parent, let depth, let defaultType) = state else { return }
        guard parts.count < limits.maxParts else { throw MIMEError.limitExceeded(.parts) }
        let header = MessageHeader.parse(headerBlock)
        headerBlock.removeAll(keepingCapacity: true)
        let contentType = header.contentType(default: defaultType)
        let boundary = contentType.isMultipart ? contentType.boundary : nil
        let part = MIMEPart(
            index: parts.count,
            parent: parent,
            depth: depth,
            header: header,
            contentType: contentType,
            disposition: header.contentDisposition,
            transferEncoding: header.transferEncoding,
            isMultipart: boundary != nil
        )
        parts.append(part)
        try handler.partDidBegin(part)
        pendingEnding = .none
        if let boundary {
            guard open.count < limits.maxDepth else { throw MIMEError.limitExceeded(.depth) }
            open.append(OpenMultipart(
                delimiter: Array("--\(boundary)".utf8),
                index: part.index,
                depth: depth,
                isDigest: contentType.subtype == "digest"
            ))
            state = .discard
        } else {
            let decoder: LeafDecoder = switch part.transferEncoding {
            case .identity: .identity
            case .base64: .base64(Base64Decoder())
            case .quotedPrintable: .quotedPrintable(QuotedPrintableDecoder())
            }
            state = .leaf(index: part.index, decoder: decoder)
        }
    }

    // MARK: - Leaf bodies

    /// `span` is whole lines of content; its last line ending is held back (it may precede a boundary).
    private mutating func emitLeafSpan<Handler: MIMEPartHandler>(_ span: UnsafeRawBufferPointer, into handler: inout Handler) throws {
        guard case .leaf(let index, _) = state, !span.isEmpty else { return }
        try emitPendingEnding(index, into: &handler)
        let ending = Self.ending(of: span)
        let contentCount = span.count - ending.bytes.count
        if contentCount > 0 {
            try decodeAndDeliver(UnsafeRawBufferPointer(rebasing: span[0..<contentCount]), into: &handler)
        }
        pendingEnding = ending
    }

    private mutating func emitPendingEnding<Handler: MIMEPartHandler>(_ index: Int, into handler: inout Handler) throws {
        switch pendingEnding {
        case .none:
            return
        case .lf:
            try withUnsafeBytes(of: UInt8(0x0A)) { try decodeAndDeliver($0, into: &handler) }
        case .crlf:
            try withUnsafeBytes(of: UInt16(0x0A0D).littleEndian) { try decodeAndDeliver($0, into: &handler) }
        }
        pendingEnding = .none
    }

    private mutating func decodeAndDeliver<Handler: MIMEPartHandler>(_ bytes: UnsafeRawBufferPointer, into handler: inout Handler) throws {
        guard case .leaf(let index, var decoder) = state else { return }
        if case .identity = decoder {
            try handler.part(index, didReceive: bytes)
            return
        }
        var offset = 0
        while offset < bytes.count {
            let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(bytes.count, offset + Self.decodeSlice)])
            offset += slice.count
            let written = decoded.withUnsafeMutableBufferPointer { output -> Int in
                guard let base = output.baseAddress else { return 0 }
                switch decoder {
                case .identity:
                    return 0
                case .base64(var base64):
                    defer { decoder = .base64(base64) }
                    return base64.decode(slice, writingTo: base)
                case .quotedPrintable(var qp):
                    defer { decoder = .quotedPrintable(qp) }
                    return qp.decode(slice, writingTo: base)
                }
            }
            if written > 0 {
                try decoded.withUnsafeBytes { try handler.part(index, didReceive: UnsafeRawBufferPointer(rebasing: $0[0..<written])) }
            }
        }
        state = .leaf(index: index, decoder: decoder)
    }

    private mutating func closeLeaf<Handler: MIMEPartHandler>(into handler: inout Handler, keepPendingEnding: Bool) throws {
        guard case .leaf(let index, let decoder) = state else { return }
        if keepPendingEnding {
            try emitPendingEnding(index, into: &handler)
        }
        pendingEnding = .none
        var tail: [UInt8] = []
        switch decoder {
        case .identity:
            break
        case .base64(var base64):
            base64.finish(into: &tail)
        case .quotedPrintable(var qp):
            qp.finish(into: &tail)
        }
        if !tail.isEmpty {
            try tail.withUnsafeBytes { try handler.part(index, didReceive: $0) }
        }
        try handler.partDidEnd(index)
        state = .discard
    }
}
