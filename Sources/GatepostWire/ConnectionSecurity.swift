/// How a protocol client protects its connection; POP3 and SMTP use the same three modes.
public enum ConnectionSecurity: String, Sendable, Hashable, CaseIterable {
    /// TLS from the first byte (pop3s on 995, submissions on 465; RFC 8314).
    case tls
    /// A plain connection upgraded in the protocol (POP3 STLS, RFC 2595; SMTP STARTTLS, RFC 3207)
    /// before authentication. Refused when the server does not offer the upgrade: going on in
    /// clear text is exactly what a downgrade attacker would arrange.
    case starttls
    /// No encryption at all: only when configured explicitly.
    case none
}
