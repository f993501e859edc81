import Foundation
import GatepostCatalog
import PostgresNIO

// How each record of the contract is written to its row and read back. Enumerations are their
// raw values (as in SQLite); a value this build does not know reads as SQLiteCatalog reads it.

enum TransferRow {
    /// Every column, in the order ``bind(_:into:)`` binds them.
    static let columns = [
        "id", "direction", "type", "file_name", "site", "application", "state", "message_id", "uidl", "sender",
        "recipients", "subject", "size", "sha256", "path", "received_at", "ack", "error", "original_message_id",
        "original_envelope_id", "disposition", "delivered_path", "message_sha256", "recipient_reports", "ack_message_id",
        "purged_at", "message_text", "classification", "signature", "security", "node",
    ]

    /// The row's values as placeholders, bound into `statement` in ``columns``' order. Texts
    /// stop at a NUL, which PostgreSQL's text cannot hold.
    static func bind(_ record: TransferRecord, into statement: inout Statement) throws -> [String] {
        let reports = record.recipientReports.map { report in
            RecipientReport(
                recipient: report.recipient.storable, action: report.action.storable, status: report.status.storable,
                disposition: report.disposition.storable
            )
        }
        return [
            statement.bind(record.id), statement.bind(record.direction.rawValue), statement.bind(record.type.rawValue),
            statement.bind(record.fileName.storable), statement.bind(record.site), statement.bind(record.application.storable),
            statement.bind(record.state.rawValue), statement.bind(record.messageId.storable), statement.bind(record.uidl),
            statement.bind(record.sender.storable), statement.bind(try JSONB(encoding: record.recipients.map(\.storable))),
            statement.bind(record.subject.storable), statement.bind(record.size), statement.bind(record.sha256),
            statement.bind(record.path.storable), statement.bind(Timestamp(record.receivedAt)), statement.bind(record.ack.rawValue),
            statement.bind(record.error.storable), statement.bind(record.originalMessageId.storable),
            statement.bind(record.originalEnvelopeId.storable), statement.bind(record.disposition.storable),
            statement.bind(record.deliveredPath.storable), statement.bind(record.messageSha256),
            statement.bind(try JSONB(encoding: reports)), statement.bind(record.ackMessageId.storable),
            statement.bind(record.purgedAt.map(Timestamp.init)), statement.bind(record.messageText.storable),
            statement.bind(record.classification.storable), statement.bind(record.signature.storable),
            statement.bind(try record.security.map { try JSONB(encoding: $0) }), statement.bind(record.node.storable),
        ]
    }

    static func insert(_ record: TransferRecord) throws -> PostgresQuery {
        try insert([record])
    }

    /// One INSERT for all of `records` (at most ``rowsPerStatement``): a statement per row
    /// made a poll's commit a round trip per message.
    static func insert(_ records: some Collection<TransferRecord>) throws -> PostgresQuery {
        precondition(!records.isEmpty && records.count <= rowsPerStatement)
        var statement = Statement()
        let rows = try records.map { "(\(try bind($0, into: &statement).joined(separator: ", ")))" }
        statement.append("INSERT INTO transfer (\(columns.joined(separator: ", "))) VALUES \(rows.joined(separator: ", "))")
        return statement.query
    }

    /// Rows in one INSERT: PostgreSQL takes at most 65,535 parameters in a statement.
    static let rowsPerStatement = 1000

    /// Writes every field of `record` over the row with its id.
    static func update(_ record: TransferRecord) throws -> PostgresQuery {
        var statement = Statement()
        let values = try bind(record, into: &statement)
        let assignments = zip(columns, values).dropFirst().map { "\($0) = \($1)" }
        statement.append("UPDATE transfer SET \(assignments.joined(separator: ", ")) WHERE id = \(values[0])")
        return statement.query
    }

    static func record(_ row: PostgresRandomAccessRow) throws -> TransferRecord {
        TransferRecord(
            id: try row.value("id"),
            direction: TransferRecord.Direction(rawValue: try row.value("direction")) ?? .inbound,
            type: TransferRecord.Kind(rawValue: try row.value("type")) ?? .xfer,
            fileName: try row.value("file_name"),
            site: try row.value("site"),
            application: try row.value("application"),
            state: TransferRecord.State(rawValue: try row.value("state")) ?? .received,
            messageId: try row.value("message_id"),
            uidl: try row.value("uidl"),
            sender: try row.value("sender"),
            recipients: try row.json("recipients", as: [String].self) ?? [],
            subject: try row.value("subject"),
            size: try row.value("size"),
            sha256: try row.value("sha256"),
            path: try row.value("path"),
            receivedAt: try row.time("received_at"),
            ack: TransferRecord.Acknowledgment(rawValue: try row.value("ack")) ?? .none,
            error: try row.value("error"),
            originalMessageId: try row.value("original_message_id"),
            disposition: try row.value("disposition"),
            deliveredPath: try row.value("delivered_path"),
            messageSha256: try row.value("message_sha256"),
            recipientReports: try row.json("recipient_reports", as: [RecipientReport].self) ?? [],
            ackMessageId: try row.value("ack_message_id"),
            purgedAt: try row.optionalTime("purged_at"),
            messageText: try row.value("message_text"),
            classification: try row.value("classification"),
            signature: try row.value("signature"),
            originalEnvelopeId: try row.value("original_envelope_id"),
            security: try row.json("security", as: MessageSecurity.self),
            node: try row.value("node")
        )
    }
}

enum OutboxRow {
    static func insert(_ entry: OutboxEntry) throws -> PostgresQuery {
        try insert([entry])
    }

    /// One INSERT for all of `entries` (at most ``TransferRow/rowsPerStatement``).
    static func insert(_ entries: some Collection<OutboxEntry>) throws -> PostgresQuery {
        precondition(!entries.isEmpty && entries.count <= TransferRow.rowsPerStatement)
        var s = Statement()
        let rows = try entries.map { entry in
            let values = [
                s.bind(entry.id), s.bind(entry.kind.rawValue), s.bind(entry.transferId), s.bind(entry.site), s.bind(entry.mailFrom.storable),
                s.bind(try JSONB(encoding: entry.recipients.map(\.storable))), s.bind(entry.path), s.bind(entry.messageId.storable),
                s.bind(entry.state.rawValue), s.bind(entry.attempts), s.bind(Timestamp(entry.nextAttempt)), s.bind(entry.lastError.storable),
                s.bind(Timestamp(entry.createdAt)), s.bind(entry.sentAt.map(Timestamp.init)),
            ]
            return "(\(values.joined(separator: ", ")))"
        }
        s.append("""
            INSERT INTO outbox (id, kind, transfer_id, site, mail_from, recipients, path, message_id, state, attempts,
                                next_attempt, last_error, created_at, sent_at)
            VALUES \(rows.joined(separator: ", "))
            """)
        return s.query
    }

    static func entry(_ row: PostgresRandomAccessRow) throws -> OutboxEntry {
        OutboxEntry(
            id: try row.value("id"), kind: OutboxEntry.Kind(rawValue: try row.value("kind")) ?? .acknowledgment,
            transferId: try row.value("transfer_id"), site: try row.value("site"), mailFrom: try row.value("mail_from"),
            recipients: try row.json("recipients", as: [String].self) ?? [], path: try row.value("path"),
            messageId: try row.value("message_id"), state: OutboxEntry.State(rawValue: try row.value("state")) ?? .pending,
            attempts: try row.value("attempts"), nextAttempt: try row.time("next_attempt"), lastError: try row.value("last_error"),
            createdAt: try row.time("created_at"), sentAt: try row.optionalTime("sent_at")
        )
    }
}

enum AlertRow {
    static func alert(_ row: PostgresRandomAccessRow) throws -> Alert {
        Alert(
            id: try row.value("id"), key: try row.value("key"), kind: try row.value("kind"), site: try row.value("site"),
            summary: try row.value("summary"), openedAt: try row.time("opened_at"), resolvedAt: try row.optionalTime("resolved_at"),
            acknowledgedBy: try row.value("acknowledged_by"), acknowledgedAt: try row.optionalTime("acknowledged_at")
        )
    }
}

enum ProbeRow {
    static func probe(_ row: PostgresRandomAccessRow) throws -> Probe {
        Probe(
            site: try row.value("site"), messageId: try row.value("message_id"), sentAt: try row.time("sent_at"),
            returnedAt: try row.optionalTime("returned_at"), transferId: try row.value("transfer_id")
        )
    }
}
