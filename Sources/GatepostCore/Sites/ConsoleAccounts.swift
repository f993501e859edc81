import Foundation
import Yams

/// Who may use the console and the REST API (`users.yaml`, beside the sites folder): users who
/// log in with a password (kept as a bcrypt hash) and API tokens (kept as a SHA-256), each with
/// a role. Without the file, the console serves the local machine only, to anyone on it.
///
/// ```yaml
/// users:
///   - {name: alice, role: operator, password_hash: "$2b$12$..."}   # gatepost console hash-password
/// tokens:
///   - {name: prometheus, role: viewer, sha256: "9f86d0..."}        # gatepost console new-token
/// ```
public struct ConsoleAccounts: Sendable, Hashable {
    /// What a role may do: a viewer reads; an operator also enables and disables sites, asks
    /// for polls, retries, redelivers and sends.
    public enum Role: String, Sendable, Hashable, Codable, CaseIterable {
        case viewer
        case `operator`
    }

    public struct User: Sendable, Hashable {
        public var name: String
        public var role: Role
        /// bcrypt (`$2a$`, `$2b$` or `$2y$`).
        public var passwordHash: String

        public init(name: String, role: Role, passwordHash: String) {
            self.name = name
            self.role = role
            self.passwordHash = passwordHash
        }
    }

    public struct Token: Sendable, Hashable {
        public var name: String
        public var role: Role
        /// Hex SHA-256 of the token, lowercase.
        public var sha256: String

        public init(name: String, role: Role, sha256: String) {
            self.name = name
            self.role = role
            self.sha256 = sha256
        }
    }

    public var users: [User]
    public var tokens: [Token]

    public init(users: [User] = [], tokens: [Token] = []) {
        self.users = users
        self.tokens = tokens
    }

    public var isEmpty: Bool { users.isEmpty && tokens.isEmpty }

    /// The file beside a sites folder: `<sites>/../users.yaml`.
    public static func defaultPath(sites: String) -> String {
        ((sites as NSString).deletingLastPathComponent as NSString).appendingPathComponent("users.yaml")
    }

    /// nil when there is no file at `path`.
    public static func load(path: String) throws(SiteConfigurationError) -> ConsoleAccounts? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SiteConfigurationError(file: path, line: nil, field: nil, message: "cannot be read")
        }
        do {
            return try parse(String(decoding: data, as: UTF8.self), file: path)
        } catch let error as SiteConfigurationError {
            throw error
        } catch {
            throw SiteConfigurationError(file: path, line: nil, field: nil, message: "\(error)")
        }
    }

    public static func parse(_ text: String, file: String) throws -> ConsoleAccounts {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw SiteLoader.syntaxError(error, file: file)
        }
        guard let node else { return ConsoleAccounts() }
        let root = try ConfigNode(node: node, path: "", file: file, environment: [:]).mapping()
        try root.rejectUnknownKeys(["users", "tokens"])
        var accounts = ConsoleAccounts()
        var names = Set<String>()
        func name(_ map: ConfigMapping) throws -> String {
            let node = try map.require("name")
            let name = try node.nonEmptyString()
            guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-@".contains($0)) }), name.count <= 64 else {
                throw node.error("must be letters, digits, `.`, `_`, `-` or `@` (at most 64)")
            }
            guard names.insert(name.lowercased()).inserted else { throw node.error("`\(name)` appears twice") }
            return name
        }
        func role(_ map: ConfigMapping) throws -> Role {
            let node = try map.require("role")
            guard let role = Role(rawValue: try node.string()) else { throw node.error("must be viewer or operator") }
            return role
        }
        for entry in try root["users"]?.sequence() ?? [] {
            let map = try entry.mapping()
            try map.rejectUnknownKeys(["name", "role", "password_hash"])
            let hashNode = try map.require("password_hash")
            let hash = try hashNode.rawString()
            guard ["$2a$", "$2b$", "$2y$"].contains(String(hash.prefix(4))), hash.count == 60 else {
                throw hashNode.error("must be a bcrypt hash (`gatepost console hash-password` makes one)")
            }
            accounts.users.append(User(name: try name(map), role: try role(map), passwordHash: hash))
        }
        for entry in try root["tokens"]?.sequence() ?? [] {
            let map = try entry.mapping()
            try map.rejectUnknownKeys(["name", "role", "sha256"])
            let digestNode = try map.require("sha256")
            let digest = try digestNode.rawString().lowercased()
            guard digest.count == 64, digest.allSatisfy(\.isHexDigit) else {
                throw digestNode.error("must be the token's SHA-256 in hex (`gatepost console new-token` makes both)")
            }
            accounts.tokens.append(Token(name: try name(map), role: try role(map), sha256: digest))
        }
        return accounts
    }
}
