import Foundation
import NIOSSL
import PostgresNIO

/// Where a PostgreSQL catalog is, read from a URL as libpq reads one:
///
///     postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require
///     postgres://USER@/DATABASE?host=/run/postgresql          (a unix socket's folder)
///     postgres://USER@%2Frun%2Fpostgresql/DATABASE            (the same, percent-encoded)
///
/// The password is kept for connecting and for nothing else: ``description`` (what errors and
/// logs show) leaves it out.
struct PostgresLocation: Sendable, CustomStringConvertible {
    enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The socket file itself (`<folder>/.s.PGSQL.<port>`), as postgres-nio takes it.
        case socket(path: String)
    }

    /// libpq's `sslmode`, the operator's choice of how far to trust the network.
    enum SSLMode: String, Sendable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    var endpoint: Endpoint
    var user: String
    var password: String?
    var database: String
    var sslMode: SSLMode
    /// A CA bundle (PEM) the server's certificate must chain to (libpq's `sslrootcert`).
    var sslRootCertificate: String?

    /// Debian's (and libpq's usual) socket folder, for a URL that names no host.
    static let defaultSocketFolder = "/var/run/postgresql"

    init(parsing url: String) throws(PostgresCatalogError) {
        // The URL holds a password: no message here quotes it, only names what is wrong.
        let rest: Substring
        if url.hasPrefix("postgres://") {
            rest = url.dropFirst("postgres://".count)
        } else if url.hasPrefix("postgresql://") {
            rest = url.dropFirst("postgresql://".count)
        } else {
            throw .invalidURL("it must start with postgres:// or postgresql:// (postgres://user:password@host:port/database)")
        }
        let (beforeQuery, query) = Self.split(rest, at: "?")
        let (authority, path) = Self.split(beforeQuery, at: "/")
        var parameters: [String: String] = [:]
        let known = ["sslmode", "sslrootcert", "host", "port", "user", "password", "dbname"]
        for (position, pair) in (query ?? "").split(separator: "&", omittingEmptySubsequences: true).enumerated() {
            let (key, value) = Self.split(pair, at: "=")
            // Counted, not quoted: a password pasted in the wrong place must not be echoed.
            guard let name = key.removingPercentEncoding, let decoded = (value ?? "").removingPercentEncoding, known.contains(name) else {
                throw .invalidURL("query parameter \(position + 1) is not one of \(known.joined(separator: ", "))")
            }
            parameters[name] = decoded
        }

        var userInfo: Substring?
        var hostAndPort = authority
        if let at = authority.lastIndex(of: "@") {
            userInfo = authority[..<at]
            hostAndPort = authority[authority.index(after: at)...]
        }
        var user: String?
        var password: String?
        if let userInfo {
            let (name, secret) = Self.split(userInfo, at: ":")
            guard let decodedName = name.removingPercentEncoding else { throw .invalidURL("the user name is not valid percent-encoding") }
            user = decodedName.isEmpty ? nil : decodedName
            if let secret {
                guard let decoded = secret.removingPercentEncoding else { throw .invalidURL("the password is not valid percent-encoding") }
                password = decoded
            }
        }
        user = parameters["user"] ?? user
        password = parameters["password"] ?? password
        guard let user else {
            throw .invalidURL("it names no user (postgres://user:password@host:port/database)")
        }

        var host: String
        var portText: Substring?
        if hostAndPort.hasPrefix("[") {
            // An IPv6 literal: [::1]:5432
            guard let close = hostAndPort.firstIndex(of: "]") else { throw .invalidURL("an IPv6 address is not closed by ]") }
            host = String(hostAndPort[hostAndPort.index(after: hostAndPort.startIndex)..<close])
            let after = hostAndPort[hostAndPort.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw .invalidURL("unexpected text after the IPv6 address") }
        } else {
            let (name, port) = Self.split(hostAndPort, at: ":")
            guard let decoded = name.removingPercentEncoding else { throw .invalidURL("the host is not valid percent-encoding") }
            host = decoded
            portText = port
        }
        if let named = parameters["host"] { host = named }
        if let named = parameters["port"] { portText = Substring(named) }
        var port = 5432
        if let portText, !portText.isEmpty {
            guard let number = Int(portText), (1...65535).contains(number) else { throw .invalidURL("the port must be a number from 1 to 65535") }
            port = number
        }

        if host.isEmpty { host = Self.defaultSocketFolder }
        if host.hasPrefix("/") {
            // libpq names the socket's folder; a path to the socket file itself is taken as is.
            let file = (host as NSString).lastPathComponent
            endpoint = .socket(path: file.hasPrefix(".s.PGSQL.") ? host : (host as NSString).appendingPathComponent(".s.PGSQL.\(port)"))
        } else {
            endpoint = .tcp(host: host, port: port)
        }

        var database = ""
        if let path {
            guard let decoded = path.removingPercentEncoding else { throw .invalidURL("the database name is not valid percent-encoding") }
            database = decoded
        }
        if let named = parameters["dbname"] { database = named }
        // As libpq: no database named is the user's own.
        self.database = database.isEmpty ? user : database
        self.user = user
        self.password = password
        if let mode = parameters["sslmode"] {
            guard let known = SSLMode(rawValue: mode) else {
                throw .invalidURL("sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            sslMode = known
        } else {
            sslMode = .prefer
        }
        sslRootCertificate = parameters["sslrootcert"]
    }

    private static func split(_ text: Substring, at separator: Character) -> (Substring, Substring?) {
        guard let index = text.firstIndex(of: separator) else { return (text, nil) }
        return (text[..<index], text[text.index(after: index)...])
    }

    /// The URL without its password: what errors and logs name.
    var description: String {
        let user = self.user.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? self.user
        let database = self.database.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? self.database
        switch endpoint {
        case .tcp(let host, let port):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return "postgres://\(user)@\(shownHost):\(port)/\(database)?sslmode=\(sslMode.rawValue)"
        case .socket(let path):
            return "postgres://\(user)@/\(database)?host=\(path)"
        }
    }

    /// The server, without user or password: "127.0.0.1:5432" or the socket's path.
    var server: String {
        switch endpoint {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .socket(let path): path
        }
    }

    /// The TLS settings `sslmode` asks for, as libpq reads them: `prefer` and `require` encrypt
    /// without checking who answers (unless `sslrootcert` is given); `verify-ca` checks the
    /// chain, `verify-full` the chain and the host name.
    func tlsConfiguration() -> TLSConfiguration? {
        guard sslMode != .disable else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch sslMode {
        case .disable: return nil
        case .allow, .prefer:
            configuration.certificateVerification = .none
        case .require:
            configuration.certificateVerification = sslRootCertificate == nil ? .none : .noHostnameVerification
        case .verifyCA:
            configuration.certificateVerification = .noHostnameVerification
        case .verifyFull:
            configuration.certificateVerification = .fullVerification
        }
        if let sslRootCertificate {
            configuration.trustRoots = .file(sslRootCertificate)
        }
        return configuration
    }

    /// The settings of one connection of its own (the first one, which checks the server and
    /// migrates).
    func connectionConfiguration() throws(PostgresCatalogError) -> PostgresConnection.Configuration {
        switch endpoint {
        case .socket(let path):
            return PostgresConnection.Configuration(unixSocketPath: path, username: user, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS
            if let configuration = tlsConfiguration() {
                do {
                    let context = try NIOSSLContext(configuration: configuration)
                    tls = [.allow, .prefer].contains(sslMode) ? .prefer(context) : .require(context)
                } catch {
                    throw .tls(server: description, reason: "cannot set up TLS: \(error)")
                }
            } else {
                tls = .disable
            }
            return PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
    }

    /// The settings of the pool's connections.
    func clientConfiguration() -> PostgresClient.Configuration {
        switch endpoint {
        case .socket(let path):
            return PostgresClient.Configuration(unixSocketPath: path, username: user, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            if let configuration = tlsConfiguration() {
                tls = [.allow, .prefer].contains(sslMode) ? .prefer(configuration) : .require(configuration)
            } else {
                tls = .disable
            }
            return PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
    }
}
