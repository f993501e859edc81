/// Everything that can go wrong talking to a POP3 server, phrased for the operator.
public enum POP3Error: Error, Sendable, Hashable, CustomStringConvertible {
    /// TCP connection could not be made.
    case connectionFailed(host: String, port: Int, reason: String)
    /// The server closed the connection (or it was reset) while we waited for `during`.
    case connectionClosed(during: String)
    /// Nothing arrived for too long.
    case timeout(during: String)
    /// TLS handshake or certificate verification failed.
    case tlsFailed(String)
    /// The site would send a password in clear text and has not allowed that.
    case plaintextRefused
    /// The server does not offer something the site requires (e.g. STLS).
    case notSupported(String)
    /// USER/PASS, APOP or AUTH was refused.
    case authenticationFailed(String)
    /// The server answered `-ERR` to a command.
    case serverError(command: String, status: POP3StatusLine)
    /// The server sent something that is not POP3, or too much of it.
    case protocolViolation(String)
    /// A command argument was unusable.
    case invalidArgument(String)
    /// A command was issued in a session state that does not allow it (a bug in the caller).
    case invalidState(String)

    public var description: String {
        switch self {
        case .connectionFailed(let host, let port, let reason):
            "cannot connect to \(host):\(port): \(reason)"
        case .connectionClosed(let during):
            "the server closed the connection during \(during)"
        case .timeout(let during):
            "the server did not answer in time during \(during)"
        case .tlsFailed(let reason):
            "TLS failed: \(reason) (check the host name, the server certificate, and the site's tls.ca_file)"
        case .plaintextRefused:
            "refusing to send a password over an unencrypted connection; use security: tls or starttls, or set pop3.allow_plaintext_password: true"
        case .notSupported(let what):
            "the server does not support \(what)"
        case .authenticationFailed(let text):
            "authentication failed: \(text.isEmpty ? "the server refused the credentials" : "the server said \"\(text)\"") (check the user and password)"
        case .serverError(let command, let status):
            "the server answered \(command) with -ERR\(status.code.map { " [\($0)]" } ?? "") \(status.text)\(Self.hint(for: status.code))"
        case .protocolViolation(let what):
            "protocol violation by the server: \(what)"
        case .invalidArgument(let what):
            "invalid argument: \(what)"
        case .invalidState(let what):
            "invalid POP3 session state: \(what)"
        }
    }

    static func hint(for code: String?) -> String {
        switch code {
        case "IN-USE": " (another session holds the mailbox)"
        case "LOGIN-DELAY": " (the server limits how often we may log in; polling later)"
        case "SYS/TEMP": " (a temporary problem on the server)"
        case "SYS/PERM": " (a permanent problem on the server: ask the partner)"
        default: ""
        }
    }

    /// The server asked us not to log in again for a while (RFC 2449 LOGIN-DELAY).
    public var isLoginDelay: Bool {
        if case .serverError(_, let status) = self { return status.code == "LOGIN-DELAY" }
        return false
    }

    /// Whether trying again later may succeed (network trouble, temporary server conditions).
    public var isTransient: Bool {
        switch self {
        case .connectionFailed, .connectionClosed, .timeout: true
        case .serverError(_, let status):
            status.code == "IN-USE" || status.code == "LOGIN-DELAY" || status.code == "SYS/TEMP"
        case .authenticationFailed, .tlsFailed, .plaintextRefused, .notSupported,
             .protocolViolation, .invalidArgument, .invalidState:
            false
        }
    }
}
