import Crypto
import Foundation

/// What a client can authenticate with. A mechanism takes exactly one kind.
public enum SecretKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case password
    case bearerToken = "bearer token"
    /// The TLS client certificate presented in the handshake (SASL EXTERNAL).
    case clientCertificate = "client certificate"

    public var description: String { rawValue }
}

/// A way to authenticate that a protocol may offer: the SASL mechanisms, and POP3's USER/PASS
/// and APOP, which are chosen by the same rule (``AuthenticationChoice``).
public protocol AuthenticationMechanism: Sendable, Hashable {
    /// The name the server announces and the operator writes.
    var name: String { get }
    var secretKind: SecretKind { get }
    /// Whether the secret itself crosses the wire (base64 is not protection): such a mechanism
    /// needs TLS, or the configuration's explicit opt-in.
    var sendsSecretInClear: Bool { get }
}

/// The SASL mechanisms Gatepost speaks, for POP3 (RFC 5034) and SMTP (RFC 4954) alike.
public enum SASLMechanism: String, AuthenticationMechanism, CaseIterable {
    /// RFC 4616: user and password in one base64 token.
    case plain = "PLAIN"
    /// The de-facto LOGIN mechanism: user name and password answer two prompts.
    case login = "LOGIN"
    /// RFC 2195: an HMAC-MD5 of the server's challenge; the password never crosses the wire.
    case cramMD5 = "CRAM-MD5"
    /// Google and Microsoft: an OAuth2 bearer token.
    case xoauth2 = "XOAUTH2"
    /// RFC 7628: an OAuth2 bearer token in a GS2 header.
    case oauthbearer = "OAUTHBEARER"
    /// RFC 4422 appendix A: the identity the TLS client certificate proves.
    case external = "EXTERNAL"

    public var name: String { rawValue }

    public var secretKind: SecretKind {
        switch self {
        case .plain, .login, .cramMD5: .password
        case .xoauth2, .oauthbearer: .bearerToken
        case .external: .clientCertificate
        }
    }

    public var sendsSecretInClear: Bool {
        switch self {
        // A bearer token is as good as a password while it lives.
        case .plain, .login, .xoauth2, .oauthbearer: true
        case .cramMD5, .external: false
        }
    }

    /// The order to try without a configured one: a client certificate or a token when there is
    /// one, then for a password PLAIN first under TLS (simplest, and as safe) and CRAM-MD5 first
    /// without (it keeps the password off the wire).
    public static func defaultPreference(connectionIsEncrypted: Bool) -> [SASLMechanism] {
        connectionIsEncrypted
            ? [.external, .xoauth2, .oauthbearer, .plain, .login, .cramMD5]
            : [.external, .xoauth2, .oauthbearer, .cramMD5, .plain, .login]
    }
}

/// What the client authenticates with. The secret never appears in `description`,
/// `debugDescription` or a `dump`, so that logging the credentials by mistake leaks nothing.
public struct SASLCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public enum Secret: Sendable, Hashable {
        case password(String)
        case bearerToken(String)
        case clientCertificate

        public var kind: SecretKind {
            switch self {
            case .password: .password
            case .bearerToken: .bearerToken
            case .clientCertificate: .clientCertificate
            }
        }
    }

    public var user: String
    public var secret: Secret

    public init(user: String, secret: Secret) {
        self.user = user
        self.secret = secret
    }

    public init(user: String, password: String) {
        self.init(user: user, secret: .password(password))
    }

    public init(user: String, bearerToken: String) {
        self.init(user: user, secret: .bearerToken(bearerToken))
    }

    public var description: String { "\(secret.kind) for \(user)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["user": user, "secret": "****"]) }
}

/// Why no mechanism can be used; the protocol modules wrap it in their own error.
public enum AuthenticationUnavailable: Error, Sendable, Hashable, CustomStringConvertible {
    /// None of the wanted mechanisms takes a secret the configuration has.
    case noFittingSecret(wanted: [String], available: [SecretKind])
    /// The server offers none of the wanted mechanisms that fit.
    case notOffered(wanted: [String], offered: String)
    /// What the server offers would send the secret readable on an unencrypted connection.
    case cleartextRefused(mechanism: String)

    public var description: String {
        switch self {
        case .noFittingSecret(let wanted, let available):
            let have = available.isEmpty ? "no secret" : "a " + available.map(\.description).joined(separator: " or a ")
            return "\(wanted.joined(separator: ", ")) cannot be used with \(have)"
        case .notOffered(let wanted, let offered):
            return "any of \(wanted.joined(separator: ", ")) (the server offers \(offered.isEmpty ? "none" : offered))"
        case .cleartextRefused(let mechanism):
            return "\(mechanism) would send the secret over an unencrypted connection"
        }
    }
}

/// One rule for choosing how to authenticate, in every protocol: the first mechanism of the
/// preference that fits a secret the configuration has, that the server offers, and that this
/// connection may carry.
public enum AuthenticationChoice {
    public static func choose<Mechanism: AuthenticationMechanism>(
        from preference: [Mechanism],
        available: Set<SecretKind>,
        isOffered: (Mechanism) -> Bool,
        offeredDescription: String,
        connectionIsEncrypted: Bool,
        allowCleartext: Bool
    ) throws(AuthenticationUnavailable) -> Mechanism {
        let fitting = preference.filter { available.contains($0.secretKind) }
        guard !fitting.isEmpty else {
            throw .noFittingSecret(wanted: preference.map(\.name), available: SecretKind.allCases.filter(available.contains))
        }
        let offered = fitting.filter(isOffered)
        guard let first = offered.first else {
            throw .notOffered(wanted: fitting.map(\.name), offered: offeredDescription)
        }
        guard let usable = offered.first(where: { connectionIsEncrypted || allowCleartext || !$0.sendsSecretInClear }) else {
            throw .cleartextRefused(mechanism: first.name)
        }
        return usable
    }
}

/// The client side of one SASL exchange, pure and the same for POP3 and SMTP: the initial
/// response for the AUTH line, and the answer to each challenge. Texts are base64, as both
/// protocols carry them.
public struct SASLClient: Sendable {
    public let mechanism: SASLMechanism
    private let credentials: SASLCredentials
    /// For OAUTHBEARER's GS2 header.
    private let host: String
    private let port: Int
    private var challengesAnswered = 0
    /// The error document (JSON) a bearer-token server sent as a challenge, for the error message.
    public private(set) var serverDetail: String?

    /// A server that keeps challenging is broken or hostile: cancel after this many rounds.
    public static let maxChallenges = 4

    public init(mechanism: SASLMechanism, credentials: SASLCredentials, host: String, port: Int) throws(AuthenticationUnavailable) {
        guard mechanism.secretKind == credentials.secret.kind else {
            throw .noFittingSecret(wanted: [mechanism.name], available: [credentials.secret.kind])
        }
        self.mechanism = mechanism
        self.credentials = credentials
        self.host = host
        self.port = port
    }

    /// The initial response (RFC 4422 section 5) where the mechanism has one, saving a round
    /// trip; an empty string is an empty response, which the protocols write as `=`.
    public var initialResponse: String? {
        switch (mechanism, credentials.secret) {
        case (.plain, .password(let password)):
            Self.base64("\0\(credentials.user)\0\(password)")
        case (.xoauth2, .bearerToken(let token)):
            Self.base64("user=\(credentials.user)\u{1}auth=Bearer \(token)\u{1}\u{1}")
        case (.oauthbearer, .bearerToken(let token)):
            Self.base64("n,a=\(credentials.user),\u{1}host=\(host)\u{1}port=\(port)\u{1}auth=Bearer \(token)\u{1}\u{1}")
        case (.external, _):
            // The identity is the one the certificate names.
            ""
        default:
            nil
        }
    }

    /// The answer to a challenge (its base64 text); `*` cancels the exchange.
    public mutating func respond(to challenge: String) -> String {
        challengesAnswered += 1
        guard challengesAnswered <= Self.maxChallenges else { return "*" }
        switch (mechanism, credentials.secret) {
        case (.plain, .password):
            // The server wants the token after all (it ignored or does not take initial responses).
            return initialResponse ?? "*"
        case (.login, .password(let password)):
            // The prompts ("Username:", "Password:") vary between servers; their order does not.
            switch challengesAnswered {
            case 1: return Self.base64(credentials.user)
            case 2: return Self.base64(password)
            default: return "*"
            }
        case (.cramMD5, .password(let password)):
            guard challengesAnswered == 1, let decoded = Data(base64Encoded: challenge) else { return "*" }
            return Self.base64(Self.cramMD5Response(user: credentials.user, password: password, challenge: decoded))
        case (.xoauth2, .bearerToken), (.oauthbearer, .bearerToken):
            // A challenge after the token is the server's error document. XOAUTH2 answers it
            // with an empty line, OAUTHBEARER with a single ^A (RFC 7628 section 3.2.3); either
            // lets the server finish with its real failure reply.
            serverDetail = Data(base64Encoded: challenge).map { String(decoding: $0, as: UTF8.self) }
            return mechanism == .xoauth2 ? "" : Self.base64("\u{1}")
        case (.external, _):
            return ""
        default:
            return "*"
        }
    }

    static func base64(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
    }

    /// `user hex(HMAC-MD5(password, challenge))`, before base64.
    public static func cramMD5Response(user: String, password: String, challenge: Data) -> String {
        let mac = HMAC<Insecure.MD5>.authenticationCode(for: challenge, using: SymmetricKey(data: Data(password.utf8)))
        return "\(user) \(hexString(mac))"
    }
}

/// Lower-case hex, as `sha256sum` prints it and CRAM-MD5 and APOP send it.
public func hexString<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
