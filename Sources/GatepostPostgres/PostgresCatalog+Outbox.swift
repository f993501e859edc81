import Foundation
import GatepostCatalog
import PostgresNIO

// MARK: OutboxStore

extension PostgresCatalog {
    public func dueOutbox(site: String?, at date: Date) async throws -> [OutboxEntry] {
        try await autocommit("list due outbox entries") { connection in
            let rows: [PostgresRandomAccessRow]
            if let site {
                rows = try await connection.rows("""
                    SELECT * FROM outbox WHERE state = 'pending' AND next_attempt <= \(Timestamp(date)) AND site = \(site)
                    ORDER BY created_at, id
                    """, logger)
            } else {
                rows = try await connection.rows("""
                    SELECT * FROM outbox WHERE state = 'pending' AND next_attempt <= \(Timestamp(date)) ORDER BY created_at, id
                    """, logger)
            }
            return try rows.map(OutboxRow.entry)
        }
    }

    public func claimOutbox(_ id: String, due: Date, until: Date) async throws -> Bool {
        try await autocommit("claim an outbox entry") { connection in
            // One guarded UPDATE: a concurrent claim waits for this one's row lock, then sees
            // the next attempt moved past `due` and updates nothing.
            try await connection.count("""
                UPDATE outbox SET next_attempt = \(Timestamp(until))
                WHERE id = \(id) AND state = 'pending' AND next_attempt <= \(Timestamp(due))
                RETURNING id
                """, logger) == 1
        }
    }

    public func outboxSent(_ entry: OutboxEntry, at date: Date, refused: [String], followUp: OutboxEntry?) async throws {
        try await transaction("record a sent message") { connection in
            try await connection.run("""
                UPDATE outbox SET state = 'sent', sent_at = \(Timestamp(date)), attempts = attempts + 1,
                    last_error = \(OutboxRules.refusalNote(refused).storable)
                WHERE id = \(entry.id)
                """, logger)
            if let followUp { try await connection.run(try OutboxRow.insert(followUp), logger) }
            try await updateTransfer(id: entry.transferId, connection) { OutboxRules.sent($0, entry: entry, refused: refused, followUp: followUp) }
        }
    }

    public func outboxFailed(_ entry: OutboxEntry, error: String, retryAt: Date?) async throws {
        try await transaction("record a failed send") { connection in
            if let retryAt {
                try await connection.run("""
                    UPDATE outbox SET attempts = attempts + 1, next_attempt = \(Timestamp(retryAt)), last_error = \(error.storable)
                    WHERE id = \(entry.id)
                    """, logger)
                return
            }
            try await connection.run("""
                UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = \(error.storable) WHERE id = \(entry.id)
                """, logger)
            try await updateTransfer(id: entry.transferId, connection) { OutboxRules.givenUp($0, entry: entry, error: error) }
        }
    }

    public func requeueOutbox(transferId: String, at date: Date) async throws -> Int {
        try await transaction("requeue failed outbox entries") { connection in
            let requeued = try await connection.count("""
                UPDATE outbox SET state = 'pending', next_attempt = \(Timestamp(date)), created_at = \(Timestamp(date)), last_error = NULL
                WHERE transfer_id = \(transferId) AND state = 'failed'
                RETURNING id
                """, logger)
            if requeued > 0 { try await updateTransfer(id: transferId, connection, by: OutboxRules.requeued) }
            return requeued
        }
    }

    public func outbox(transferId: String) async throws -> [OutboxEntry] {
        try await autocommit("list a transfer's outbox entries") { connection in
            try await connection.rows("SELECT * FROM outbox WHERE transfer_id = \(transferId) ORDER BY created_at, id", logger)
                .map(OutboxRow.entry)
        }
    }

    public func outboxEntries(state: OutboxEntry.State?, limit: Int) async throws -> [OutboxEntry] {
        try await autocommit("list the outbox") { connection in
            let rows: [PostgresRandomAccessRow]
            if let state {
                rows = try await connection.rows("""
                    SELECT * FROM outbox WHERE state = \(state.rawValue) ORDER BY created_at DESC, id DESC LIMIT \(max(0, limit))
                    """, logger)
            } else {
                rows = try await connection.rows("SELECT * FROM outbox ORDER BY created_at DESC, id DESC LIMIT \(max(0, limit))", logger)
            }
            return try rows.map(OutboxRow.entry)
        }
    }

    public func outboxReferences(path: String) async throws -> Bool {
        try await autocommit("look up an outbox file") { connection in
            try await connection.rows("SELECT EXISTS (SELECT 1 FROM outbox WHERE path = \(path)) AS referenced", logger)
                .first?.value("referenced") ?? false
        }
    }
}
