/// Bounds on what one message may make the parser hold or do.
///
/// Every limit protects memory or time against a hostile or broken sender. A message that passes
/// one is not dropped: the parser throws ``MIMEError/limitExceeded(_:)`` and the caller keeps the
/// message whole (RECOVER).
public struct MIMELimits: Sendable, Hashable {
    /// Bytes of one header block (the top-level header or one part's header).
    public var maxHeaderBytes: Int
    /// Bytes of one header line, and of one body line that might still be a boundary.
    public var maxHeaderLineLength: Int
    /// Nesting of multiparts inside multiparts.
    public var maxDepth: Int
    /// Parts of all kinds in one message.
    public var maxParts: Int
    /// Bytes of the whole message the parser takes; past it the message is kept whole unparsed.
    public var maxMessageSize: Int64

    public init(
        maxHeaderBytes: Int = 256 * 1024,
        maxHeaderLineLength: Int = 64 * 1024,
        maxDepth: Int = 20,
        maxParts: Int = 2_000,
        maxMessageSize: Int64 = 8 << 30
    ) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderLineLength = maxHeaderLineLength
        self.maxDepth = maxDepth
        self.maxParts = maxParts
        self.maxMessageSize = maxMessageSize
    }

    public static let `default` = MIMELimits()
}

/// Why a message could not be parsed into parts. The raw message is still intact with the caller.
public enum MIMEError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Limit: String, Sendable, Hashable {
        case headerBytes = "header block size"
        case headerLineLength = "header line length"
        case depth = "multipart nesting depth"
        case parts = "part count"
        case messageSize = "message size"
        /// A body line, where lines are read whole (a signed part's raw bytes).
        case lineLength = "line length"
    }

    case limitExceeded(Limit)
    case malformedHeader(String)
    case malformedBody(String)

    public var description: String {
        switch self {
        case .limitExceeded(let limit): "message exceeds the \(limit.rawValue) limit"
        case .malformedHeader(let reason): "malformed header: \(reason)"
        case .malformedBody(let reason): "malformed body: \(reason)"
        }
    }
}
