import Foundation
import GatepostCatalog
import Logging
import PostgresNIO

/// The catalog contract on PostgreSQL, for nodes that share one catalog. It answers as
/// SQLiteCatalog and InMemoryCatalog do (Tests/GatepostCatalogTests hold all three to the same
/// tests); what differs is that several processes on several machines write at once, so every
/// method that reads, decides and writes does so in one transaction with the rows it decides
/// on locked (`SELECT ... FOR NO KEY UPDATE`: the lock an UPDATE of those rows takes, which
/// lets other transactions insert rows that refer to them), and every compare-and-set is one
/// guarded `UPDATE`.
///
/// Lifecycle: ``connect(url:maximumConnections:logger:)`` checks the server with a connection
/// of its own (so that a wrong URL or password is said at once, in words, instead of the pool
/// retrying), migrates the schema, then starts the pool in a task of its own; ``close()``
/// stops the pool. A catalog dropped without `close()` stops its pool too.
public final class PostgresCatalog: Catalog, CustomStringConvertible {
    let client: PostgresClient
    let logger: Logger
    let location: PostgresLocation
    private let running: Task<Void, Never>

    /// What the catalog is, without its password: `postgres://user@host:port/database?sslmode=...`.
    public var description: String { location.description }

    private init(client: PostgresClient, location: PostgresLocation, logger: Logger) {
        self.client = client
        self.location = location
        self.logger = logger
        // Started in place, so that the pool counts as running before the first query leases
        // a connection (else postgres-nio warns that run() was not called yet).
        if #available(macOS 26, *) {
            running = Task.immediate { await client.run() }
        } else {
            running = Task { await client.run() }
        }
    }

    deinit {
        running.cancel()
    }

    /// Connects to the catalog at `url` (`postgres://user:password@host:port/database`, with
    /// libpq's `sslmode` and `sslrootcert`, or a unix socket's folder as `host`), brings its
    /// schema up to date and returns it with its pool running. The database must exist and be
    /// UTF8; the user must be allowed to create tables in it (the first node to connect does).
    public static func connect(url: String, maximumConnections: Int = 10, logger: Logger? = nil) async throws -> PostgresCatalog {
        let location = try PostgresLocation(parsing: url)
        let logger = logger ?? Logger(label: "gatepost.catalog.postgres")
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: try location.connectionConfiguration(), id: 0, logger: logger)
        } catch let error as PostgresCatalogError {
            throw error
        } catch {
            throw PostgresCatalogError.opening(error, location: location)
        }
        do {
            let encoding = try await connection.query("SHOW server_encoding", logger: logger).collect().first?.decode(String.self)
            guard encoding == "UTF8" else {
                throw PostgresCatalogError.notUTF8(server: location.description, encoding: encoding ?? "unknown")
            }
            try await PostgresSchema.migrate(connection, location: location, logger: logger)
        } catch {
            try? await connection.close()
            if let error = error as? PostgresCatalogError { throw error }
            throw PostgresCatalogError.cannotConnect(server: location.description, reason: PostgresCatalogError.reason(error))
        }
        try? await connection.close()

        var configuration = location.clientConfiguration()
        configuration.options.maximumConnections = max(1, maximumConnections)
        configuration.options.minimumConnections = 0
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return PostgresCatalog(client: client, location: location, logger: logger)
    }

    public var lookupsAreRemote: Bool { true }

    /// Stops the pool: its connections close, and every call after this one throws.
    public func close() async {
        running.cancel()
        await running.value
    }

    // MARK: Running statements

    /// Runs `body` on a connection of the pool outside a transaction of its own: for one
    /// statement, which PostgreSQL makes atomic by itself (autocommit).
    func autocommit<Result: Sendable>(
        _ operation: String, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        do {
            return try await client.withConnection { connection in try await body(connection) }
        } catch {
            throw PostgresCatalogError.wrap(error, operation: operation)
        }
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    /// A deadlock (two nodes locking the same rows in opposite orders) rolls one of them back;
    /// that one is run again, as nothing of it was stored. So is a batch of received messages
    /// that lost a Message-ID's claim to another node's commit: run again, it sees the claim
    /// and leaves that message out.
    func transaction<Result: Sendable>(
        _ operation: String, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        var attempt = 1
        while true {
            do {
                return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
            } catch {
                let inner = (error as? PostgresTransactionError).flatMap { $0.closureError ?? $0.beginError ?? $0.commitError } ?? error
                // deadlock_detected, serialization_failure
                if attempt < 3, let state = PostgresCatalogError.sqlState(of: inner),
                   ["40P01", "40001"].contains(state) || state == "23505" && PostgresCatalogError.constraint(of: inner) == "message_claim_pkey" {
                    attempt += 1
                    continue
                }
                throw PostgresCatalogError.wrap(inner, operation: operation)
            }
        }
    }
}

extension PostgresConnection {
    /// Runs `query` and returns its rows, each ready to be read by column name.
    func rows(_ query: PostgresQuery, _ logger: Logger) async throws -> [PostgresRandomAccessRow] {
        try await self.query(query, logger: logger).collect().map { $0.makeRandomAccess() }
    }

    /// Runs `query` to its end (so that its error, if any, is thrown here), discarding rows.
    func run(_ query: PostgresQuery, _ logger: Logger) async throws {
        _ = try await self.query(query, logger: logger).collect()
    }

    /// Runs `query` (an UPDATE ... RETURNING) and returns how many rows it returned.
    func count(_ query: PostgresQuery, _ logger: Logger) async throws -> Int {
        try await self.query(query, logger: logger).collect().count
    }
}
