import NIOCore

/// A POP3 command (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).
public enum POP3Command: Sendable, Hashable {
    case capa
    case stls
    case user(String)
    case pass(String)
    case apop(user: String, digest: String)
    case auth(mechanism: String, initialResponse: String?)
    case stat
    case list(Int?)
    case uidl(Int?)
    case retr(Int)
    case top(Int, lines: Int)
    case dele(Int)
    case noop
    case rset
    case quit

    /// Whether a positive answer is followed by lines ending in ".".
    public var expectsMultilineData: Bool {
        switch self {
        case .capa, .list(nil), .uidl(nil), .retr, .top: true
        default: false
        }
    }

    /// The command as it may appear in a log or an error: arguments that are secrets are masked.
    public var logDescription: String {
        switch self {
        case .capa: "CAPA"
        case .stls: "STLS"
        case .user(let user): "USER \(user)"
        case .pass: "PASS ****"
        case .apop(let user, _): "APOP \(user) ****"
        case .auth(let mechanism, _): "AUTH \(mechanism)"
        case .stat: "STAT"
        case .list(let n): n.map { "LIST \($0)" } ?? "LIST"
        case .uidl(let n): n.map { "UIDL \($0)" } ?? "UIDL"
        case .retr(let n): "RETR \(n)"
        case .top(let n, let lines): "TOP \(n) \(lines)"
        case .dele(let n): "DELE \(n)"
        case .noop: "NOOP"
        case .rset: "RSET"
        case .quit: "QUIT"
        }
    }

    /// Writes the command line. Arguments must not contain CR or LF: a user name from a site file
    /// must never be able to smuggle a second command onto the wire.
    public func encode(into buffer: inout ByteBuffer) throws(POP3Error) {
        func argument(_ text: String) throws(POP3Error) -> String {
            guard !text.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw POP3Error.invalidArgument("a command argument contains a line break")
            }
            return text
        }
        let line: String = switch self {
        case .capa: "CAPA"
        case .stls: "STLS"
        case .user(let user): "USER \(try argument(user))"
        case .pass(let password): "PASS \(try argument(password))"
        case .apop(let user, let digest): "APOP \(try argument(user)) \(try argument(digest))"
        case .auth(let mechanism, let initial):
            if let initial { "AUTH \(try argument(mechanism)) \(try argument(initial.isEmpty ? "=" : initial))" }
            else { "AUTH \(try argument(mechanism))" }
        case .stat, .list, .uidl, .retr, .top, .dele, .noop, .rset, .quit: logDescription
        }
        buffer.writeString(line)
        buffer.writeStaticString("\r\n")
    }
}

/// A status line: `+OK text` or `-ERR [CODE] text`.
public struct POP3StatusLine: Sendable, Hashable {
    public var isOK: Bool
    /// The RFC 2449 extended response code, e.g. `IN-USE`, `LOGIN-DELAY`, `SYS/TEMP`, `AUTH`.
    public var code: String?
    public var text: String

    public init(isOK: Bool, code: String? = nil, text: String) {
        self.isOK = isOK
        self.code = code
        self.text = text
    }
}

/// The server's greeting, with the APOP timestamp (`<...@...>`) when the server offers APOP.
public struct POP3Greeting: Sendable, Hashable {
    public var text: String
    public var apopTimestamp: String?

    init(text: String) {
        self.text = text
        if let open = text.firstIndex(of: "<"), let close = text[open...].firstIndex(of: ">"),
           text[open...close].contains("@") {
            apopTimestamp = String(text[open...close])
        }
    }
}
