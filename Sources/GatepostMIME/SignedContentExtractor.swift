/// The bytes a multipart/signed signs (RFC 1847 section 2.1, RFC 5751 section 3.5): its first
/// body part exactly as sent, header included, from the line after the first boundary to the
/// line break before the second (that line break belongs to the boundary). Fed the raw entity
/// (the message, header included) in chunks of any size; what is signed goes to `output` as it
/// is found, so memory stays at one line.
///
/// The MIME parser decodes bodies and does not keep raw bytes; a signature is over raw bytes,
/// so they are taken from the message again, by the same boundary.
public struct SignedContentExtractor {
    public enum State: Sendable, Equatable {
        case header, preamble, content, done
    }

    public private(set) var state: State = .header
    private let delimiter: [UInt8]
    private var line: [UInt8] = []
    /// The line break after the last content line: written only when more content follows.
    private var heldBreak: [UInt8] = []
    private let maxLineLength: Int

    /// - Parameter boundary: the multipart/signed's boundary parameter.
    public init(boundary: String, maxLineLength: Int = 1 << 20) {
        delimiter = Array("--\(boundary)".utf8)
        self.maxLineLength = maxLineLength
    }

    /// Whether the signed content was found whole (its closing boundary seen).
    public var isComplete: Bool { state == .done }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, output: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard state != .done else { return }
        var start = 0
        for index in bytes.indices where bytes[index] == 0x0A {
            line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start ... index]))
            try endLine(output: output)
            if state == .done { return }
            start = index + 1
        }
        if start < bytes.count {
            line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start...]))
            guard line.count <= maxLineLength else { throw MIMEError.limitExceeded(.lineLength) }
        }
    }

    private mutating func endLine(output: (UnsafeRawBufferPointer) throws -> Void) throws {
        defer { line.removeAll(keepingCapacity: true) }
        switch state {
        case .header:
            if line == [0x0D, 0x0A] || line == [0x0A] { state = .preamble }
        case .preamble:
            if isDelimiter(line) { state = .content }
        case .content:
            if isDelimiter(line) {
                state = .done
                return
            }
            let breakLength = line.count >= 2 && line[line.count - 2] == 0x0D ? 2 : 1
            try heldBreak.withUnsafeBytes(output)
            try line.withUnsafeBytes { try output(UnsafeRawBufferPointer(rebasing: $0[..<(line.count - breakLength)])) }
            heldBreak = Array(line.suffix(breakLength))
        case .done:
            break
        }
    }

    /// `--boundary` or `--boundary--`, then only white space (RFC 2046 section 5.1.1).
    private func isDelimiter(_ line: [UInt8]) -> Bool {
        guard line.count >= delimiter.count, line.starts(with: delimiter) else { return false }
        var rest = line[delimiter.count...]
        if rest.starts(with: [0x2D, 0x2D]) { rest = rest.dropFirst(2) }
        return rest.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
    }
}
