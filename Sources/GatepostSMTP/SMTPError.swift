/// Everything that can go wrong talking to an SMTP server, phrased for the operator. No case
/// carries a password or token: only addresses, user names, mechanisms and the server's replies.
public enum SMTPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// TCP connection could not be made.
    case connectionFailed(host: String, port: Int, reason: String)
    /// The server closed the connection (or it was reset) while we waited for `during`.
    case connectionClosed(during: String)
    /// Nothing arrived (and nothing could be sent) for too long.
    case timeout(during: String)
    /// TLS handshake or certificate verification failed.
    case tlsFailed(String)
    /// AUTH over an unencrypted connection, which the configuration has not allowed.
    case insecureAuthenticationRefused
    /// The server does not offer something the configuration requires (STARTTLS, AUTH, SMTPUTF8).
    case notSupported(String)
    /// The server did not greet with 220 (554: it does not want us; 4xx: not now).
    case greetingRefused(SMTPReply)
    /// 421: the server is closing the connection (shutting down, too busy, too many errors).
    case serviceNotAvailable(during: String, reply: SMTPReply)
    /// AUTH was refused. `serverDetail` is the decoded XOAUTH2 error document when there is one.
    case authenticationFailed(mechanism: String, reply: SMTPReply, serverDetail: String?)
    /// A session command (EHLO and HELO, STARTTLS, RSET) was refused.
    case commandFailed(command: String, reply: SMTPReply)
    /// The server did not take the message; per-recipient replies are in the failure.
    case messageRefused(SMTPTransactionFailure)
    /// The message is larger than the server's advertised SIZE limit (RFC 1870).
    case messageTooLarge(size: Int, limit: Int)
    /// Reading the message to send failed; the transaction was abandoned with the connection.
    case messageSourceFailed(String)
    /// Bytes from the server that are not SMTP replies.
    case malformedReply(SMTPReplyParserError)
    /// A well-formed reply that makes no sense at this point.
    case protocolViolation(String)
    /// An address or argument that cannot be sent.
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
            "TLS failed: \(reason) (check the host name, the server certificate, and the configured CA file)"
        case .insecureAuthenticationRefused:
            "refusing to authenticate over an unencrypted connection; use implicit TLS or STARTTLS, or allow insecure authentication explicitly"
        case .notSupported(let what):
            "the server does not support \(what)"
        case .greetingRefused(let reply):
            "the server refused the connection: \(reply)\(reply.isTransientFailure ? " (temporary; retrying later)" : "")"
        case .serviceNotAvailable(let during, let reply):
            "the server closed the session during \(during): \(reply) (temporary; retrying later)"
        case .authenticationFailed(let mechanism, let reply, let detail):
            "authentication with \(mechanism) failed: \(reply)\(detail.map { " (\($0))" } ?? "")"
                + (reply.isTransientFailure ? " (temporary; retrying later)" : " (check the user name and password or token)")
        case .commandFailed(let command, let reply):
            "the server answered \(command) with \(reply)"
        case .messageRefused(let failure):
            failure.description + (failure.isTransient ? " (temporary; retrying later)" : "")
        case .messageTooLarge(let size, let limit):
            "the message has \(size) bytes but the server accepts at most \(limit)"
        case .messageSourceFailed(let reason):
            "cannot read the message to send: \(reason)"
        case .malformedReply(let error):
            "protocol violation by the server: \(error)"
        case .protocolViolation(let what):
            "protocol violation by the server: \(what)"
        case .invalidArgument(let what):
            "invalid argument: \(what)"
        case .invalidState(let what):
            "invalid SMTP session state: \(what)"
        }
    }

    /// Whether trying again later may succeed: network trouble and 4xx replies.
    public var isTransient: Bool {
        switch self {
        case .connectionFailed, .connectionClosed, .timeout, .serviceNotAvailable:
            true
        case .greetingRefused(let reply), .authenticationFailed(_, let reply, _), .commandFailed(_, let reply):
            reply.isTransientFailure
        case .messageRefused(let failure):
            failure.isTransient
        case .tlsFailed, .insecureAuthenticationRefused, .notSupported, .messageTooLarge, .messageSourceFailed,
             .malformedReply, .protocolViolation, .invalidArgument, .invalidState:
            false
        }
    }
}
