import NIOCore

/// Turns message bytes into the DATA stream (RFC 5321 section 4.5.2), chunk by chunk, so that a
/// message of any size passes through without being held whole:
///
/// - every line ends in CRLF: a bare LF or a bare CR becomes CRLF. Bare line ends are what SMTP
///   smuggling plays on (a `<LF>.<CR><LF>` one server takes for the end of data and another does
///   not); after this, the only end of data the server sees is ours;
/// - a line that begins with "." gets another "." in front (dot-stuffing);
/// - ``finish(into:)`` ends the data with CRLF.CRLF, adding a CRLF first when the content does not
///   end with one.
///
/// The output does not depend on how the input is split into chunks: line starts and a CR at the
/// end of a chunk are carried over to the next.
public struct SMTPDataEncoder: Sendable {
    /// Whether the next byte begins a line.
    private var atLineStart = true
    /// A CR was the last byte seen; whether it is part of CRLF depends on the next byte.
    private var pendingCR = false
    public private(set) var isFinished = false

    public init() {}

    /// Encodes `chunk` and appends the result to `output`.
    public mutating func encode(_ chunk: ByteBuffer, into output: inout ByteBuffer) {
        precondition(!isFinished, "SMTPDataEncoder used after finish(into:)")
        chunk.withUnsafeReadableBytes { bytes in
            encode(bytes, into: &output)
        }
    }

    /// Encodes `bytes` and appends the result to `output`.
    public mutating func encode<Bytes: Sequence>(bytes: Bytes, into output: inout ByteBuffer) where Bytes.Element == UInt8 {
        encode(ByteBuffer(bytes: bytes), into: &output)
    }

    private mutating func encode(_ bytes: UnsafeRawBufferPointer, into output: inout ByteBuffer) {
        output.reserveCapacity(minimumWritableBytes: bytes.count + bytes.count / 64 + 8)
        // Runs of bytes that need no change are copied at once.
        var runStart = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            if pendingCR {
                // The run was flushed when the CR was seen, so the run starts here.
                pendingCR = false
                output.writeStaticString("\r\n")
                atLineStart = true
                if byte == Self.lf {
                    runStart = index + 1
                    continue
                }
            }
            switch byte {
            case Self.cr:
                output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                pendingCR = true
                runStart = index + 1
            case Self.lf:
                output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                output.writeStaticString("\r\n")
                atLineStart = true
                runStart = index + 1
            case Self.dot where atLineStart:
                output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                output.writeInteger(Self.dot)
                // The original dot starts the next run.
                runStart = index
                atLineStart = false
            default:
                atLineStart = false
            }
        }
        output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<bytes.count]))
    }

    /// Appends the end of data: CRLF if the content did not end with a line break, then ".CRLF".
    public mutating func finish(into output: inout ByteBuffer) {
        precondition(!isFinished, "SMTPDataEncoder finished twice")
        isFinished = true
        if pendingCR {
            pendingCR = false
            output.writeStaticString("\r\n")
            atLineStart = true
        }
        if !atLineStart { output.writeStaticString("\r\n") }
        output.writeStaticString(".\r\n")
    }

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let dot = UInt8(ascii: ".")
}
