import Foundation
import GatepostCatalog
import PostgresNIO

// MARK: TransferStore

extension PostgresCatalog {
    @discardableResult
    public func commitReceived(_ batch: [ReceivedTransfer]) async throws -> [RecordedBefore] {
        guard !batch.isEmpty else { return [] }
        return try await transaction("record received messages") { connection in
            // The batch's Message-IDs claimed before it, in one query: the poll does not look
            // each message up (a round trip per message was most of a poll's time).
            let keys = ReceivedBatchPlan.keys(of: batch)
            var claimed: [MessageClaimKey: String] = [:]
            if !keys.isEmpty {
                let rows = try await connection.rows("""
                    SELECT site, message_id, transfer_id FROM message_claim
                    WHERE (site, message_id) IN (SELECT * FROM unnest(\(keys.map(\.site))::text[], \(keys.map(\.messageId))::text[]))
                    """, logger)
                for row in rows {
                    claimed[MessageClaimKey(site: try row.value("site"), messageId: try row.value("message_id"))] = try row.value("transfer_id")
                }
            }
            var plan = ReceivedBatchPlan(batch, claimed: claimed)
            let uidls = plan.leftOutUIDLs
            if !uidls.isEmpty {
                var rows: [SiteUIDL: String] = [:]
                for row in try await connection.rows("""
                    SELECT site, uidl, transfer_id FROM retrieved_message
                    WHERE (site, uidl) IN (SELECT * FROM unnest(\(uidls.map(\.site))::text[], \(uidls.map(\.uidl))::text[]))
                    """, logger) {
                    rows[SiteUIDL(site: try row.value("site"), uidl: try row.value("uidl"))] = try row.value("transfer_id")
                }
                plan.noteRecordedUIDLs(rows)
            }
            let stored = plan.stored
            // A statement per table for the whole batch, not per row: on PostgreSQL each
            // statement is a round trip, and rows one by one made the catalog most of a poll.
            // The rows go in before the per-item steps below, which only read and update.
            let chunks = stride(from: 0, to: stored.count, by: TransferRow.rowsPerStatement).map {
                stored[$0..<min($0 + TransferRow.rowsPerStatement, stored.count)]
            }
            for chunk in chunks {
                try await connection.run(try TransferRow.insert(chunk.map(\.record)), logger)
                let listed = chunk.filter { $0.uidl != nil && $0.replacing == nil }
                if !listed.isEmpty {
                    var statement = Statement()
                    let rows = listed.map { item in
                        let values = [
                            statement.bind(item.record.site), statement.bind(item.uidl), statement.bind(item.record.id),
                            statement.bind(item.listedSize),
                        ]
                        return "(\(values.joined(separator: ", ")), false)"
                    }
                    statement.append("""
                        INSERT INTO retrieved_message (site, uidl, transfer_id, listed_size, deleted) VALUES \(rows.joined(separator: ", "))
                        """)
                    try await connection.run(statement.query, logger)
                }
                let acknowledgments = chunk.compactMap(\.acknowledgment)
                if !acknowledgments.isEmpty { try await connection.run(try OutboxRow.insert(acknowledgments), logger) }
            }
            for item in stored {
                let record = item.record
                if let uidl = item.uidl, let replaced = item.replacing {
                    // The take-over is a compare-and-set: of two pollers that saw `replaced`
                    // under this UIDL, the second waits for the first's row lock, then finds
                    // the row naming another transfer and updates nothing.
                    let taken = try await connection.count("""
                        UPDATE retrieved_message SET transfer_id = \(record.id), deleted = false, listed_size = \(item.listedSize)
                        WHERE site = \(record.site) AND uidl = \(uidl) AND transfer_id = \(replaced)
                        RETURNING uidl
                        """, logger)
                    guard taken == 1 else { throw PostgresCatalogError.uidlTaken(site: record.site, uidl: uidl) }
                }
                // In item order: two reports for one outbound transfer in a batch close it in turn.
                if let outbound = try await outbound(answeredBy: record, connection),
                   let closed = AcknowledgmentRules.close(outbound: outbound, report: record) {
                    try await connection.run(try TransferRow.update(closed), logger)
                }
                if record.type == .probe {
                    try await connection.run("""
                        UPDATE probe SET returned_at = \(Timestamp(record.receivedAt)), transfer_id = \(record.id)
                        WHERE site = \(record.site) AND message_id = \(record.messageId) AND returned_at IS NULL
                        """, logger)
                }
            }
            // Not ON CONFLICT DO NOTHING: a claim another node made since the query above (both
            // polled the site) must fail this batch, which its next poll then leaves out.
            for start in stride(from: 0, to: plan.claims.count, by: TransferRow.rowsPerStatement) {
                var statement = Statement()
                let rows = plan.claims[start..<min(start + TransferRow.rowsPerStatement, plan.claims.count)].map { claim in
                    "(\(statement.bind(claim.key.site)), \(statement.bind(claim.key.messageId)), \(statement.bind(claim.transferId)))"
                }
                statement.append("INSERT INTO message_claim (site, message_id, transfer_id) VALUES \(rows.joined(separator: ", "))")
                try await connection.run(statement.query, logger)
            }
            return plan.leftOut
        }
    }

    /// The outbound transfer `report` answers (the one whose id is its envelope id, else the
    /// first with its Message-ID), locked until the caller's transaction ends: a report another
    /// node records meanwhile for the same transfer waits, then reads what this one wrote.
    func outbound(answeredBy report: TransferRecord, _ connection: PostgresConnection) async throws -> TransferRecord? {
        guard AcknowledgmentRules.reference(of: report) != nil else { return nil }
        if let envelopeId = report.originalEnvelopeId,
           let row = try await connection.rows("SELECT * FROM transfer WHERE id = \(envelopeId) FOR NO KEY UPDATE", logger).first {
            let outbound = try TransferRow.record(row)
            if AcknowledgmentRules.answers(report, outbound: outbound) { return outbound }
        }
        guard let messageId = report.originalMessageId else { return nil }
        let rows = try await connection.rows("""
            SELECT * FROM transfer WHERE direction = 'out' AND message_id = \(messageId) AND site = \(report.site)
            ORDER BY received_at, id FOR NO KEY UPDATE
            """, logger)
        for row in rows {
            let outbound = try TransferRow.record(row)
            if AcknowledgmentRules.answers(report, outbound: outbound) { return outbound }
        }
        return nil
    }

    /// Replaces transfer `id` by what `rule` makes of it, in the caller's transaction, with its
    /// row locked from the read to the write; nothing when there is no such transfer.
    func updateTransfer(id: String, _ connection: PostgresConnection, by rule: (TransferRecord) -> TransferRecord) async throws {
        guard let row = try await connection.rows("SELECT * FROM transfer WHERE id = \(id) FOR NO KEY UPDATE", logger).first else { return }
        let stored = try TransferRow.record(row)
        let updated = rule(stored)
        if updated != stored { try await connection.run(try TransferRow.update(updated), logger) }
    }

    public func commitOutbound(_ record: TransferRecord, message: OutboxEntry) async throws {
        try await transaction("record an outbound transfer") { connection in
            try await connection.run(try TransferRow.insert(record), logger)
            try await connection.run(try OutboxRow.insert(message), logger)
        }
    }

    /// How many rows a search reads at a time when TextPattern decides what matches.
    static let searchBatch = 500

    public func transfers(_ filter: TransferFilter) async throws -> [TransferRecord] {
        // As SQL's LIMIT in SQLite: a negative one is no limit.
        let limit = filter.limit.flatMap { $0 >= 0 ? $0 : nil }
        if limit == 0 { return [] }
        let searches = [filter.fileName, filter.sender, filter.subject, filter.anyText].contains { $0 != nil }
        return try await autocommit("list transfers") { connection in
            guard searches else {
                return try await connection.rows(Self.transfersQuery(filter, after: filter.after, limit: limit), logger)
                    .map(TransferRow.record)
            }
            // SQL narrows to the rows that can match (exactly, for ASCII values), TextPattern
            // decides: batch after batch in the list's order, until the page is full.
            var found: [TransferRecord] = []
            var after = filter.after
            while true {
                let rows = try await connection.rows(Self.transfersQuery(filter, after: after, limit: Self.searchBatch), logger)
                for row in rows {
                    let record = try TransferRow.record(row)
                    guard Self.textMatches(filter, record) else { continue }
                    found.append(record)
                    if found.count == limit { return found }
                }
                guard rows.count == Self.searchBatch, let last = rows.last else { return found }
                after = TransferCursor(receivedAt: try last.time("received_at"), id: try last.value("id"))
            }
        }
    }

    /// The transfers `filter` selects, after `after` in its order, at most `limit`: every
    /// condition in SQL, the text patterns only as far as SQL can tell them (``textCondition``).
    static func transfersQuery(_ filter: TransferFilter, after: TransferCursor?, limit: Int?) -> PostgresQuery {
        var statement = Statement("SELECT * FROM transfer")
        var conditions: [String] = []
        if let site = filter.site { conditions.append("site = \(statement.bind(site))") }
        if let type = filter.type { conditions.append("type = \(statement.bind(type.rawValue))") }
        if let state = filter.state { conditions.append("state = \(statement.bind(state.rawValue))") }
        if let direction = filter.direction { conditions.append("direction = \(statement.bind(direction.rawValue))") }
        if let since = filter.since { conditions.append("received_at >= \(statement.bind(Timestamp(since)))") }
        if let before = filter.before { conditions.append("received_at < \(statement.bind(Timestamp(before)))") }
        if let purged = filter.purged { conditions.append(purged ? "purged_at IS NOT NULL" : "purged_at IS NULL") }
        if let keptWhole = filter.keptWhole {
            let names = statement.bind(TransferRecord.keptWholeFileNames.sorted())
            conditions.append(keptWhole ? "file_name = ANY(\(names))" : "(file_name IS NULL OR NOT file_name = ANY(\(names)))")
        }
        for (column, pattern) in [("file_name", filter.fileName), ("sender", filter.sender), ("subject", filter.subject)] {
            if let pattern, let condition = textCondition(pattern, column: column, &statement) { conditions.append(condition) }
        }
        if let pattern = filter.anyText {
            let each = ["file_name", "sender", "subject"].compactMap { textCondition(pattern, column: $0, &statement) }
            if each.count == 3 { conditions.append("(\(each.joined(separator: " OR ")))") }
        }
        if let after {
            let time = statement.bind(Timestamp(after.receivedAt)), id = statement.bind(after.id)
            conditions.append(filter.newestFirst ? "(received_at, id) < (\(time), \(id))" : "(received_at, id) > (\(time), \(id))")
        }
        if !conditions.isEmpty { statement.append(" WHERE " + conditions.joined(separator: " AND ")) }
        statement.append(filter.newestFirst ? " ORDER BY received_at DESC, id DESC" : " ORDER BY received_at, id")
        if let limit { statement.append(" LIMIT \(statement.bind(limit))") }
        return statement.query
    }

    /// A condition every value `pattern` matches meets, or nil when SQL cannot tell: for a
    /// value that is ASCII (as many bytes as characters), ILIKE in the "C" collation folds
    /// A-Z only, exactly as ``TextPattern`` does for ASCII, so a substring or exact pattern is
    /// decided here and a glob narrowed to the values holding its literal runs; any other
    /// value passes, for TextPattern's Unicode rules (`ß` is `SS`) to decide.
    static func textCondition(_ pattern: TextPattern, column: String, _ statement: inout Statement) -> String? {
        func escaped(_ text: String) -> String {
            text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
        }
        let isASCII = { (text: String) in text.utf8.allSatisfy { $0 < 0x80 } }
        let likes: [String]
        switch pattern.kind {
        case .substring:
            guard !pattern.text.isEmpty, isASCII(pattern.text) else { return nil }
            likes = ["%" + escaped(pattern.text) + "%"]
        case .exact:
            guard !pattern.text.isEmpty, isASCII(pattern.text) else { return nil }
            likes = [escaped(pattern.text)]
        case .glob:
            likes = pattern.requiredLiterals.filter { !$0.isEmpty && isASCII($0) }.map { "%" + escaped($0) + "%" }
            guard !likes.isEmpty else { return nil }
        }
        // LIKE's escape character is the backslash unless told otherwise.
        let tests = likes.map { "(\(column) COLLATE \"C\") ILIKE \(statement.bind($0))" }
        return "(octet_length(\(column)) <> char_length(\(column)) OR (\(tests.joined(separator: " AND "))))"
    }

    /// Whether `record` passes `filter`'s text patterns, by ``TextPattern``'s own rule.
    static func textMatches(_ filter: TransferFilter, _ record: TransferRecord) -> Bool {
        if let pattern = filter.fileName, !pattern.matches(record.fileName) { return false }
        if let pattern = filter.sender, !pattern.matches(record.sender) { return false }
        if let pattern = filter.subject, !pattern.matches(record.subject) { return false }
        if let pattern = filter.anyText, ![record.fileName, record.sender, record.subject].contains(where: pattern.matches) { return false }
        return true
    }

    public func inboundCounts(since: Date) async throws -> [String: Int] {
        try await autocommit("count received transfers") { connection in
            let rows = try await connection.rows("""
                SELECT site, count(*) AS count FROM transfer WHERE received_at >= \(Timestamp(since)) AND direction = 'in' GROUP BY site
                """, logger)
            var counts: [String: Int] = [:]
            for row in rows { counts[try row.value("site"), default: 0] += try row.value("count", as: Int.self) }
            return counts
        }
    }

    public func transfer(id: String) async throws -> TransferRecord? {
        try await autocommit("read a transfer") { connection in
            try await connection.rows("SELECT * FROM transfer WHERE id = \(id)", logger).first.map(TransferRow.record)
        }
    }

    public func transferID(site: String, messageId: String) async throws -> String? {
        try await autocommit("look up a Message-ID") { connection in
            try await connection.rows("""
                SELECT transfer_id FROM message_claim WHERE site = \(site) AND message_id = \(messageId)
                """, logger).first?.value("transfer_id")
        }
    }

    public func transferID(site: String, messageSha256: String) async throws -> String? {
        try await autocommit("look up a message hash") { connection in
            try await connection.rows("""
                SELECT id FROM transfer WHERE site = \(site) AND message_sha256 = \(messageSha256) AND direction = 'in'
                ORDER BY received_at, id LIMIT 1
                """, logger).first?.value("id")
        }
    }

    public func transfersToDeliver(at now: Date) async throws -> [TransferRecord] {
        let states = TransferRecord.State.awaitingDelivery.map(\.rawValue)
        return try await autocommit("list transfers to deliver") { connection in
            try await connection.rows("""
                SELECT transfer.* FROM transfer LEFT JOIN delivery_retry ON delivery_retry.transfer_id = transfer.id
                WHERE transfer.direction = 'in' AND transfer.state = ANY(\(states))
                  AND (delivery_retry.next_attempt IS NULL OR delivery_retry.next_attempt <= \(Timestamp(now)))
                ORDER BY transfer.received_at, transfer.id
                """, logger).map(TransferRow.record)
        }
    }

    public func claimDelivery(id: String, due: Date, until: Date) async throws -> Bool {
        let states = TransferRecord.State.awaitingDelivery.map(\.rawValue)
        return try await autocommit("claim a delivery") { connection in
            // One statement: a node claiming at the same moment waits for the row lock, then
            // finds the attempt planned after `due` and changes nothing.
            try await connection.count("""
                INSERT INTO delivery_retry (transfer_id, attempts, next_attempt)
                SELECT id, 0, \(Timestamp(until)) FROM transfer WHERE id = \(id) AND direction = 'in' AND state = ANY(\(states))
                ON CONFLICT (transfer_id) DO UPDATE SET next_attempt = EXCLUDED.next_attempt
                WHERE delivery_retry.next_attempt <= \(Timestamp(due))
                RETURNING transfer_id
                """, logger) == 1
        }
    }

    public func deliveryAttempts(id: String) async throws -> Int {
        try await autocommit("count delivery attempts") { connection in
            try await connection.rows("SELECT attempts FROM delivery_retry WHERE transfer_id = \(id)", logger).first?.value("attempts") ?? 0
        }
    }

    public func recordDeliveryAttempt(id: String, _ attempt: DeliveryAttempt) async throws {
        try await transaction("record a delivery attempt") { connection in
            guard try await connection.count("SELECT 1 FROM transfer WHERE id = \(id) FOR NO KEY UPDATE", logger) == 1 else {
                throw PostgresCatalogError.noSuchTransfer(id: id)
            }
            try await connection.run("""
                INSERT INTO delivery_attempt (transfer_id, at, application, outcome, delivered_path, error, retry_at)
                VALUES (\(id), \(Timestamp(attempt.at)), \(attempt.application), \(attempt.outcome.rawValue), \(attempt.deliveredPath.storable),
                        \(attempt.error.storable), \(attempt.retryAt.map(Timestamp.init)))
                """, logger)
            switch attempt.outcome {
            case .delivered, .failed:
                let state: TransferRecord.State = attempt.outcome == .delivered ? .delivered : .failed
                try await connection.run("""
                    UPDATE transfer SET state = \(state.rawValue), application = \(attempt.application), error = \(attempt.error.storable),
                        delivered_path = \(attempt.deliveredPath.storable)
                    WHERE id = \(id)
                    """, logger)
            case .retrying:
                try await connection.run("""
                    INSERT INTO delivery_retry (transfer_id, attempts, next_attempt) VALUES (\(id), 1, \(Timestamp(attempt.retryAt ?? attempt.at)))
                    ON CONFLICT (transfer_id) DO UPDATE SET attempts = delivery_retry.attempts + 1, next_attempt = excluded.next_attempt
                    """, logger)
                try await connection.run("""
                    UPDATE transfer SET state = 'routed', application = \(attempt.application), error = \(attempt.error.storable) WHERE id = \(id)
                    """, logger)
            }
        }
    }

    public func deliveryHistory(id: String) async throws -> [DeliveryAttempt] {
        try await autocommit("read a delivery history") { connection in
            try await connection.rows("SELECT * FROM delivery_attempt WHERE transfer_id = \(id) ORDER BY id", logger).map { row in
                DeliveryAttempt(
                    at: try row.time("at"), application: try row.value("application"),
                    outcome: DeliveryAttempt.Outcome(rawValue: try row.value("outcome")) ?? .failed,
                    deliveredPath: try row.value("delivered_path"), error: try row.value("error"), retryAt: try row.optionalTime("retry_at")
                )
            }
        }
    }

    public func updateDelivery(id: String, state: TransferRecord.State, application: String?, error: String?, deliveredPath: String?) async throws {
        try await autocommit("update a delivery") { connection in
            try await connection.run("""
                UPDATE transfer SET state = \(state.rawValue), application = \(application), error = \(error.storable),
                    delivered_path = \(deliveredPath.storable)
                WHERE id = \(id)
                """, logger)
        }
    }

    public func deliveryTarget(id: String) async throws -> String? {
        try await autocommit("read a delivery target") { connection in
            try await connection.rows("SELECT target FROM delivery WHERE transfer_id = \(id)", logger).first?.value("target")
        }
    }

    public func recordDeliveryTarget(id: String, application: String, target: String) async throws {
        try await autocommit("record a delivery target") { connection in
            // The foreign key refuses a transfer that is not stored.
            try await connection.run("""
                INSERT INTO delivery (transfer_id, application, target, updated_at) VALUES (\(id), \(application), \(target), \(Timestamp(Date())))
                ON CONFLICT (transfer_id) DO UPDATE SET application = excluded.application, target = excluded.target,
                    updated_at = excluded.updated_at
                """, logger)
        }
    }

    public func markOverdue(site: String, sentBefore: Date) async throws -> [TransferRecord] {
        try await transaction("mark overdue transfers") { connection in
            let waiting = try await connection.rows("""
                SELECT * FROM transfer
                WHERE direction = 'out' AND site = \(site) AND state IN ('sent', 'delivered')
                  AND id IN (SELECT transfer_id FROM outbox WHERE kind = 'file' AND state = 'sent' AND site = \(site)
                             GROUP BY transfer_id HAVING max(sent_at) < \(Timestamp(sentBefore)))
                ORDER BY received_at, id
                FOR NO KEY UPDATE
                """, logger)
            var overdue: [TransferRecord] = []
            for row in waiting {
                guard let moved = AcknowledgmentRules.overdue(try TransferRow.record(row)) else { continue }
                try await connection.run(try TransferRow.update(moved), logger)
                overdue.append(moved)
            }
            return overdue
        }
    }

    public func markPurged(id: String, at date: Date) async throws {
        try await autocommit("record a purge") { connection in
            try await connection.run("UPDATE transfer SET path = NULL, message_text = NULL, purged_at = \(Timestamp(date)) WHERE id = \(id)", logger)
        }
    }
}

// MARK: UIDLStore

extension PostgresCatalog {
    public func retrievedMessages(site: String) async throws -> [String: RetrievedMessage] {
        try await autocommit("read a site's UIDLs") { connection in
            let rows = try await connection.rows("""
                SELECT r.uidl, r.transfer_id, r.deleted, r.listed_size, t.message_id
                FROM retrieved_message r LEFT JOIN transfer t ON t.id = r.transfer_id
                WHERE r.site = \(site)
                """, logger)
            var result: [String: RetrievedMessage] = [:]
            result.reserveCapacity(rows.count)
            for row in rows {
                let uidl: String = try row.value("uidl")
                result[uidl] = RetrievedMessage(
                    uidl: uidl, transferID: try row.value("transfer_id"), deleted: try row.value("deleted"),
                    messageId: try row.value("message_id"), listedSize: try row.value("listed_size")
                )
            }
            return result
        }
    }

    public func markDeleted(site: String, uidls: [String]) async throws {
        guard !uidls.isEmpty else { return }
        try await autocommit("record deletions") { connection in
            try await connection.run("UPDATE retrieved_message SET deleted = true WHERE site = \(site) AND uidl = ANY(\(uidls))", logger)
        }
    }
}
