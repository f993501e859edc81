import Crypto
import Foundation
import GatepostWire

/// The ways to log in to a POP3 server, in the names site files use: RFC 1939's USER/PASS and
/// APOP, and the SASL mechanisms (RFC 5034) shared with SMTP.
public enum POP3AuthMechanism: String, AuthenticationMechanism, CaseIterable {
    case user, apop, plain, login, cramMD5 = "cram-md5", xoauth2, oauthbearer, external

    public init(_ mechanism: SASLMechanism) {
        switch mechanism {
        case .plain: self = .plain
        case .login: self = .login
        case .cramMD5: self = .cramMD5
        case .xoauth2: self = .xoauth2
        case .oauthbearer: self = .oauthbearer
        case .external: self = .external
        }
    }

    /// The SASL mechanism behind the name; nil for USER/PASS and APOP.
    public var sasl: SASLMechanism? {
        switch self {
        case .user, .apop: nil
        case .plain: .plain
        case .login: .login
        case .cramMD5: .cramMD5
        case .xoauth2: .xoauth2
        case .oauthbearer: .oauthbearer
        case .external: .external
        }
    }

    public var name: String { rawValue }

    public var secretKind: SecretKind { sasl?.secretKind ?? .password }

    public var sendsSecretInClear: Bool {
        switch self {
        case .user: true
        case .apop: false
        default: sasl?.sendsSecretInClear ?? true
        }
    }

    /// The order to try without `auth:` in the site: SASL's order, then USER/PASS. APOP (no
    /// capability announces it, and MD5 of the password is weak) only when the site asks.
    public static func defaultPreference(connectionIsEncrypted: Bool) -> [POP3AuthMechanism] {
        SASLMechanism.defaultPreference(connectionIsEncrypted: connectionIsEncrypted).map(POP3AuthMechanism.init) + [.user]
    }
}

extension POP3Error {
    /// The POP3 wording of a mechanism that cannot be used.
    init(_ unavailable: AuthenticationUnavailable) {
        switch unavailable {
        case .cleartextRefused: self = .plaintextRefused
        case .notOffered: self = .notSupported("\(unavailable)")
        case .noFittingSecret: self = .invalidArgument(unavailable.description)
        }
    }
}

extension POP3Session {
    /// The way to log in: the first of `preference` (empty: the default order) that fits a secret
    /// the site has, that the server offers, and that this connection may carry
    /// (``AuthenticationChoice``, the rule SMTP uses too).
    public func chooseAuthentication(
        preference: [POP3AuthMechanism], available: Set<SecretKind>, allowPlaintext: Bool
    ) throws(POP3Error) -> POP3AuthMechanism {
        let offered = capabilities?.saslMechanisms ?? []
        let hasTimestamp = greeting?.apopTimestamp != nil
        let encrypted = isEncrypted
        do {
            return try AuthenticationChoice.choose(
                from: preference.isEmpty ? POP3AuthMechanism.defaultPreference(connectionIsEncrypted: encrypted) : preference,
                available: available,
                isOffered: { mechanism in
                    switch mechanism {
                    // RFC 1939 makes USER/PASS optional but every server has it; CAPA may not say.
                    case .user: true
                    case .apop: hasTimestamp
                    case .external: encrypted && offered.contains("EXTERNAL")
                    default: offered.contains(mechanism.rawValue.uppercased())
                    }
                },
                offeredDescription: (offered.isEmpty ? "no SASL" : "SASL " + offered.joined(separator: " "))
                    + (hasTimestamp ? ", APOP" : "") + ", USER",
                connectionIsEncrypted: encrypted,
                allowCleartext: allowPlaintext
            )
        } catch {
            throw POP3Error(error)
        }
    }

    /// Logs in with `mechanism` (from ``chooseAuthentication(preference:available:allowPlaintext:)``).
    public func authenticate(_ mechanism: POP3AuthMechanism, credentials: SASLCredentials, allowPlaintext: Bool) async throws(POP3Error) {
        guard isEncrypted || allowPlaintext || !mechanism.sendsSecretInClear else { throw POP3Error.plaintextRefused }
        switch (mechanism, credentials.secret) {
        case (.user, .password(let password)):
            do {
                try await execute(.user(credentials.user))
                try await execute(.pass(password))
            } catch .serverError(_, let status) {
                throw Self.authenticationError(status)
            }
        case (.apop, .password(let password)):
            // RFC 1939 section 7: MD5 of the greeting's timestamp and the password.
            guard let timestamp = greeting?.apopTimestamp else {
                throw POP3Error.notSupported("APOP (the greeting has no <timestamp>)")
            }
            do {
                try await execute(.apop(user: credentials.user, digest: Self.apopDigest(timestamp: timestamp, password: password)))
            } catch .serverError(_, let status) {
                throw Self.authenticationError(status)
            }
        case (.user, _), (.apop, _):
            throw POP3Error.invalidArgument("\(mechanism.rawValue) needs a password, not a \(credentials.secret.kind)")
        default:
            guard let sasl = mechanism.sasl else { return }
            if sasl == .external, !isEncrypted {
                throw POP3Error.notSupported("EXTERNAL without TLS (it needs the TLS client certificate)")
            }
            let exchange: SASLClient
            do {
                exchange = try SASLClient(mechanism: sasl, credentials: credentials, host: configuration.host, port: configuration.port)
            } catch {
                throw POP3Error(error)
            }
            try await saslExchange(exchange)
        }
    }

    static func apopDigest(timestamp: String, password: String) -> String {
        hexString(Insecure.MD5.hash(data: Data((timestamp + password).utf8)))
    }
}
