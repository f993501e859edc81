import Crypto
import Foundation
import GatepostCore
import GatepostWire
import HummingbirdBcrypt

/// Who is asking, once authenticated.
public struct ConsoleIdentity: Sendable, Hashable, Codable {
    /// How they proved it.
    public enum Credential: String, Sendable, Hashable, Codable {
        /// Logged in with a password; the session cookie carries it.
        case session
        /// An API token (`Authorization: Bearer`).
        case token
        /// No accounts are configured and the console listens on the local machine only:
        /// whoever reaches it has a shell here, as trusted as the command line.
        case local
        /// The daemon's control socket (`<spool>/control.sock`, owner-only like the spool):
        /// the command line of someone who may use the spool anyway.
        case controlSocket
    }

    public var name: String
    public var role: ConsoleAccounts.Role
    public var credential: Credential

    /// How the audit trail names them: `alice`, `token:prometheus`, `local`.
    public var actor: String {
        switch credential {
        case .session: name
        case .token: "token:" + name
        case .local: "local"
        case .controlSocket: name
        }
    }
}

/// What a request needs its identity's role to allow.
public enum ConsolePermission: Sendable, Hashable {
    /// Look: sites, transfers, files, metrics.
    case read
    /// Act: enable, disable, poll, test, retry, redeliver, send.
    case operate
}

/// The decisions of access, as pure functions: which role may do what, whether a state-changing
/// request carries its session's CSRF token, and whether a listening address may go without
/// TLS and accounts.
public enum ConsolePolicy {
    public static func allows(_ role: ConsoleAccounts.Role, _ permission: ConsolePermission) -> Bool {
        switch (role, permission) {
        case (_, .read): true
        case (.operator, .operate): true
        case (.viewer, .operate): false
        }
    }

    /// Whether a request that changes something may go on. A token (sent by a program, never by
    /// a browser on its own) needs no CSRF token; a session or the local credential (both of
    /// which a browser sends to any page that asks) needs the session's, submitted in the form
    /// or the `X-CSRF-Token` header.
    public static func passesCSRF(credential: ConsoleIdentity.Credential?, sessionToken: String?, submitted: String?) -> Bool {
        if credential == .token || credential == .controlSocket { return true }
        guard let sessionToken, let submitted, !sessionToken.isEmpty else { return false }
        return constantTimeEqual(Array(sessionToken.utf8), Array(submitted.utf8))
    }

    /// Why the console may not listen on `host` as configured, or nil when it may: anything but
    /// the local machine needs TLS and accounts (the operators' passwords and the partners'
    /// files would otherwise cross the network in clear, to anyone).
    public static func exposureProblem(host: String, tls: Bool, accounts: ConsoleAccounts?) -> String? {
        if isLoopback(host) { return nil }
        if !tls { return "the console on \(host) (not the local machine) needs TLS: give --http-certificate and --http-key, or listen on 127.0.0.1" }
        if accounts?.users.isEmpty ?? true {
            return "the console on \(host) (not the local machine) needs users who log in: create users.yaml (gatepost console hash-password)"
        }
        return nil
    }

    public static func isLoopback(_ host: String) -> Bool {
        let host = host.lowercased()
        return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// Checks credentials against the accounts.
public struct ConsoleAuthenticator: Sendable {
    public var accounts: ConsoleAccounts

    public init(accounts: ConsoleAccounts) {
        self.accounts = accounts
    }

    /// A bcrypt hash of nothing anyone types, verified when the user is unknown, so that an
    /// unknown name takes as long to refuse as a wrong password.
    private static let decoy = Bcrypt.hash(randomHex(bytes: 16), cost: 12)

    public func login(name: String, password: String) -> ConsoleIdentity? {
        guard let user = accounts.users.first(where: { $0.name.lowercased() == name.lowercased() }) else {
            _ = Bcrypt.verify(password, hash: Self.decoy)
            return nil
        }
        guard Bcrypt.verify(password, hash: user.passwordHash) else { return nil }
        return ConsoleIdentity(name: user.name, role: user.role, credential: .session)
    }

    public func identity(bearer token: String) -> ConsoleIdentity? {
        let digest = Array(Self.sha256(token).utf8)
        let found = accounts.tokens.first { ConsolePolicy.constantTimeEqual(Array($0.sha256.utf8), digest) }
        return found.map { ConsoleIdentity(name: $0.name, role: $0.role, credential: .token) }
    }

    static func sha256(_ text: String) -> String {
        sha256Hex(Array(text.utf8))
    }

    static func sha256Hex(_ bytes: [UInt8]) -> String {
        hexString(SHA256.hash(data: bytes))
    }

    /// A new API token and the SHA-256 that goes into users.yaml.
    public static func newToken() -> (token: String, sha256: String) {
        let token = "gp_" + randomHex(bytes: 24)
        return (token, sha256(token))
    }

    public static func hashPassword(_ password: String) -> String {
        Bcrypt.hash(password, cost: 12)
    }

    static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return hexString((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }
}
