import Foundation
import GatepostCatalog
import PostgresNIO

// MARK: CatalogImporter (`gatepost catalog migrate --to`)

extension PostgresCatalog: CatalogImporter {
    public func importTransfers(_ transfers: [ImportedTransfer]) async throws {
        guard !transfers.isEmpty else { return }
        try await transaction("import transfers") { connection in
            for imported in transfers {
                let id = imported.record.id
                try await connection.run(try TransferRow.insert(imported.record), logger)
                // In the order copied (received): the first with a Message-ID claims it.
                if imported.record.direction == .inbound, let messageId = imported.record.messageId {
                    try await connection.run("""
                        INSERT INTO message_claim (site, message_id, transfer_id) VALUES (\(imported.record.site), \(messageId), \(id))
                        ON CONFLICT DO NOTHING
                        """, logger)
                }
                if let target = imported.deliveryTarget {
                    try await connection.run("""
                        INSERT INTO delivery (transfer_id, application, target, updated_at)
                        VALUES (\(id), \(imported.record.application ?? ""), \(target), \(Timestamp(imported.record.receivedAt)))
                        """, logger)
                }
                for attempt in imported.deliveryHistory {
                    try await connection.run("""
                        INSERT INTO delivery_attempt (transfer_id, at, application, outcome, delivered_path, error, retry_at)
                        VALUES (\(id), \(Timestamp(attempt.at)), \(attempt.application), \(attempt.outcome.rawValue),
                                \(attempt.deliveredPath.storable), \(attempt.error.storable), \(attempt.retryAt.map(Timestamp.init)))
                        """, logger)
                }
                if imported.failedDeliveryAttempts > 0 || imported.nextDeliveryAttempt != nil {
                    try await connection.run("""
                        INSERT INTO delivery_retry (transfer_id, attempts, next_attempt)
                        VALUES (\(id), \(imported.failedDeliveryAttempts),
                                \(Timestamp(imported.nextDeliveryAttempt ?? imported.record.receivedAt)))
                        """, logger)
                }
            }
        }
    }

    public func importUIDLs(site: String, _ messages: [RetrievedMessage]) async throws {
        guard !messages.isEmpty else { return }
        try await transaction("import UIDLs") { connection in
            for message in messages {
                try await connection.run("""
                    INSERT INTO retrieved_message (site, uidl, transfer_id, deleted, listed_size)
                    VALUES (\(site), \(message.uidl), \(message.transferID), \(message.deleted), \(message.listedSize))
                    """, logger)
            }
        }
    }

    public func importSiteStates(_ states: [SiteState]) async throws {
        guard !states.isEmpty else { return }
        try await transaction("import site states") { connection in
            for state in states {
                try await connection.run("""
                    INSERT INTO site_state (site, enabled, last_poll, last_success, last_error, last_error_category, next_poll,
                        first_poll, messages, bytes, failures_in_a_row, skipped, configuration_error, configuration_error_since,
                        server_certificate_expires)
                    VALUES (\(state.site), \(state.enabled), \(state.lastPoll.map(Timestamp.init)), \(state.lastSuccess.map(Timestamp.init)),
                        \(state.lastError.storable), \(state.lastErrorCategory), \(state.nextPoll.map(Timestamp.init)),
                        \(state.firstPoll.map(Timestamp.init)), \(state.messages), \(state.bytes), \(state.failuresInARow),
                        \(try JSONB(encoding: state.skipped)), \(state.configurationError.storable),
                        \(state.configurationErrorSince.map(Timestamp.init)), \(state.serverCertificateExpires.map(Timestamp.init)))
                    """, logger)
            }
        }
    }

    public func importOutbox(_ entries: [OutboxEntry]) async throws {
        guard !entries.isEmpty else { return }
        try await transaction("import the outbox") { connection in
            for entry in entries { try await connection.run(try OutboxRow.insert(entry), logger) }
        }
    }

    public func importOperatorActions(_ actions: [OperatorAction]) async throws {
        guard !actions.isEmpty else { return }
        try await transaction("import operator actions") { connection in
            for action in actions {
                try await connection.run("""
                    INSERT INTO operator_action (id, at, actor, action, site, transfer_id, detail) OVERRIDING SYSTEM VALUE
                    VALUES (\(action.id), \(Timestamp(action.at)), \(action.actor), \(action.action), \(action.site), \(action.transferId),
                            \(action.detail.storable))
                    """, logger)
            }
            // The next action recorded follows the imported ids.
            try await connection.run(
                "SELECT setval(pg_get_serial_sequence('operator_action', 'id'), (SELECT max(id) FROM operator_action))", logger
            )
        }
    }

    public func importAlerts(_ alerts: [Alert]) async throws {
        guard !alerts.isEmpty else { return }
        try await transaction("import alerts") { connection in
            for alert in alerts {
                try await connection.run("""
                    INSERT INTO alert (id, key, kind, site, summary, opened_at, resolved_at, acknowledged_by, acknowledged_at)
                    OVERRIDING SYSTEM VALUE
                    VALUES (\(alert.id), \(alert.key), \(alert.kind), \(alert.site), \(alert.summary.storable), \(Timestamp(alert.openedAt)),
                            \(alert.resolvedAt.map(Timestamp.init)), \(alert.acknowledgedBy), \(alert.acknowledgedAt.map(Timestamp.init)))
                    """, logger)
            }
            try await connection.run("SELECT setval(pg_get_serial_sequence('alert', 'id'), (SELECT max(id) FROM alert))", logger)
        }
    }

    public func importProbes(_ probes: [Probe]) async throws {
        guard !probes.isEmpty else { return }
        try await transaction("import probes") { connection in
            for probe in probes {
                try await connection.run("""
                    INSERT INTO probe (site, message_id, sent_at, returned_at, transfer_id)
                    VALUES (\(probe.site), \(probe.messageId), \(Timestamp(probe.sentAt)), \(probe.returnedAt.map(Timestamp.init)), \(probe.transferId))
                    """, logger)
            }
        }
    }
}
