import Crypto
import Foundation

/// The SASL mechanisms the client speaks (RFC 4954).
public enum SMTPAuthMechanism: String, Sendable, Hashable, CaseIterable {
    /// RFC 4616: user and password in one base64 token.
    case plain = "PLAIN"
    /// The de-facto LOGIN mechanism: user name and password answer two prompts.
    case login = "LOGIN"
    /// RFC 2195: an HMAC-MD5 of the server's challenge; the password itself never crosses the wire.
    case cramMD5 = "CRAM-MD5"
    /// Google and Microsoft: an OAuth2 bearer token.
    case xoauth2 = "XOAUTH2"

    /// Whether the mechanism takes a password (false: a bearer token).
    public var usesPassword: Bool { self != .xoauth2 }
}

/// What the client authenticates with. The secret never appears in `description`, `debugDescription`
/// or a `dump`, so that logging the credentials by mistake leaks nothing.
public struct SMTPCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public enum Secret: Sendable, Hashable {
        case password(String)
        case bearerToken(String)
    }

    public var user: String
    public var secret: Secret

    public init(user: String, password: String) {
        self.user = user
        secret = .password(password)
    }

    public init(user: String, bearerToken: String) {
        self.user = user
        secret = .bearerToken(bearerToken)
    }

    public var description: String {
        switch secret {
        case .password: "password for \(user)"
        case .bearerToken: "bearer token for \(user)"
        }
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror { Mirror(self, children: ["user": user, "secret": "****"]) }

    /// The mechanism to use: the configured one if the server offers it, otherwise the best the
    /// server offers for this kind of secret. Without TLS, CRAM-MD5 comes first because it keeps
    /// the password off the wire; with TLS, PLAIN is simplest and as safe.
    public func chooseMechanism(
        offered: [String], preferred: SMTPAuthMechanism?, connectionIsEncrypted: Bool
    ) throws(SMTPError) -> SMTPAuthMechanism {
        guard !offered.isEmpty else { throw SMTPError.notSupported("AUTH (the EHLO reply offers no mechanism)") }
        let usable: [SMTPAuthMechanism] = switch secret {
        case .bearerToken: [.xoauth2]
        case .password: connectionIsEncrypted ? [.plain, .login, .cramMD5] : [.cramMD5, .plain, .login]
        }
        if let preferred {
            guard usable.contains(preferred) else {
                throw SMTPError.invalidArgument("\(preferred.rawValue) cannot be used with a \(secret.kindName)")
            }
            guard offered.contains(preferred.rawValue) else {
                throw SMTPError.notSupported("AUTH \(preferred.rawValue) (the server offers \(offered.joined(separator: " ")))")
            }
            return preferred
        }
        guard let chosen = usable.first(where: { offered.contains($0.rawValue) }) else {
            throw SMTPError.notSupported(
                "any of \(usable.map(\.rawValue).joined(separator: ", ")) (the server offers \(offered.joined(separator: " ")))"
            )
        }
        return chosen
    }
}

extension SMTPCredentials.Secret {
    var kindName: String {
        switch self {
        case .password: "password"
        case .bearerToken: "bearer token"
        }
    }
}

/// The client side of one SASL exchange, pure: what to put on the AUTH line, and the answer to
/// each 334 challenge.
struct SASLExchange: Sendable {
    let mechanism: SMTPAuthMechanism
    private let credentials: SMTPCredentials
    private var challengesAnswered = 0
    /// The XOAUTH2 error document (JSON) the server sent as a challenge, for the error message.
    private(set) var serverDetail: String?

    /// A server that keeps challenging is broken or hostile: cancel after this many rounds.
    static let maxChallenges = 4

    init(mechanism: SMTPAuthMechanism, credentials: SMTPCredentials) throws(SMTPError) {
        switch (mechanism.usesPassword, credentials.secret) {
        case (true, .password), (false, .bearerToken): break
        default: throw SMTPError.invalidArgument("\(mechanism.rawValue) cannot be used with a \(credentials.secret.kindName)")
        }
        self.mechanism = mechanism
        self.credentials = credentials
    }

    /// The AUTH command, with an initial response where the mechanism has one (RFC 4954 section 4)
    /// to save a round trip.
    var command: SMTPCommand {
        switch (mechanism, credentials.secret) {
        case (.plain, .password(let password)):
            .auth(mechanism: mechanism.rawValue, initialResponse: Self.base64("\0\(credentials.user)\0\(password)"))
        case (.xoauth2, .bearerToken(let token)):
            .auth(mechanism: mechanism.rawValue, initialResponse: Self.base64("user=\(credentials.user)\u{1}auth=Bearer \(token)\u{1}\u{1}"))
        default:
            .auth(mechanism: mechanism.rawValue, initialResponse: nil)
        }
    }

    /// The answer to a 334 challenge (its base64 text).
    mutating func respond(to challenge: String) -> SMTPCommand {
        challengesAnswered += 1
        guard challengesAnswered <= Self.maxChallenges else { return .saslResponse("*") }
        switch (mechanism, credentials.secret) {
        case (.plain, .password(let password)):
            // The server wants the token after all (it ignored or does not take initial responses).
            return .saslResponse(Self.base64("\0\(credentials.user)\0\(password)"))
        case (.login, .password(let password)):
            // The prompts ("Username:", "Password:") vary between servers; their order does not.
            switch challengesAnswered {
            case 1: return .saslResponse(Self.base64(credentials.user))
            case 2: return .saslResponse(Self.base64(password))
            default: return .saslResponse("*")
            }
        case (.cramMD5, .password(let password)):
            guard challengesAnswered == 1, let decoded = Data(base64Encoded: challenge) else { return .saslResponse("*") }
            return .saslResponse(Self.base64(Self.cramMD5Response(user: credentials.user, password: password, challenge: decoded)))
        case (.xoauth2, .bearerToken):
            // A challenge after the token is the server's error document; an empty line lets it
            // finish with the real 5xx reply.
            serverDetail = Data(base64Encoded: challenge).map { String(decoding: $0, as: UTF8.self) }
            return .saslResponse("")
        default:
            return .saslResponse("*")
        }
    }

    static func base64(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
    }

    /// `user hex(HMAC-MD5(password, challenge))`, before base64.
    static func cramMD5Response(user: String, password: String, challenge: Data) -> String {
        let mac = HMAC<Insecure.MD5>.authenticationCode(for: challenge, using: SymmetricKey(data: Data(password.utf8)))
        return "\(user) " + mac.map { byte in
            let digits = Array("0123456789abcdef")
            return "\(digits[Int(byte >> 4)])\(digits[Int(byte & 0x0F)])"
        }.joined()
    }
}
