import Foundation
import GatepostCatalog
import PostgresNIO
import _ConnectionPoolModule

/// What went wrong with a PostgreSQL catalog, worded for the operator who has to act on it.
/// Servers are named by ``PostgresLocation/description`` (the URL without its password), and
/// no case carries a password: postgres-nio's own errors are read for their code and the
/// server's message, never printed whole (their reflection includes the statement's values).
public enum PostgresCatalogError: Error, CustomStringConvertible, Sendable {
    case invalidURL(String)
    case cannotConnect(server: String, reason: String)
    case authenticationFailed(server: String, user: String, reason: String)
    case noSuchDatabase(server: String, database: String)
    case tls(server: String, reason: String)
    case notUTF8(server: String, encoding: String)
    /// The schema was migrated by a newer Gatepost than this one.
    case schemaNewer(server: String, found: Int, known: Int)
    case migrationFailed(server: String, version: Int, reason: String)
    /// The server refused or failed a statement (a clash with a stored id is one).
    case statementFailed(operation: String, reason: String)
    /// The connection went away, or the pool cannot open one.
    case connectionLost(operation: String, reason: String)
    /// A reused UIDL whose row no longer names the transfer the poll saw under it: another
    /// poller recorded the message first.
    case uidlTaken(site: String, uidl: String)
    case noSuchTransfer(id: String)
    /// ``PostgresCatalog/close()`` was called.
    case closed

    public var description: String {
        switch self {
        case .invalidURL(let reason):
            "the PostgreSQL catalog URL is not valid: \(reason)"
        case .cannotConnect(let server, let reason):
            "cannot connect to the PostgreSQL catalog \(server): \(reason); check that the server runs and accepts connections "
                + "there (listen_addresses, port, firewall) and that the URL's host and port are right"
        case .authenticationFailed(let server, let user, let reason):
            "PostgreSQL refused user \(user) for the catalog \(server): \(reason); check the user and password in the URL "
                + "and the server's pg_hba.conf"
        case .noSuchDatabase(let server, let database):
            "the PostgreSQL catalog \(server) names database \(database), which the server does not have: create it "
                + "(createdb -O <user> \(database)) or correct the URL"
        case .tls(let server, let reason):
            "TLS to the PostgreSQL catalog \(server) failed: \(reason); check the server's ssl settings and the URL's sslmode "
                + "and sslrootcert"
        case .notUTF8(let server, let encoding):
            "the PostgreSQL catalog \(server) is a database in encoding \(encoding); Gatepost needs UTF8: create the database "
                + "with ENCODING 'UTF8'"
        case .schemaNewer(let server, let found, let known):
            "the PostgreSQL catalog \(server) has schema version \(found), newer than this Gatepost knows (\(known)): another "
                + "node runs a newer Gatepost; upgrade this one (a catalog is never migrated backwards)"
        case .migrationFailed(let server, let version, let reason):
            "migrating the PostgreSQL catalog \(server) to schema version \(version) failed (nothing of it was applied): \(reason)"
        case .statementFailed(let operation, let reason):
            "the PostgreSQL catalog could not \(operation): \(reason)"
        case .connectionLost(let operation, let reason):
            "the PostgreSQL catalog could not \(operation): \(reason)"
        case .uidlTaken(let site, let uidl):
            "UIDL \(uidl) of site \(site) was recorded by another poll meanwhile"
        case .noSuchTransfer(let id):
            "no transfer \(id) in the catalog"
        case .closed:
            "the PostgreSQL catalog was closed"
        }
    }

    /// The SQLSTATE of a statement the server refused, if `error` is one.
    static func sqlState(of error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// The constraint a statement broke, as the server names it.
    static func constraint(of error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.constraintName]
    }

    /// The server's own words for `error` (message, detail, hint, SQLSTATE), or what postgres-nio
    /// says happened on the connection.
    static func reason(_ error: any Error) -> String {
        guard let error = error as? PSQLError else {
            if let error = error as? PostgresDecodingError {
                return "a value of column \(error.columnName) (\(error.postgresType)) cannot be read as \(error.targetType): \(error.code)"
            }
            return String(describing: error)
        }
        switch error.code {
        case .server:
            let info = error.serverInfo
            var text = info?[.message] ?? "an error"
            if let detail = info?[.detail] { text += " (\(detail))" }
            if let hint = info?[.hint] { text += "; hint: \(hint)" }
            if let state = info?[.sqlState] { text += " [SQLSTATE \(state)]" }
            return text
        case .connectionError:
            return error.underlying.map { String(describing: $0) } ?? "the connection failed"
        case .serverClosedConnection, .uncleanShutdown:
            return "the server closed the connection" + (error.underlying.map { " (\($0))" } ?? "")
        case .clientClosedConnection, .poolClosed:
            return "the connection was closed by Gatepost"
        case .queryCancelled:
            return "the statement was cancelled"
        case .sslUnsupported:
            return "the server does not accept TLS connections, and sslmode asks for TLS"
        case .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return "TLS could not be set up" + (error.underlying.map { " (\($0))" } ?? "")
        case .authMechanismRequiresPassword:
            return "the server asks for a password and the URL has none"
        case .unsupportedAuthMechanism:
            return "the server asks for an authentication method postgres-nio does not speak (use scram-sha-256, md5 or password)"
        case .saslError:
            return "SCRAM authentication failed" + (error.underlying.map { " (\($0))" } ?? "")
        default:
            return "\(error.code)" + (error.underlying.map { " (\($0))" } ?? "")
        }
    }

    /// `error`, thrown while `operation` ran on the pool, as an operator reads it. Gatepost's
    /// own errors pass as they are.
    static func wrap(_ error: any Error, operation: String) -> any Error {
        // The contract's own errors (a node name in use) are the caller's to read as they are.
        if error is PostgresCatalogError || error is CancellationError || error is ClusterError { return error }
        if let transaction = error as? PostgresTransactionError {
            if let inner = transaction.closureError ?? transaction.beginError ?? transaction.commitError {
                return wrap(inner, operation: operation)
            }
            return PostgresCatalogError.connectionLost(operation: operation, reason: "the transaction failed")
        }
        if let error = error as? PSQLError {
            switch error.code {
            case .server:
                return PostgresCatalogError.statementFailed(operation: operation, reason: reason(error))
            case .poolClosed:
                return PostgresCatalogError.closed
            default:
                return PostgresCatalogError.connectionLost(operation: operation, reason: reason(error))
            }
        }
        if error is PostgresDecodingError {
            return PostgresCatalogError.statementFailed(operation: operation, reason: reason(error))
        }
        switch error as? ConnectionPoolError {
        case .poolShutdown?:
            return PostgresCatalogError.closed
        case .requestCancelled?:
            return CancellationError()
        case .connectionCreationCircuitBreakerTripped?:
            return PostgresCatalogError.connectionLost(
                operation: operation,
                reason: "no connection to the server could be opened for a while; check that the server runs and accepts connections"
            )
        default:
            break
        }
        return PostgresCatalogError.connectionLost(operation: operation, reason: String(describing: error))
    }

    /// A failure to open the first connection, as an operator reads it.
    static func opening(_ error: any Error, location: PostgresLocation) -> PostgresCatalogError {
        let server = location.description
        guard let psql = error as? PSQLError else {
            return .cannotConnect(server: server, reason: String(describing: error))
        }
        switch psql.code {
        case .server:
            switch psql.serverInfo?[.sqlState] {
            // invalid_password; invalid_authorization_specification (no pg_hba.conf line, no such role)
            case "28P01", "28000":
                return .authenticationFailed(server: server, user: location.user, reason: reason(psql))
            // invalid_catalog_name
            case "3D000":
                return .noSuchDatabase(server: server, database: location.database)
            default:
                return .cannotConnect(server: server, reason: reason(psql))
            }
        case .authMechanismRequiresPassword, .unsupportedAuthMechanism, .saslError:
            return .authenticationFailed(server: server, user: location.user, reason: reason(psql))
        case .sslUnsupported, .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return .tls(server: server, reason: reason(psql))
        default:
            return .cannotConnect(server: server, reason: reason(psql))
        }
    }
}
