import Foundation
import GRDB

/// The default catalog: one SQLite file in the spool, in WAL mode, synchronous=FULL so a
/// committed transaction survives power loss before the server is told to delete.
public final class SQLiteCatalog: Catalog {
    public let path: String
    let database: DatabasePool
    /// A read-only connection for the synchronous per-message lookups (``lookUp(_:arguments:)``).
    private let lookups: DatabaseQueue

    public enum OpenError: Error, CustomStringConvertible {
        case cannotOpen(path: String, reason: String)
        /// The catalog is missing or empty where it must not be (see ``init(path:mayStartAnew:)``).
        case missing(path: String)

        public var description: String {
            switch self {
            case .cannotOpen(let path, let reason): "cannot open the catalog \(path): \(reason)"
            case .missing(let path):
                "the catalog \(path) is missing or empty, but the spool holds received files: restore the catalog from a backup "
                    + "(gatepost catalog backup), or start a new one with --new-catalog (every message still on a server is then fetched again)"
            }
        }
    }

    /// Whether `path` holds no catalog yet: no file, or an empty one (which SQLite would take
    /// as a new database).
    public static func isNew(at path: String) -> Bool {
        var info = stat()
        return stat(path, &info) != 0 || info.st_size == 0
    }

    /// Opens the catalog at `path`, creating it when it is new. `mayStartAnew` false refuses a
    /// new (missing or empty) catalog: one that vanished must not be silently replaced by an
    /// empty one, after which every message left on a server would be fetched and delivered
    /// again.
    public convenience init(path: String, mayStartAnew: Bool) throws {
        if !mayStartAnew, Self.isNew(at: path) { throw OpenError.missing(path: path) }
        try self.init(path: path)
    }

    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            db.add(function: Self.textPatternFunction)
        }
        configuration.busyMode = .timeout(10)
        do {
            // Created owner-only: the catalog names partners, files and senders.
            if !FileManager.default.fileExists(atPath: path) {
                let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
                if fd >= 0 { close(fd) }
            }
            database = try DatabasePool(path: path, configuration: configuration)
            try Self.migrate(database, path: path)
            var lookupConfiguration = Configuration()
            lookupConfiguration.readonly = true
            lookupConfiguration.busyMode = .timeout(10)
            lookupConfiguration.label = "catalog.lookups"
            lookups = try DatabaseQueue(path: path, configuration: lookupConfiguration)
        } catch {
            throw OpenError.cannotOpen(path: path, reason: Self.explain(error, path: path))
        }
    }

    /// Brings the schema up to date. The daemon and a command may open a new catalog at the same
    /// moment, and GRDB's migrator reads what is applied outside the migrations' transactions, so
    /// both would apply the next one ("duplicate column"): one process migrates at a time, under
    /// an exclusive lock on `<catalog>.lock` (not on the database file itself, whose descriptors
    /// SQLite's own POSIX locks must not share).
    static func migrate(_ database: DatabasePool, path: String) throws {
        if try database.read({ try migrator.hasCompletedMigrations($0) }) { return }
        let lock = open(path + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard lock >= 0 else {
            throw MigrationLockError(description: "cannot create its lock file \(path).lock: \(String(cString: strerror(errno)))")
        }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else {
                throw MigrationLockError(description: "cannot lock \(path).lock: \(String(cString: strerror(errno)))")
            }
        }
        try migrator.migrate(database)
    }

    /// Copies the catalog to a new file at `destination` with SQLite's online backup: a
    /// consistent copy while the daemon keeps writing. The copy is owner-only.
    public func backup(to destination: String) throws {
        let fd = open(destination, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw OpenError.cannotOpen(path: destination, reason: String(cString: strerror(errno)))
        }
        close(fd)
        do {
            let copy = try DatabaseQueue(path: destination)
            try database.backup(to: copy)
            try copy.close()
        } catch {
            unlink(destination)
            throw error
        }
    }

    /// A reused UIDL whose row no longer names the transfer the poll saw under it: another
    /// poller recorded the message first.
    struct UIDLTakenError: Error, CustomStringConvertible {
        var site: String
        var uidl: String
        var description: String { "UIDL \(uidl) of site \(site) was recorded by another poll meanwhile" }
    }

    struct MissingTransferError: Error, CustomStringConvertible {
        var id: String
        var description: String { "no transfer \(id) in the catalog" }
    }

    struct MigrationLockError: Error, CustomStringConvertible {
        var description: String
    }

    /// SQLite says "unable to open database file" for many causes; name the usual one.
    static func explain(_ error: any Error, path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        var info = statvfs()
        if statvfs(folder, &info) == 0, info.f_flag & UInt(ST_RDONLY) != 0 {
            return "its file system is read-only"
        }
        if access(folder, W_OK) != 0 {
            return "its folder \(folder) is not writable"
        }
        if let error = error as? DatabaseError {
            return "SQLite error \(error.resultCode.rawValue): \(error.message ?? "unknown")"
        }
        return "\(error)"
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "transfer") { t in
                t.primaryKey("id", .text)
                t.column("direction", .text).notNull()
                t.column("type", .text).notNull()
                t.column("fileName", .text)
                t.column("site", .text).notNull()
                t.column("application", .text)
                t.column("state", .text).notNull()
                t.column("messageId", .text)
                t.column("uidl", .text)
                t.column("sender", .text)
                t.column("recipients", .text).notNull()
                t.column("subject", .text)
                t.column("size", .integer).notNull()
                t.column("sha256", .text)
                t.column("path", .text)
                t.column("receivedAt", .datetime).notNull()
                t.column("ack", .text).notNull()
                t.column("error", .text)
                t.column("originalMessageId", .text)
                t.column("disposition", .text)
            }
            try db.create(index: "transfer_site_messageId", on: "transfer", columns: ["site", "messageId"])
            try db.create(index: "transfer_receivedAt", on: "transfer", columns: ["receivedAt"])
            try db.create(table: "retrieved_message") { t in
                t.column("site", .text).notNull()
                t.column("uidl", .text).notNull()
                t.column("transferId", .text).notNull().references("transfer", onDelete: .cascade)
                t.column("deleted", .boolean).notNull().defaults(to: false)
                t.primaryKey(["site", "uidl"])
            }
        }
        migrator.registerMigration("v2-delivery") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "deliveredPath", .text)
            }
            try db.create(index: "transfer_state", on: "transfer", columns: ["state"])
            try db.create(table: "delivery") { t in
                t.primaryKey("transferId", .text).references("transfer", onDelete: .cascade)
                t.column("application", .text).notNull()
                t.column("target", .text).notNull()
                t.column("updatedAt", .datetime).notNull()
            }
        }
        migrator.registerMigration("v3-site-state") { db in
            try db.create(table: "site_state") { t in
                t.primaryKey("site", .text)
                t.column("enabled", .boolean)
                t.column("lastPoll", .datetime)
                t.column("lastSuccess", .datetime)
                t.column("lastError", .text)
                t.column("nextPoll", .datetime)
                t.column("messages", .integer).notNull().defaults(to: 0)
                t.column("bytes", .integer).notNull().defaults(to: 0)
            }
        }
        migrator.registerMigration("v4-delivery-retry") { db in
            try db.create(table: "delivery_retry") { t in
                t.primaryKey("transferId", .text).references("transfer", onDelete: .cascade)
                t.column("attempts", .integer).notNull()
                t.column("nextAttempt", .datetime).notNull()
            }
        }
        migrator.registerMigration("v5-message-hash-and-reports") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "messageSha256", .text)
                t.add(column: "recipientReports", .text).notNull().defaults(to: "[]")
            }
            try db.create(index: "transfer_site_messageSha256", on: "transfer", columns: ["site", "messageSha256"])
        }
        migrator.registerMigration("v6-outbox") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "ackMessageId", .text)
            }
            try db.create(index: "transfer_direction_messageId", on: "transfer", columns: ["direction", "messageId"])
            try db.create(table: "outbox") { t in
                t.primaryKey("id", .text)
                t.column("kind", .text).notNull()
                t.column("transferId", .text).notNull().references("transfer", onDelete: .cascade)
                t.column("site", .text).notNull()
                t.column("mailFrom", .text).notNull()
                t.column("recipients", .text).notNull()
                t.column("path", .text).notNull()
                t.column("messageId", .text).notNull()
                t.column("state", .text).notNull()
                t.column("attempts", .integer).notNull()
                t.column("nextAttempt", .datetime).notNull()
                t.column("lastError", .text)
                t.column("createdAt", .datetime).notNull()
                t.column("sentAt", .datetime)
            }
            try db.create(index: "outbox_state_nextAttempt", on: "outbox", columns: ["state", "nextAttempt"])
        }
        migrator.registerMigration("v7-purge") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "purgedAt", .datetime)
            }
        }
        migrator.registerMigration("v8-message-text") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "messageText", .text)
            }
        }
        migrator.registerMigration("v9-listed-size") { db in
            try db.alter(table: "retrieved_message") { t in
                t.add(column: "listedSize", .integer)
            }
        }
        migrator.registerMigration("v10-skipped") { db in
            try db.alter(table: "site_state") { t in
                t.add(column: "skipped", .text)  // JSON: [SkippedMessage]
            }
        }
        migrator.registerMigration("v11-classification") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "classification", .text)
                t.add(column: "signature", .text)
            }
        }
        migrator.registerMigration("v12-configuration-error") { db in
            try db.alter(table: "site_state") { t in
                t.add(column: "configurationError", .text)
                t.add(column: "configurationErrorSince", .datetime)
            }
        }
        migrator.registerMigration("v13-envelope-id") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "originalEnvelopeId", .text)
            }
        }
        migrator.registerMigration("v14-operator-actions") { db in
            try db.create(table: "operator_action") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .datetime).notNull()
                t.column("actor", .text).notNull()
                t.column("action", .text).notNull()
                t.column("site", .text)
                t.column("transferId", .text)
                t.column("detail", .text)
            }
            try db.create(index: "operator_action_site", on: "operator_action", columns: ["site", "id"])
            try db.create(index: "operator_action_transfer", on: "operator_action", columns: ["transferId", "id"])
        }
        migrator.registerMigration("v15-search") { db in
            try SearchIndex.create(db)
            // A site's newest transfers (the console's pages of one site) without sorting
            // all of the site's rows.
            try db.create(index: "transfer_site_receivedAt", on: "transfer", columns: ["site", "receivedAt"])
        }
        migrator.registerMigration("v16-delivery-attempts") { db in
            try db.create(table: "delivery_attempt") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("transferId", .text).notNull().indexed()
                t.column("at", .datetime).notNull()
                t.column("application", .text).notNull()
                t.column("outcome", .text).notNull()
                t.column("deliveredPath", .text)
                t.column("error", .text)
                t.column("retryAt", .datetime)
            }
        }
        migrator.registerMigration("v17-alerts") { db in
            try db.alter(table: "site_state") { t in
                t.add(column: "failuresInARow", .integer).notNull().defaults(to: 0)
                t.add(column: "lastErrorCategory", .text)
                t.add(column: "firstPoll", .datetime)
            }
            // Sites polled before: their watch starts at their last poll.
            try db.execute(sql: "UPDATE site_state SET firstPoll = lastPoll")
            try db.create(table: "alert") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("key", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("site", .text)
                t.column("summary", .text).notNull()
                t.column("openedAt", .datetime).notNull()
                t.column("resolvedAt", .datetime)
                t.column("acknowledgedBy", .text)
                t.column("acknowledgedAt", .datetime)
            }
            // One open alert per condition, whatever the callers do.
            try db.execute(sql: "CREATE UNIQUE INDEX alert_open_key ON alert(key) WHERE resolvedAt IS NULL")
        }
        migrator.registerMigration("v18-server-certificate") { db in
            try db.alter(table: "site_state") { t in
                t.add(column: "serverCertificateExpires", .datetime)
            }
        }
        migrator.registerMigration("v19-probes") { db in
            try db.create(table: "probe") { t in
                t.column("site", .text).notNull()
                t.column("messageId", .text).notNull()
                t.column("sentAt", .datetime).notNull()
                t.column("returnedAt", .datetime)
                t.column("transferId", .text)
                t.primaryKey(["site", "messageId"])
            }
            try db.create(index: "probe_site_sentAt", on: "probe", columns: ["site", "sentAt"])
        }
        migrator.registerMigration("v20-security") { db in
            try db.alter(table: "transfer") { t in
                t.add(column: "security", .text)  // JSON: MessageSecurity
            }
        }
        migrator.registerMigration("v21-cluster") { db in
            try db.create(table: "cluster_node") { t in
                t.primaryKey("name", .text)
                t.column("instance", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("heartbeatAt", .datetime).notNull()
                t.column("expiresAt", .datetime).notNull()
                t.column("consoleURL", .text)
            }
            try db.create(table: "site_lease") { t in
                t.primaryKey("site", .text)
                t.column("node", .text).notNull()
                t.column("expiresAt", .datetime).notNull()
            }
            try db.alter(table: "transfer") { t in
                t.add(column: "node", .text)  // the node holding the transfer's files (nil: the only one)
            }
        }
        migrator.registerMigration("v22-message-claims") { db in
            // Per site, each Message-ID's first inbound transfer: what makes a second record of
            // one message impossible (ReceivedBatchPlan). Claimed from the records there are,
            // the earliest received first, as the lookup it replaces answered.
            try db.create(table: "message_claim", options: .withoutRowID) { t in
                t.column("site", .text).notNull()
                t.column("messageId", .text).notNull()
                t.column("transferId", .text).notNull().references("transfer")
                t.primaryKey(["site", "messageId"])
            }
            try db.execute(sql: """
                INSERT OR IGNORE INTO message_claim (site, messageId, transferId)
                SELECT site, messageId, id FROM transfer WHERE direction = 'in' AND messageId IS NOT NULL ORDER BY receivedAt, id
                """)
        }
        return migrator
    }

    public func recordOperatorAction(_ action: OperatorAction) async throws {
        try await database.write { db in
            try db.execute(
                sql: "INSERT INTO operator_action (at, actor, action, site, transferId, detail) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [action.at, action.actor, action.action, action.site, action.transferId, action.detail]
            )
        }
    }

    public func operatorActions(site: String?, transferId: String?, limit: Int) async throws -> [OperatorAction] {
        try await database.read { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let site {
                conditions.append("site = ?")
                arguments += [site]
            }
            if let transferId {
                conditions.append("transferId = ?")
                arguments += [transferId]
            }
            arguments += [max(0, limit)]
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM operator_action \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
                ORDER BY id DESC LIMIT ?
                """, arguments: arguments)
            return rows.map { row in
                OperatorAction(
                    id: row["id"], at: row["at"], actor: row["actor"], action: row["action"],
                    site: row["site"], transferId: row["transferId"], detail: row["detail"]
                )
            }
        }
    }

    public func siteStates() async throws -> [String: SiteState] {
        try await database.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM site_state")
            var states: [String: SiteState] = [:]
            for row in rows {
                let site: String = row["site"]
                states[site] = SiteState(
                    site: site, enabled: row["enabled"], lastPoll: row["lastPoll"], lastSuccess: row["lastSuccess"],
                    lastError: row["lastError"], nextPoll: row["nextPoll"], messages: row["messages"], bytes: row["bytes"],
                    skipped: Self.decodeSkipped(row["skipped"]),
                    configurationError: row["configurationError"], configurationErrorSince: row["configurationErrorSince"],
                    failuresInARow: row["failuresInARow"], lastErrorCategory: row["lastErrorCategory"], firstPoll: row["firstPoll"],
                    serverCertificateExpires: row["serverCertificateExpires"]
                )
            }
            return states
        }
    }

    public func recordConfigurationError(site: String, error: String?, at: Date) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO site_state (site) VALUES (?) ON CONFLICT(site) DO NOTHING", arguments: [site])
            try db.execute(
                sql: """
                UPDATE site_state SET configurationError = ?,
                    configurationErrorSince = CASE WHEN ? IS NULL THEN NULL ELSE COALESCE(configurationErrorSince, ?) END
                WHERE site = ?
                """,
                arguments: [error, error, at, site]
            )
        }
    }

    public func setSiteEnabled(_ site: String, enabled: Bool) async throws {
        try await database.write { db in
            try db.execute(
                sql: "INSERT INTO site_state (site, enabled) VALUES (?, ?) ON CONFLICT(site) DO UPDATE SET enabled = excluded.enabled",
                arguments: [site, enabled]
            )
        }
    }

    public func recordPoll(
        site: String, at: Date, error: String?, errorCategory: String?, messages: Int, bytes: Int64, nextPoll: Date?,
        serverCertificateExpires: Date?
    ) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO site_state (site) VALUES (?) ON CONFLICT(site) DO NOTHING", arguments: [site])
            try db.execute(
                sql: """
                UPDATE site_state SET lastPoll = ?, lastError = ?, lastErrorCategory = ?, nextPoll = ?,
                  messages = messages + ?, bytes = bytes + ?, firstPoll = COALESCE(firstPoll, ?),
                  lastSuccess = CASE WHEN ? IS NULL THEN ? ELSE lastSuccess END,
                  failuresInARow = CASE WHEN ? IS NULL THEN 0 ELSE failuresInARow + 1 END,
                  serverCertificateExpires = COALESCE(?, serverCertificateExpires)
                WHERE site = ?
                """,
                arguments: [at, error, errorCategory, nextPoll, messages, bytes, at, error, at, error, serverCertificateExpires, site]
            )
        }
    }

    public func recordSkips(site: String, skipped: [SkippedMessage], complete: Bool) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO site_state (site) VALUES (?) ON CONFLICT(site) DO NOTHING", arguments: [site])
            let previous = Self.decodeSkipped(try String.fetchOne(db, sql: "SELECT skipped FROM site_state WHERE site = ?", arguments: [site]))
            let merged = SkippedMessage.merge(previous, with: skipped, complete: complete)
            let text = merged.isEmpty ? nil : String(decoding: try JSONEncoder().encode(merged), as: UTF8.self)
            try db.execute(sql: "UPDATE site_state SET skipped = ? WHERE site = ?", arguments: [text, site])
        }
    }

    /// The `skipped` column: JSON written by ``recordSkips(site:skipped:complete:)``; nothing
    /// readable is no skips (the list is rebuilt by the next poll).
    static func decodeSkipped(_ text: String?) -> [SkippedMessage] {
        guard let text else { return [] }
        return (try? JSONDecoder().decode([SkippedMessage].self, from: Data(text.utf8))) ?? []
    }

    public func transfersToDeliver(at now: Date) async throws -> [TransferRecord] {
        let states = TransferRecord.State.awaitingDelivery.map(\.rawValue)
        return try await database.read { db in
            try StoredTransfer.fetchAll(db, sql: """
                SELECT transfer.* FROM transfer LEFT JOIN delivery_retry ON delivery_retry.transferId = transfer.id
                WHERE transfer.direction = 'in' AND transfer.state IN (\(databaseQuestionMarks(count: states.count)))
                  AND (delivery_retry.nextAttempt IS NULL OR delivery_retry.nextAttempt <= ?)
                ORDER BY transfer.receivedAt, transfer.id
                """, arguments: StatementArguments(states) + [now]).map(\.record)
        }
    }

    public func claimDelivery(id: String, due: Date, until: Date) async throws -> Bool {
        let states = TransferRecord.State.awaitingDelivery.map(\.rawValue)
        return try await database.write { db in
            try db.execute(
                sql: """
                INSERT INTO delivery_retry (transferId, attempts, nextAttempt)
                SELECT id, 0, ? FROM transfer WHERE id = ? AND direction = 'in' AND state IN (\(databaseQuestionMarks(count: states.count)))
                ON CONFLICT(transferId) DO UPDATE SET nextAttempt = excluded.nextAttempt WHERE delivery_retry.nextAttempt <= ?
                """,
                arguments: [until, id] + StatementArguments(states) + [due]
            )
            return db.changesCount == 1
        }
    }

    public func deliveryAttempts(id: String) async throws -> Int {
        try await database.read { db in
            try Int.fetchOne(db, sql: "SELECT attempts FROM delivery_retry WHERE transferId = ?", arguments: [id]) ?? 0
        }
    }

    public func recordDeliveryAttempt(id: String, _ attempt: DeliveryAttempt) async throws {
        try await database.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM transfer WHERE id = ?", arguments: [id]) == true else {
                throw MissingTransferError(id: id)
            }
            try db.execute(
                sql: """
                    INSERT INTO delivery_attempt (transferId, at, application, outcome, deliveredPath, error, retryAt)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [id, attempt.at, attempt.application, attempt.outcome.rawValue, attempt.deliveredPath, attempt.error, attempt.retryAt]
            )
            switch attempt.outcome {
            case .delivered, .failed:
                try db.execute(
                    sql: "UPDATE transfer SET state = ?, application = ?, error = ?, deliveredPath = ? WHERE id = ?",
                    arguments: [attempt.outcome == .delivered ? "delivered" : "failed", attempt.application, attempt.error, attempt.deliveredPath, id]
                )
            case .retrying:
                try db.execute(
                    sql: """
                    INSERT INTO delivery_retry (transferId, attempts, nextAttempt) VALUES (?, 1, ?)
                    ON CONFLICT(transferId) DO UPDATE SET attempts = attempts + 1, nextAttempt = excluded.nextAttempt
                    """,
                    arguments: [id, attempt.retryAt ?? attempt.at]
                )
                try db.execute(
                    sql: "UPDATE transfer SET state = 'routed', application = ?, error = ? WHERE id = ?",
                    arguments: [attempt.application, attempt.error, id]
                )
            }
        }
    }

    public func deliveryHistory(id: String) async throws -> [DeliveryAttempt] {
        try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM delivery_attempt WHERE transferId = ? ORDER BY id", arguments: [id]
            ).map { row in
                DeliveryAttempt(
                    at: row["at"], application: row["application"],
                    outcome: DeliveryAttempt.Outcome(rawValue: row["outcome"] as String) ?? .failed,
                    deliveredPath: row["deliveredPath"], error: row["error"], retryAt: row["retryAt"]
                )
            }
        }
    }

    public func updateDelivery(id: String, state: TransferRecord.State, application: String?, error: String?, deliveredPath: String?) async throws {
        try await database.write { db in
            try db.execute(
                sql: "UPDATE transfer SET state = ?, application = ?, error = ?, deliveredPath = ? WHERE id = ?",
                arguments: [state.rawValue, application, error, deliveredPath, id]
            )
        }
    }

    public func deliveryTarget(id: String) async throws -> String? {
        try await database.read { db in
            try String.fetchOne(db, sql: "SELECT target FROM delivery WHERE transferId = ?", arguments: [id])
        }
    }

    public func recordDeliveryTarget(id: String, application: String, target: String) async throws {
        try await database.write { db in
            try db.execute(
                sql: """
                INSERT INTO delivery (transferId, application, target, updatedAt) VALUES (?, ?, ?, ?)
                ON CONFLICT(transferId) DO UPDATE SET application = excluded.application, target = excluded.target, updatedAt = excluded.updatedAt
                """,
                arguments: [id, application, target, Date()]
            )
        }
    }

    public func retrievedMessages(site: String) async throws -> [String: RetrievedMessage] {
        try await database.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT r.uidl, r.transferId, r.deleted, r.listedSize, t.messageId
                FROM retrieved_message r LEFT JOIN transfer t ON t.id = r.transferId
                WHERE r.site = ?
                """, arguments: [site])
            var result: [String: RetrievedMessage] = [:]
            result.reserveCapacity(rows.count)
            for row in rows {
                let uidl: String = row["uidl"]
                result[uidl] = RetrievedMessage(
                    uidl: uidl, transferID: row["transferId"], deleted: row["deleted"],
                    messageId: row["messageId"], listedSize: row["listedSize"]
                )
            }
            return result
        }
    }

    @discardableResult
    public func commitReceived(_ batch: [ReceivedTransfer]) async throws -> [RecordedBefore] {
        guard !batch.isEmpty else { return [] }
        return try await database.write { db in
            let retrieved = try db.makeStatement(
                sql: "INSERT INTO retrieved_message (site, uidl, transferId, deleted, listedSize) VALUES (?, ?, ?, 0, ?)"
            )
            let claim = try db.cachedStatement(sql: Self.claimSQL)
            var claimed: [MessageClaimKey: String] = [:]
            for key in ReceivedBatchPlan.keys(of: batch) {
                claimed[key] = try String.fetchOne(claim, arguments: [key.site, key.messageId])
            }
            var plan = ReceivedBatchPlan(batch, claimed: claimed)
            var rows: [SiteUIDL: String] = [:]
            for key in plan.leftOutUIDLs {
                rows[key] = try String.fetchOne(db, sql: "SELECT transferId FROM retrieved_message WHERE site = ? AND uidl = ?", arguments: [key.site, key.uidl])
            }
            plan.noteRecordedUIDLs(rows)
            for item in plan.stored {
                let record = item.record
                try StoredTransfer(record).insertFast(db)
                if let uidl = item.uidl, let replaced = item.replacing {
                    try db.execute(
                        sql: """
                        UPDATE retrieved_message SET transferId = ?, deleted = 0, listedSize = ?
                        WHERE site = ? AND uidl = ? AND transferId = ?
                        """,
                        arguments: [record.id, item.listedSize, record.site, uidl, replaced]
                    )
                    guard db.changesCount == 1 else { throw UIDLTakenError(site: record.site, uidl: uidl) }
                } else if let uidl = item.uidl {
                    try retrieved.execute(arguments: [record.site, uidl, record.id, item.listedSize])
                }
                if let acknowledgment = item.acknowledgment {
                    try Self.insert(acknowledgment, db)
                }
                if let outbound = try Self.outbound(answeredBy: record, db),
                   let closed = AcknowledgmentRules.close(outbound: outbound, report: record) {
                    try StoredTransfer(closed).update(db)
                }
                if record.type == .probe {
                    try db.execute(
                        sql: "UPDATE probe SET returnedAt = ?, transferId = ? WHERE site = ? AND messageId = ? AND returnedAt IS NULL",
                        arguments: [record.receivedAt, record.id, record.site, record.messageId]
                    )
                }
            }
            let insertClaim = try db.cachedStatement(sql: "INSERT INTO message_claim (site, messageId, transferId) VALUES (?, ?, ?)")
            for (key, transferId) in plan.claims {
                try insertClaim.execute(arguments: [key.site, key.messageId, transferId])
            }
            return plan.leftOut
        }
    }

    /// The outbound transfer `report` answers: the one whose id is its envelope id, else the
    /// first with its Message-ID.
    static func outbound(answeredBy report: TransferRecord, _ db: Database) throws -> TransferRecord? {
        guard AcknowledgmentRules.reference(of: report) != nil else { return nil }
        if let envelopeId = report.originalEnvelopeId, let outbound = try StoredTransfer.fetchOne(db, key: envelopeId)?.record,
           AcknowledgmentRules.answers(report, outbound: outbound) {
            return outbound
        }
        guard let messageId = report.originalMessageId else { return nil }
        return try StoredTransfer.fetchAll(db, sql: outboundByMessageIdSQL, arguments: [messageId, report.site])
            .map(\.record)
            .first { AcknowledgmentRules.answers(report, outbound: $0) }
    }

    /// Replaces transfer `id` by what `rule` makes of it, in the caller's transaction; nothing
    /// when there is no such transfer.
    static func updateTransfer(id: String, _ db: Database, by rule: (TransferRecord) -> TransferRecord) throws {
        guard let stored = try StoredTransfer.fetchOne(db, key: id) else { return }
        let updated = rule(stored.record)
        if updated != stored.record { try StoredTransfer(updated).update(db) }
    }

    static func insert(_ entry: OutboxEntry, _ db: Database) throws {
        let row = StoredOutboxEntry(entry)
        try db.execute(
            sql: """
            INSERT INTO outbox (id, kind, transferId, site, mailFrom, recipients, path, messageId, state, attempts,
                                nextAttempt, lastError, createdAt, sentAt)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            arguments: [row.id, row.kind, row.transferId, row.site, row.mailFrom, row.recipients, row.path, row.messageId,
                        row.state, row.attempts, row.nextAttempt, row.lastError, row.createdAt, row.sentAt]
        )
    }

    static func outboxEntries(_ db: Database, where condition: String, _ arguments: StatementArguments) throws -> [OutboxEntry] {
        try Row.fetchAll(db, sql: "SELECT * FROM outbox WHERE \(condition) ORDER BY createdAt, id", arguments: arguments).map { row in
            try StoredOutboxEntry(row: row).entry
        }
    }

    public func commitOutbound(_ record: TransferRecord, message: OutboxEntry) async throws {
        try await database.write { db in
            try StoredTransfer(record).insertFast(db)
            try Self.insert(message, db)
        }
    }

    public func dueOutbox(site: String?, at date: Date) async throws -> [OutboxEntry] {
        try await database.read { db in
            if let site {
                return try Self.outboxEntries(db, where: "state = 'pending' AND nextAttempt <= ? AND site = ?", [date, site])
            }
            return try Self.outboxEntries(db, where: "state = 'pending' AND nextAttempt <= ?", [date])
        }
    }

    public func outbox(transferId: String) async throws -> [OutboxEntry] {
        try await database.read { db in try Self.outboxEntries(db, where: "transferId = ?", [transferId]) }
    }

    public func outboxEntries(state: OutboxEntry.State?, limit: Int) async throws -> [OutboxEntry] {
        try await database.read { db in
            let condition = state == nil ? "" : "WHERE state = ?"
            let arguments: StatementArguments = state.map { [$0.rawValue, max(0, limit)] } ?? [max(0, limit)]
            return try Row.fetchAll(db, sql: "SELECT * FROM outbox \(condition) ORDER BY createdAt DESC, id DESC LIMIT ?", arguments: arguments)
                .map { try StoredOutboxEntry(row: $0).entry }
        }
    }

    public func claimOutbox(_ id: String, due: Date, until: Date) async throws -> Bool {
        try await database.write { db in
            try db.execute(
                sql: "UPDATE outbox SET nextAttempt = ? WHERE id = ? AND state = 'pending' AND nextAttempt <= ?",
                arguments: [until, id, due]
            )
            return db.changesCount == 1
        }
    }

    public func outboxSent(_ entry: OutboxEntry, at date: Date, refused: [String], followUp: OutboxEntry?) async throws {
        try await database.write { db in
            try db.execute(
                sql: "UPDATE outbox SET state = 'sent', sentAt = ?, attempts = attempts + 1, lastError = ? WHERE id = ?",
                arguments: [date, OutboxRules.refusalNote(refused), entry.id]
            )
            if let followUp { try Self.insert(followUp, db) }
            try Self.updateTransfer(id: entry.transferId, db) { OutboxRules.sent($0, entry: entry, refused: refused, followUp: followUp) }
        }
    }

    public func outboxReferences(path: String) async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM outbox WHERE path = ?)", arguments: [path]) ?? false
        }
    }

    public func markOverdue(site: String, sentBefore: Date) async throws -> [TransferRecord] {
        try await database.write { db in
            let waiting = try StoredTransfer.fetchAll(
                db,
                sql: """
                SELECT * FROM transfer
                WHERE direction = 'out' AND site = ? AND state IN ('sent', 'delivered')
                  AND id IN (SELECT transferId FROM outbox WHERE kind = 'file' AND state = 'sent' AND site = ?
                             GROUP BY transferId HAVING max(sentAt) < ?)
                ORDER BY +receivedAt, +id
                """,
                arguments: [site, site, sentBefore]
            )
            return try waiting.compactMap { stored in
                guard let overdue = AcknowledgmentRules.overdue(stored.record) else { return nil }
                try StoredTransfer(overdue).update(db)
                return overdue
            }
        }
    }

    public func markPurged(id: String, at date: Date) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE transfer SET path = NULL, messageText = NULL, purgedAt = ? WHERE id = ?", arguments: [date, id])
        }
    }

    public func requeueOutbox(transferId: String, at date: Date) async throws -> Int {
        try await database.write { db in
            try db.execute(
                sql: "UPDATE outbox SET state = 'pending', nextAttempt = ?, createdAt = ?, lastError = NULL WHERE transferId = ? AND state = 'failed'",
                arguments: [date, date, transferId]
            )
            let requeued = db.changesCount
            if requeued > 0 { try Self.updateTransfer(id: transferId, db, by: OutboxRules.requeued) }
            return requeued
        }
    }

    public func outboxFailed(_ entry: OutboxEntry, error: String, retryAt: Date?) async throws {
        try await database.write { db in
            if let retryAt {
                try db.execute(
                    sql: "UPDATE outbox SET attempts = attempts + 1, nextAttempt = ?, lastError = ? WHERE id = ?",
                    arguments: [retryAt, error, entry.id]
                )
                return
            }
            try db.execute(
                sql: "UPDATE outbox SET state = 'failed', attempts = attempts + 1, lastError = ? WHERE id = ?",
                arguments: [error, entry.id]
            )
            try Self.updateTransfer(id: entry.transferId, db) { OutboxRules.givenUp($0, entry: entry, error: error) }
        }
    }

    public func markDeleted(site: String, uidls: [String]) async throws {
        guard !uidls.isEmpty else { return }
        try await database.write { db in
            let statement = try db.makeStatement(sql: "UPDATE retrieved_message SET deleted = 1 WHERE site = ? AND uidl = ?")
            for uidl in uidls {
                try statement.execute(arguments: [site, uidl])
            }
        }
    }

    public func transferID(site: String, messageId: String) async throws -> String? {
        try lookUp(Self.claimSQL, arguments: [site, messageId])
    }

    public func transferID(site: String, messageSha256: String) async throws -> String? {
        try lookUp(Self.firstBySha256SQL, arguments: [site, messageSha256])
    }

    static let claimSQL = "SELECT transferId FROM message_claim WHERE site = ? AND messageId = ?"

    /// The duplicate checks run once per received message, on the poll's critical path: a
    /// synchronous read (the calling thread runs it; an indexed lookup takes microseconds) with
    /// a cached statement. The async read's two thread hops and a statement compiled per call
    /// cost a third of a poll's time.
    ///
    /// On a connection of their own (``lookups``), never the pool's readers: a thread of the
    /// concurrency pool blocked waiting for a reader can hold up the very async reads that would
    /// give one back (they resume on that pool before releasing it), and with every pool thread
    /// waiting the process stops for good. The lookups' connection is only ever used
    /// synchronously: its work runs on the calling thread, so waiting for it waits for a thread
    /// that is running.
    private func lookUp(_ sql: String, arguments: StatementArguments) throws -> String? {
        try lookups.read { db in
            try String.fetchOne(try db.cachedStatement(sql: sql), arguments: arguments)
        }
    }

    /// Order by time for a lookup that an equality index answers (a Message-ID, a hash): the
    /// unary `+` keeps SQLite from choosing `transfer(site, receivedAt)` for the order and
    /// reading every row of the site instead (it did: 750 µs per received message at 2,000).
    static let orderWithoutIndex = "+receivedAt, +id"

    static let outboundByMessageIdSQL =
        "SELECT * FROM transfer WHERE direction = 'out' AND messageId = ? AND site = ? ORDER BY \(orderWithoutIndex)"

    /// A message without a Message-ID, by its content. The index is named: without statistics
    /// the planner tied it with another, and which one it picked changed with an unrelated
    /// column added to the table.
    static let firstBySha256SQL =
        "SELECT id FROM transfer INDEXED BY transfer_site_messageSha256 WHERE site = ? AND messageSha256 = ? AND direction = 'in' "
            + "ORDER BY \(orderWithoutIndex) LIMIT 1"

    /// SQLite's plan for `sql`, for tests that hold lookups to their indexes.
    func queryPlan(_ sql: String, arguments: StatementArguments) throws -> String {
        try database.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }.joined(separator: "; ")
        }
    }

    public func transfers(_ filter: TransferFilter) async throws -> [TransferRecord] {
        try await database.read { db in
            var request = StoredTransfer.all()
            if let site = filter.site { request = request.filter(Column("site") == site) }
            if let type = filter.type { request = request.filter(Column("type") == type.rawValue) }
            if let state = filter.state { request = request.filter(Column("state") == state.rawValue) }
            if let since = filter.since { request = request.filter(Column("receivedAt") >= since) }
            if let before = filter.before { request = request.filter(Column("receivedAt") < before) }
            if let purged = filter.purged { request = request.filter(purged ? Column("purgedAt") != nil : Column("purgedAt") == nil) }
            if let direction = filter.direction { request = request.filter(Column("direction") == direction.rawValue) }
            if let keptWhole = filter.keptWhole {
                let names = Array(TransferRecord.keptWholeFileNames)
                request = request.filter(keptWhole
                    ? names.contains(Column("fileName"))
                    : Column("fileName") == nil || !names.contains(Column("fileName")))
            }
            for (column, pattern) in [("fileName", filter.fileName), ("sender", filter.sender), ("subject", filter.subject)] {
                guard let pattern else { continue }
                request = request.filter(Self.matching(pattern, column))
            }
            if let pattern = filter.anyText {
                request = request.filter(Self.matching(pattern, "fileName") || Self.matching(pattern, "sender") || Self.matching(pattern, "subject"))
            }
            if let candidates = try SearchIndex.candidates(for: filter, db) {
                request = request.filter(candidates)
            }
            if let after = filter.after {
                let receivedAt = Column("receivedAt"), id = Column("id")
                request = request.filter(filter.newestFirst
                    ? receivedAt < after.receivedAt || (receivedAt == after.receivedAt && id < after.id)
                    : receivedAt > after.receivedAt || (receivedAt == after.receivedAt && id > after.id))
            }
            request = filter.newestFirst
                ? request.order(Column("receivedAt").desc, Column("id").desc)
                : request.order(Column("receivedAt"), Column("id"))
            if let limit = filter.limit { request = request.limit(limit) }
            return try request.fetchAll(db).map(\.record)
        }
    }

    public func inboundCounts(since: Date) async throws -> [String: Int] {
        try await database.read { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT site, COUNT(*) AS count FROM transfer WHERE receivedAt >= ? AND direction = 'in' GROUP BY site",
                arguments: [since]
            )
            return Dictionary(rows.map { ($0["site"] as String, $0["count"] as Int) }, uniquingKeysWith: +)
        }
    }

    public func transfer(id: String) async throws -> TransferRecord? {
        try await database.read { db in try StoredTransfer.fetchOne(db, key: id)?.record }
    }

    /// `pattern` over `column`, as ``TextPattern`` decides. An ASCII substring or exact pattern
    /// is matched by SQLite's own LIKE in ASCII values (LIKE folds A-Z only, as TextPattern
    /// does for ASCII text; a value is ASCII when its bytes are as many as its characters);
    /// every other value and pattern goes through TextPattern's code, so both stores answer
    /// alike.
    static func matching(_ pattern: TextPattern, _ column: String) -> SQLExpression {
        let rule = textPatternFunction(pattern.kind.rawValue, pattern.text, Column(column))
        guard pattern.kind != .glob, !pattern.text.isEmpty, pattern.text.utf8.allSatisfy({ $0 < 0x80 }) else { return rule }
        let escaped = pattern.text.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
        let like = pattern.kind == .substring ? "%" + escaped + "%" : escaped
        let value = Column(column)
        return SQL(
            "CASE WHEN length(CAST(\(value) AS BLOB)) = length(\(value)) THEN \(value) LIKE \(like) ESCAPE '\\' ELSE \(rule) END"
        ).sqlExpression
    }

    /// `gatepost_text_matches(kind, pattern, value)`: ``TextPattern``'s rule inside SQL, so that
    /// a search means the same in every store.
    static let textPatternFunction = DatabaseFunction("gatepost_text_matches", argumentCount: 3, pure: true) { values in
        guard let kindName = String.fromDatabaseValue(values[0]), let kind = TextPattern.Kind(rawValue: kindName),
              let pattern = String.fromDatabaseValue(values[1])
        else { return false }
        return TextPattern.matches(kind: kind, pattern: pattern, value: String.fromDatabaseValue(values[2]) ?? "")
    }

    /// `PRAGMA integrity_check`, for tests and `gatepost` health checks.
    public func integrityCheck() throws -> String {
        try database.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer" }
    }
}

extension SQLiteCatalog: AlertStore {
    public func updateAlerts(opening: [Alert], resolving: [String], at: Date) async throws -> AlertChanges {
        try await database.write { db in
            var changes = AlertChanges()
            for alert in opening {
                try db.execute(
                    sql: """
                        INSERT INTO alert (key, kind, site, summary, openedAt) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (key) WHERE resolvedAt IS NULL DO NOTHING
                        """,
                    arguments: [alert.key, alert.kind, alert.site, alert.summary, at]
                )
                guard db.changesCount > 0 else { continue }
                var opened = alert
                opened.id = db.lastInsertedRowID
                opened.openedAt = at
                opened.resolvedAt = nil
                opened.acknowledgedBy = nil
                opened.acknowledgedAt = nil
                changes.opened.append(opened)
            }
            for key in resolving {
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM alert WHERE key = ? AND resolvedAt IS NULL", arguments: [key]) else { continue }
                try db.execute(sql: "UPDATE alert SET resolvedAt = ? WHERE id = ?", arguments: [at, row["id"] as Int64])
                var resolved = Self.alert(row)
                resolved.resolvedAt = at
                changes.resolved.append(resolved)
            }
            return changes
        }
    }

    public func alerts(openOnly: Bool, limit: Int) async throws -> [Alert] {
        try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM alert \(openOnly ? "WHERE resolvedAt IS NULL" : "") ORDER BY id DESC LIMIT ?", arguments: [max(limit, 0)]
            ).map(Self.alert)
        }
    }

    public func acknowledgeAlert(id: Int64, by actor: String, at: Date) async throws -> Alert? {
        try await database.write { db in
            try db.execute(sql: "UPDATE alert SET acknowledgedBy = ?, acknowledgedAt = ? WHERE id = ?", arguments: [actor, at, id])
            return try Row.fetchOne(db, sql: "SELECT * FROM alert WHERE id = ?", arguments: [id]).map(Self.alert)
        }
    }

    static func alert(_ row: Row) -> Alert {
        Alert(
            id: row["id"], key: row["key"], kind: row["kind"], site: row["site"], summary: row["summary"], openedAt: row["openedAt"],
            resolvedAt: row["resolvedAt"], acknowledgedBy: row["acknowledgedBy"], acknowledgedAt: row["acknowledgedAt"]
        )
    }
}

extension SQLiteCatalog: ProbeStore {
    public func recordProbe(_ probe: Probe) async throws {
        try await database.write { db in
            try db.execute(
                sql: "INSERT INTO probe (site, messageId, sentAt, returnedAt, transferId) VALUES (?, ?, ?, ?, ?)",
                arguments: [probe.site, probe.messageId, probe.sentAt, probe.returnedAt, probe.transferId]
            )
        }
    }

    public func probe(site: String, messageId: String) async throws -> Probe? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM probe WHERE site = ? AND messageId = ?", arguments: [site, messageId]).map(Self.probe)
        }
    }

    public func probes(site: String, limit: Int) async throws -> [Probe] {
        try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM probe WHERE site = ? ORDER BY sentAt DESC, messageId DESC LIMIT ?", arguments: [site, max(limit, 0)]
            ).map(Self.probe)
        }
    }

    static func probe(_ row: Row) -> Probe {
        Probe(site: row["site"], messageId: row["messageId"], sentAt: row["sentAt"], returnedAt: row["returnedAt"], transferId: row["transferId"])
    }
}

/// The row form of a record: recipients as a JSON array in one column.
struct StoredTransfer: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "transfer"

    var id: String
    var direction: String
    var type: String
    var fileName: String?
    var site: String
    var application: String?
    var state: String
    var messageId: String?
    var uidl: String?
    var sender: String?
    var recipients: String
    var subject: String?
    var size: Int64
    var sha256: String?
    var path: String?
    var receivedAt: Date
    var ack: String
    var error: String?
    var originalMessageId: String?
    var disposition: String?
    var deliveredPath: String?
    var messageSha256: String?
    /// JSON array of ``RecipientReport``.
    var recipientReports: String
    var ackMessageId: String?
    var purgedAt: Date?
    var messageText: String?
    var classification: String?
    var signature: String?
    var originalEnvelopeId: String?
    /// JSON of ``MessageSecurity``, when there is any.
    var security: String?
    var node: String?

    init(_ record: TransferRecord) {
        id = record.id
        direction = record.direction.rawValue
        type = record.type.rawValue
        fileName = record.fileName
        site = record.site
        application = record.application
        state = record.state.rawValue
        messageId = record.messageId
        uidl = record.uidl
        sender = record.sender
        let encoded = (try? JSONEncoder().encode(record.recipients)) ?? Data("[]".utf8)
        recipients = String(decoding: encoded, as: UTF8.self)
        subject = record.subject
        size = record.size
        sha256 = record.sha256
        path = record.path
        receivedAt = record.receivedAt
        ack = record.ack.rawValue
        error = record.error
        originalMessageId = record.originalMessageId
        disposition = record.disposition
        deliveredPath = record.deliveredPath
        messageSha256 = record.messageSha256
        let reports = (try? JSONEncoder().encode(record.recipientReports)) ?? Data("[]".utf8)
        recipientReports = String(decoding: reports, as: UTF8.self)
        ackMessageId = record.ackMessageId
        purgedAt = record.purgedAt
        messageText = record.messageText
        classification = record.classification
        signature = record.signature
        originalEnvelopeId = record.originalEnvelopeId
        security = record.security.flatMap { try? JSONEncoder().encode($0) }.map { String(decoding: $0, as: UTF8.self) }
        node = record.node
    }

    var record: TransferRecord {
        TransferRecord(
            id: id,
            direction: TransferRecord.Direction(rawValue: direction) ?? .inbound,
            type: TransferRecord.Kind(rawValue: type) ?? .xfer,
            fileName: fileName,
            site: site,
            application: application,
            state: TransferRecord.State(rawValue: state) ?? .received,
            messageId: messageId,
            uidl: uidl,
            sender: sender,
            recipients: (try? JSONDecoder().decode([String].self, from: Data(recipients.utf8))) ?? [],
            subject: subject,
            size: size,
            sha256: sha256,
            path: path,
            receivedAt: receivedAt,
            ack: TransferRecord.Acknowledgment(rawValue: ack) ?? .none,
            error: error,
            originalMessageId: originalMessageId,
            disposition: disposition,
            deliveredPath: deliveredPath,
            messageSha256: messageSha256,
            recipientReports: (try? JSONDecoder().decode([RecipientReport].self, from: Data(recipientReports.utf8))) ?? [],
            ackMessageId: ackMessageId,
            purgedAt: purgedAt,
            messageText: messageText,
            classification: classification,
            signature: signature,
            originalEnvelopeId: originalEnvelopeId,
            security: security.flatMap { try? JSONDecoder().decode(MessageSecurity.self, from: Data($0.utf8)) },
            node: node
        )
    }
}

extension StoredTransfer {
    private static let columns = [
        "id", "direction", "type", "fileName", "site", "application", "state", "messageId", "uidl", "sender",
        "recipients", "subject", "size", "sha256", "path", "receivedAt", "ack", "error", "originalMessageId",
        "disposition", "deliveredPath", "messageSha256", "recipientReports", "ackMessageId", "purgedAt", "messageText",
        "classification", "signature", "originalEnvelopeId", "security", "node",
    ]
    private static let insertSQL = "INSERT INTO transfer (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"

    /// The same row as `insert(_:)`, through a cached statement: a poll inserts one per message,
    /// and the record encoding GRDB does for each was a few percent of a poll's CPU.
    func insertFast(_ db: Database) throws {
        let statement = try db.cachedStatement(sql: Self.insertSQL)
        let values: [(any DatabaseValueConvertible)?] = [
            id, direction, type, fileName, site, application, state, messageId, uidl, sender,
            recipients, subject, size, sha256, path, receivedAt, ack, error, originalMessageId,
            disposition, deliveredPath, messageSha256, recipientReports, ackMessageId, purgedAt, messageText,
            classification, signature, originalEnvelopeId, security, node,
        ]
        try statement.execute(arguments: StatementArguments(values))
    }
}

extension SQLiteCatalog: LeaseStore {
    public func heartbeat(_ node: ClusterNode) async throws -> [ClusterNode] {
        try await database.write { db in
            // The compare-and-set of LeaseRules.mayBeat: written only over its own instance's
            // row or an expired one.
            try db.execute(
                sql: """
                    INSERT INTO cluster_node (name, instance, startedAt, heartbeatAt, expiresAt, consoleURL) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, startedAt = excluded.startedAt,
                        heartbeatAt = excluded.heartbeatAt, expiresAt = excluded.expiresAt, consoleURL = excluded.consoleURL
                    WHERE cluster_node.instance = excluded.instance OR cluster_node.expiresAt <= excluded.heartbeatAt
                    """,
                arguments: [node.name, node.instance, node.startedAt, node.heartbeatAt, node.expiresAt, node.consoleURL]
            )
            if db.changesCount == 0 {
                let until = try Date.fetchOne(db, sql: "SELECT expiresAt FROM cluster_node WHERE name = ?", arguments: [node.name])
                throw ClusterError.nodeNameInUse(name: node.name, until: until ?? node.expiresAt)
            }
            return try Row.fetchAll(
                db, sql: "SELECT * FROM cluster_node WHERE expiresAt > ? ORDER BY name", arguments: [node.heartbeatAt]
            ).map(Self.clusterNode)
        }
    }

    public func leave(node name: String, instance: String) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM cluster_node WHERE name = ? AND instance = ?", arguments: [name, instance])
            if db.changesCount > 0 {
                try db.execute(sql: "DELETE FROM site_lease WHERE node = ?", arguments: [name])
            }
        }
    }

    public func claimSite(_ site: String, node: String, now: Date, until: Date) async throws -> Bool {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO site_lease (site, node, expiresAt) VALUES (?, ?, ?)
                    ON CONFLICT (site) DO UPDATE SET node = excluded.node, expiresAt = excluded.expiresAt
                    WHERE site_lease.node = excluded.node OR site_lease.expiresAt <= ?
                    """,
                arguments: [site, node, until, now]
            )
            return db.changesCount > 0
        }
    }

    public func releaseSite(_ site: String, node: String) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM site_lease WHERE site = ? AND node = ?", arguments: [site, node])
        }
    }

    public func siteLeases() async throws -> [SiteLease] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM site_lease ORDER BY site").map { row in
                SiteLease(site: row["site"], node: row["node"], expiresAt: row["expiresAt"])
            }
        }
    }

    public func clusterNodes() async throws -> [ClusterNode] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM cluster_node ORDER BY name").map(Self.clusterNode)
        }
    }

    static func clusterNode(_ row: Row) -> ClusterNode {
        ClusterNode(
            name: row["name"], instance: row["instance"], startedAt: row["startedAt"], heartbeatAt: row["heartbeatAt"],
            expiresAt: row["expiresAt"], consoleURL: row["consoleURL"]
        )
    }
}
