import Foundation
import Logging
import PostgresNIO

/// The catalog's tables on PostgreSQL, and how a database is brought up to date.
///
/// Migrations are numbered from 1 and applied in order, each in a transaction of its own that
/// also records it in `schema_migrations`. Every node migrates when it connects; a transaction
/// advisory lock makes the nodes that start together take turns, so each migration runs once
/// and the others find it applied. A migration is never edited once released: a change is a
/// new one, appended.
enum PostgresSchema {
    struct Migration {
        var version: Int
        var name: String
        var statements: [PostgresQuery]
    }

    /// The advisory lock key of the migrations (any constant: "GPMIGRAT" in ASCII). Advisory
    /// locks are per database, so two catalogs on one server do not wait for each other.
    static let migrationLock: Int64 = 0x4750_4D49_4752_4154

    static var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Brings the database behind `connection` to ``latestVersion``. Throws
    /// ``PostgresCatalogError/schemaNewer(server:found:known:)`` when another node already took it
    /// further than this build knows.
    static func migrate(_ connection: PostgresConnection, location: PostgresLocation, logger: Logger) async throws {
        while true {
            let appliedNow: Int?
            do {
                appliedNow = try await connection.withTransaction(logger: logger) { connection -> Int? in
                    try await applyNext(connection, location: location, logger: logger)
                }
            } catch let error as PostgresTransactionError {
                let inner = error.closureError ?? error.beginError ?? error.commitError ?? error
                if let inner = inner as? PostgresCatalogError { throw inner }
                throw failure(inner, version: latestVersion, location: location)
            }
            if appliedNow == nil { return }
        }
    }

    /// `error`, which stopped the migration to `version`, as an operator reads it.
    private static func failure(_ error: any Error, version: Int, location: PostgresLocation) -> PostgresCatalogError {
        var reason = PostgresCatalogError.reason(error)
        // insufficient_privilege: since PostgreSQL 15 only a database's owner may create tables
        // in its schema public unless granted.
        if PostgresCatalogError.sqlState(of: error) == "42501" {
            reason += "; the catalog's user must be allowed to create tables: make it the database's owner "
                + "(ALTER DATABASE \(location.database) OWNER TO \(location.user)) or GRANT CREATE ON SCHEMA public TO \(location.user)"
        }
        return .migrationFailed(server: location.description, version: version, reason: reason)
    }

    /// In the caller's transaction: applies the first migration not applied yet and returns its
    /// version, or nil when there is none.
    private static func applyNext(_ connection: PostgresConnection, location: PostgresLocation, logger: Logger) async throws -> Int? {
        // Taken before anything is read: a second node waits here, then finds the migration
        // applied. Released by the transaction's end.
        try await connection.run("SELECT pg_advisory_xact_lock(\(migrationLock))", logger)
        try await connection.run("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger)
        let rows = try await connection.query("SELECT coalesce(max(version), 0) FROM schema_migrations", logger: logger).collect()
        let applied = try rows.first.map { try $0.decode(Int.self) } ?? 0
        guard applied <= latestVersion else {
            throw PostgresCatalogError.schemaNewer(server: location.description, found: applied, known: latestVersion)
        }
        guard applied < latestVersion else { return nil }
        guard let migration = migrations.first(where: { $0.version == applied + 1 }) else {
            throw PostgresCatalogError.migrationFailed(server: location.description, version: applied + 1, reason: "this build has no such migration")
        }
        logger.info("migrating the PostgreSQL catalog", metadata: [
            "catalog": "\(location)", "version": "\(migration.version)", "name": "\(migration.name)",
        ])
        do {
            for statement in migration.statements {
                try await connection.run(statement, logger)
            }
            try await connection.run("INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))", logger)
        } catch {
            throw failure(error, version: migration.version, location: location)
        }
        return migration.version
    }

    static let migrations: [Migration] = [
        Migration(version: 1, name: "catalog", statements: version1),
        Migration(version: 2, name: "cluster", statements: version2),
        Migration(version: 3, name: "message claims", statements: version3),
    ]

    /// Per site, each Message-ID's first inbound transfer: what makes a second record of one
    /// message impossible (ReceivedBatchPlan; SQLiteCatalog's v22). Claimed from the records
    /// there are, the earliest received first, as the lookup it replaces answered.
    static let version3: [PostgresQuery] = [
        """
        CREATE TABLE message_claim (
            site text COLLATE "C" NOT NULL,
            message_id text COLLATE "C" NOT NULL,
            transfer_id text COLLATE "C" NOT NULL REFERENCES transfer (id),
            PRIMARY KEY (site, message_id)
        )
        """,
        """
        INSERT INTO message_claim (site, message_id, transfer_id)
        SELECT DISTINCT ON (site, message_id) site, message_id, id FROM transfer
        WHERE direction = 'in' AND message_id IS NOT NULL
        ORDER BY site, message_id, received_at, id
        """,
    ]

    /// Nodes sharing the catalog: their heartbeats, their site leases, and on each record the
    /// node whose spool holds its files (SQLiteCatalog's v21).
    static let version2: [PostgresQuery] = [
        "ALTER TABLE transfer ADD COLUMN node text",
        """
        CREATE TABLE cluster_node (
            name text COLLATE "C" PRIMARY KEY,
            instance text NOT NULL,
            started_at timestamptz NOT NULL,
            heartbeat_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            console_url text
        )
        """,
        """
        CREATE TABLE site_lease (
            site text COLLATE "C" PRIMARY KEY,
            node text NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """,
    ]

    /// The whole schema of SQLiteCatalog's migrations v1 to v20, in PostgreSQL's terms: times
    /// are `timestamptz` (to the microsecond), JSON is `jsonb`, and the texts that order lists or
    /// identify rows compare byte by byte (`COLLATE "C"`), as SQLite's and Swift's do, whatever
    /// the database's locale. SQLite's search index (FTS5) has no counterpart: a search filters
    /// in SQL what it can and decides the rest with TextPattern (PostgresCatalog.transfers).
    static let version1: [PostgresQuery] = [
        """
        CREATE TABLE transfer (
            id text COLLATE "C" PRIMARY KEY,
            direction text NOT NULL,
            type text NOT NULL,
            file_name text,
            site text NOT NULL,
            application text,
            state text NOT NULL,
            message_id text,
            uidl text,
            sender text,
            recipients jsonb NOT NULL DEFAULT '[]',
            subject text,
            size bigint NOT NULL,
            sha256 text,
            path text,
            received_at timestamptz NOT NULL,
            ack text NOT NULL,
            error text,
            original_message_id text,
            original_envelope_id text,
            disposition text,
            delivered_path text,
            message_sha256 text,
            recipient_reports jsonb NOT NULL DEFAULT '[]',
            ack_message_id text,
            purged_at timestamptz,
            message_text text,
            classification text,
            signature text,
            security jsonb
        )
        """,
        // The duplicate checks of every received message, and a report's outbound transfer.
        "CREATE INDEX transfer_site_message_id ON transfer (site, message_id)",
        "CREATE INDEX transfer_site_message_sha256 ON transfer (site, message_sha256)",
        // Lists in their order: all transfers, one site's, the dashboard's counts.
        "CREATE INDEX transfer_received_at ON transfer (received_at, id)",
        "CREATE INDEX transfer_site_received_at ON transfer (site, received_at, id)",
        "CREATE INDEX transfer_state ON transfer (state)",
        """
        CREATE TABLE retrieved_message (
            site text NOT NULL,
            uidl text NOT NULL,
            transfer_id text COLLATE "C" NOT NULL REFERENCES transfer (id) ON DELETE CASCADE,
            deleted boolean NOT NULL DEFAULT false,
            listed_size bigint,
            PRIMARY KEY (site, uidl)
        )
        """,
        """
        CREATE TABLE delivery (
            transfer_id text COLLATE "C" PRIMARY KEY REFERENCES transfer (id) ON DELETE CASCADE,
            application text NOT NULL,
            target text NOT NULL,
            updated_at timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE delivery_retry (
            transfer_id text COLLATE "C" PRIMARY KEY REFERENCES transfer (id) ON DELETE CASCADE,
            attempts integer NOT NULL,
            next_attempt timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE delivery_attempt (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            transfer_id text COLLATE "C" NOT NULL REFERENCES transfer (id) ON DELETE CASCADE,
            at timestamptz NOT NULL,
            application text NOT NULL,
            outcome text NOT NULL,
            delivered_path text,
            error text,
            retry_at timestamptz
        )
        """,
        "CREATE INDEX delivery_attempt_transfer ON delivery_attempt (transfer_id, id)",
        """
        CREATE TABLE site_state (
            site text PRIMARY KEY,
            enabled boolean,
            last_poll timestamptz,
            last_success timestamptz,
            last_error text,
            last_error_category text,
            next_poll timestamptz,
            first_poll timestamptz,
            messages bigint NOT NULL DEFAULT 0,
            bytes bigint NOT NULL DEFAULT 0,
            failures_in_a_row integer NOT NULL DEFAULT 0,
            skipped jsonb,
            configuration_error text,
            configuration_error_since timestamptz,
            server_certificate_expires timestamptz
        )
        """,
        """
        CREATE TABLE outbox (
            id text COLLATE "C" PRIMARY KEY,
            kind text NOT NULL,
            transfer_id text COLLATE "C" NOT NULL REFERENCES transfer (id) ON DELETE CASCADE,
            site text NOT NULL,
            mail_from text NOT NULL,
            recipients jsonb NOT NULL,
            path text NOT NULL,
            message_id text NOT NULL,
            state text NOT NULL,
            attempts integer NOT NULL,
            next_attempt timestamptz NOT NULL,
            last_error text,
            created_at timestamptz NOT NULL,
            sent_at timestamptz
        )
        """,
        // The senders' scan for due entries, a transfer's entries, the console's newest first,
        // and the purge's question whether a file is still to be sent.
        "CREATE INDEX outbox_state_next_attempt ON outbox (state, next_attempt)",
        "CREATE INDEX outbox_transfer ON outbox (transfer_id)",
        "CREATE INDEX outbox_created_at ON outbox (created_at, id)",
        "CREATE INDEX outbox_path ON outbox (path)",
        """
        CREATE TABLE operator_action (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            site text,
            transfer_id text COLLATE "C",
            detail text
        )
        """,
        "CREATE INDEX operator_action_site ON operator_action (site, id)",
        "CREATE INDEX operator_action_transfer ON operator_action (transfer_id, id)",
        """
        CREATE TABLE alert (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key text NOT NULL,
            kind text NOT NULL,
            site text,
            summary text NOT NULL,
            opened_at timestamptz NOT NULL,
            resolved_at timestamptz,
            acknowledged_by text,
            acknowledged_at timestamptz
        )
        """,
        // One open alert per condition, whatever the callers (and the nodes) do.
        "CREATE UNIQUE INDEX alert_open_key ON alert (key) WHERE resolved_at IS NULL",
        """
        CREATE TABLE probe (
            site text NOT NULL,
            message_id text COLLATE "C" NOT NULL,
            sent_at timestamptz NOT NULL,
            returned_at timestamptz,
            transfer_id text COLLATE "C",
            PRIMARY KEY (site, message_id)
        )
        """,
        "CREATE INDEX probe_site_sent_at ON probe (site, sent_at)",
    ]
}
