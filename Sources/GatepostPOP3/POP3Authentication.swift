import Crypto
import Foundation

/// The authentication mechanisms Gatepost speaks, in the names site files use.
public enum POP3AuthMechanism: String, Sendable, CaseIterable {
    case user, apop, plain, login, cramMD5 = "cram-md5", xoauth2, oauthbearer, external

    /// Whether the password itself crosses the wire (base64 is not protection), so that the
    /// mechanism needs TLS or the site's explicit opt-in.
    public var sendsPasswordInClear: Bool {
        switch self {
        // A bearer token is as good as a password while it lives.
        case .user, .plain, .login, .xoauth2, .oauthbearer: true
        case .apop, .cramMD5, .external: false
        }
    }
}

extension POP3Session {
    /// APOP (RFC 1939 section 7): MD5 of the greeting's timestamp and the password.
    public func authenticateAPOP(user: String, password: String) async throws(POP3Error) {
        guard let timestamp = greeting?.apopTimestamp else {
            throw POP3Error.notSupported("APOP (the greeting has no <timestamp>)")
        }
        do {
            try await execute(.apop(user: user, digest: Self.apopDigest(timestamp: timestamp, password: password)))
        } catch .serverError(_, let status) {
            throw Self.authenticationError(status)
        }
    }

    /// SASL LOGIN: the user name, then the password, each as an answer to a challenge.
    public func authenticateLogin(user: String, password: String, allowPlaintext: Bool) async throws(POP3Error) {
        guard isEncrypted || allowPlaintext else { throw POP3Error.plaintextRefused }
        var answers = [user, password].map { Data($0.utf8).base64EncodedString() }[...]
        try await saslExchange(mechanism: "LOGIN", initialResponse: nil) { _ in
            guard let next = answers.popFirst() else { return "*" }
            return next
        }
    }

    /// SASL CRAM-MD5 (RFC 2195): HMAC-MD5 of the server's challenge keyed with the password.
    public func authenticateCRAMMD5(user: String, password: String) async throws(POP3Error) {
        try await saslExchange(mechanism: "CRAM-MD5", initialResponse: nil) { challenge in
            guard let decoded = Data(base64Encoded: challenge) else { return "*" }
            return Data(Self.cramMD5Response(user: user, password: password, challenge: decoded).utf8).base64EncodedString()
        }
    }

    /// SASL EXTERNAL (RFC 4422 appendix A): the TLS client certificate is the credential.
    public func authenticateExternal() async throws(POP3Error) {
        guard isEncrypted else {
            throw POP3Error.notSupported("EXTERNAL without TLS (it needs the TLS client certificate)")
        }
        // An empty initial response: the identity is the one the certificate names.
        try await saslExchange(mechanism: "EXTERNAL", initialResponse: "") { _ in "" }
    }

    /// XOAUTH2 (Google/Microsoft) or OAUTHBEARER (RFC 7628) with an OAuth2 bearer token.
    public func authenticateBearer(_ mechanism: POP3AuthMechanism, user: String, token: String, allowPlaintext: Bool) async throws(POP3Error) {
        guard isEncrypted || allowPlaintext else { throw POP3Error.plaintextRefused }
        let initial = Data(Self.bearerResponse(mechanism, user: user, token: token, host: configuration.host, port: configuration.port).utf8)
            .base64EncodedString()
        // A challenge after the token carries the server's error (JSON); RFC 7628 says to
        // answer it with a single ^A so the server can finish with -ERR.
        try await saslExchange(mechanism: mechanism.rawValue.uppercased(), initialResponse: initial) { _ in
            Data([0x01]).base64EncodedString()
        }
    }

    static func bearerResponse(_ mechanism: POP3AuthMechanism, user: String, token: String, host: String, port: Int) -> String {
        switch mechanism {
        case .oauthbearer: "n,a=\(user),\u{1}host=\(host)\u{1}port=\(port)\u{1}auth=Bearer \(token)\u{1}\u{1}"
        default: "user=\(user)\u{1}auth=Bearer \(token)\u{1}\u{1}"
        }
    }

    static func apopDigest(timestamp: String, password: String) -> String {
        hex(Insecure.MD5.hash(data: Data((timestamp + password).utf8)))
    }

    /// `user hex(HMAC-MD5(password, challenge))`, before base64.
    static func cramMD5Response(user: String, password: String, challenge: Data) -> String {
        let mac = HMAC<Insecure.MD5>.authenticationCode(for: challenge, using: SymmetricKey(data: Data(password.utf8)))
        return "\(user) \(hex(mac))"
    }

    static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
