import Foundation
import GatepostCatalog
import PostgresNIO

// MARK: SiteStateStore

extension PostgresCatalog {
    public func siteStates() async throws -> [String: SiteState] {
        try await autocommit("read the sites' state") { connection in
            var states: [String: SiteState] = [:]
            for row in try await connection.rows("SELECT * FROM site_state", logger) {
                let site: String = try row.value("site")
                states[site] = SiteState(
                    site: site, enabled: try row.value("enabled"), lastPoll: try row.optionalTime("last_poll"),
                    lastSuccess: try row.optionalTime("last_success"), lastError: try row.value("last_error"),
                    nextPoll: try row.optionalTime("next_poll"), messages: try row.value("messages"), bytes: try row.value("bytes"),
                    skipped: try row.json("skipped", as: [SkippedMessage].self) ?? [],
                    configurationError: try row.value("configuration_error"),
                    configurationErrorSince: try row.optionalTime("configuration_error_since"),
                    failuresInARow: try row.value("failures_in_a_row"), lastErrorCategory: try row.value("last_error_category"),
                    firstPoll: try row.optionalTime("first_poll"), serverCertificateExpires: try row.optionalTime("server_certificate_expires")
                )
            }
            return states
        }
    }

    /// Makes sure `site` has its row, in the caller's transaction.
    private func ensureSite(_ site: String, _ connection: PostgresConnection) async throws {
        try await connection.run("INSERT INTO site_state (site) VALUES (\(site)) ON CONFLICT (site) DO NOTHING", logger)
    }

    public func setSiteEnabled(_ site: String, enabled: Bool) async throws {
        try await autocommit("record a site's enabling") { connection in
            try await connection.run("""
                INSERT INTO site_state (site, enabled) VALUES (\(site), \(enabled))
                ON CONFLICT (site) DO UPDATE SET enabled = excluded.enabled
                """, logger)
        }
    }

    public func recordPoll(
        site: String, at: Date, error: String?, errorCategory: String?, messages: Int, bytes: Int64, nextPoll: Date?,
        serverCertificateExpires: Date?
    ) async throws {
        let failed = error != nil
        try await transaction("record a poll") { connection in
            try await ensureSite(site, connection)
            // Every new value computed from the row as it is when updated: two nodes recording
            // polls of one site add up, whichever goes first.
            try await connection.run("""
                UPDATE site_state SET last_poll = \(Timestamp(at)), last_error = \(error.storable), last_error_category = \(errorCategory),
                    next_poll = \(nextPoll.map(Timestamp.init)), messages = messages + \(Int64(messages)), bytes = bytes + \(bytes),
                    first_poll = coalesce(first_poll, \(Timestamp(at))),
                    last_success = CASE WHEN \(failed) THEN last_success ELSE \(Timestamp(at)) END,
                    failures_in_a_row = CASE WHEN \(failed) THEN failures_in_a_row + 1 ELSE 0 END,
                    server_certificate_expires = coalesce(\(serverCertificateExpires.map(Timestamp.init)), server_certificate_expires)
                WHERE site = \(site)
                """, logger)
        }
    }

    public func recordSkips(site: String, skipped: [SkippedMessage], complete: Bool) async throws {
        try await transaction("record skipped messages") { connection in
            try await ensureSite(site, connection)
            let row = try await connection.rows("SELECT skipped FROM site_state WHERE site = \(site) FOR NO KEY UPDATE", logger).first
            let previous = try row?.json("skipped", as: [SkippedMessage].self) ?? []
            let merged = SkippedMessage.merge(previous, with: skipped, complete: complete).map { skip in
                var skip = skip
                skip.uidl = skip.uidl.storable
                skip.reason = skip.reason.storable
                return skip
            }
            let stored = merged.isEmpty ? nil : try JSONB(encoding: merged)
            try await connection.run("UPDATE site_state SET skipped = \(stored) WHERE site = \(site)", logger)
        }
    }

    public func recordConfigurationError(site: String, error: String?, at: Date) async throws {
        let failing = error != nil
        try await transaction("record a site's configuration error") { connection in
            try await ensureSite(site, connection)
            try await connection.run("""
                UPDATE site_state SET configuration_error = \(error.storable),
                    configuration_error_since = CASE WHEN \(failing) THEN coalesce(configuration_error_since, \(Timestamp(at))) END
                WHERE site = \(site)
                """, logger)
        }
    }
}

// MARK: AuditStore

extension PostgresCatalog {
    public func recordOperatorAction(_ action: OperatorAction) async throws {
        try await autocommit("record an operator action") { connection in
            try await connection.run("""
                INSERT INTO operator_action (at, actor, action, site, transfer_id, detail)
                VALUES (\(Timestamp(action.at)), \(action.actor), \(action.action), \(action.site), \(action.transferId), \(action.detail.storable))
                """, logger)
        }
    }

    public func operatorActions(site: String?, transferId: String?, limit: Int) async throws -> [OperatorAction] {
        var statement = Statement("SELECT * FROM operator_action")
        var conditions: [String] = []
        if let site { conditions.append("site = \(statement.bind(site))") }
        if let transferId { conditions.append("transfer_id = \(statement.bind(transferId))") }
        if !conditions.isEmpty { statement.append(" WHERE " + conditions.joined(separator: " AND ")) }
        statement.append(" ORDER BY id DESC LIMIT \(statement.bind(max(0, limit)))")
        let query = statement.query
        return try await autocommit("list operator actions") { connection in
            try await connection.rows(query, logger).map { row in
                OperatorAction(
                    id: try row.value("id"), at: try row.time("at"), actor: try row.value("actor"), action: try row.value("action"),
                    site: try row.value("site"), transferId: try row.value("transfer_id"), detail: try row.value("detail")
                )
            }
        }
    }
}

// MARK: AlertStore

extension PostgresCatalog {
    public func updateAlerts(opening: [Alert], resolving: [String], at: Date) async throws -> AlertChanges {
        try await transaction("update alerts") { connection in
            var changes = AlertChanges()
            for alert in opening {
                // The partial unique index holds one open alert per key across nodes: a key
                // another node opened meanwhile is passed over, not an error.
                let inserted = try await connection.rows("""
                    INSERT INTO alert (key, kind, site, summary, opened_at)
                    VALUES (\(alert.key), \(alert.kind), \(alert.site), \(alert.summary.storable), \(Timestamp(at)))
                    ON CONFLICT (key) WHERE resolved_at IS NULL DO NOTHING
                    RETURNING id
                    """, logger)
                guard let row = inserted.first else { continue }
                var opened = alert
                opened.id = try row.value("id")
                opened.openedAt = at
                opened.resolvedAt = nil
                opened.acknowledgedBy = nil
                opened.acknowledgedAt = nil
                changes.opened.append(opened)
            }
            for key in resolving {
                let resolved = try await connection.rows("""
                    UPDATE alert SET resolved_at = \(Timestamp(at)) WHERE key = \(key) AND resolved_at IS NULL RETURNING *
                    """, logger)
                changes.resolved += try resolved.map(AlertRow.alert)
            }
            return changes
        }
    }

    public func alerts(openOnly: Bool, limit: Int) async throws -> [Alert] {
        try await autocommit("list alerts") { connection in
            let rows: [PostgresRandomAccessRow]
            if openOnly {
                rows = try await connection.rows("SELECT * FROM alert WHERE resolved_at IS NULL ORDER BY id DESC LIMIT \(max(limit, 0))", logger)
            } else {
                rows = try await connection.rows("SELECT * FROM alert ORDER BY id DESC LIMIT \(max(limit, 0))", logger)
            }
            return try rows.map(AlertRow.alert)
        }
    }

    public func acknowledgeAlert(id: Int64, by actor: String, at: Date) async throws -> Alert? {
        try await autocommit("acknowledge an alert") { connection in
            try await connection.rows("""
                UPDATE alert SET acknowledged_by = \(actor), acknowledged_at = \(Timestamp(at)) WHERE id = \(id) RETURNING *
                """, logger).first.map(AlertRow.alert)
        }
    }
}

// MARK: ProbeStore

extension PostgresCatalog {
    public func recordProbe(_ probe: Probe) async throws {
        try await autocommit("record a probe") { connection in
            try await connection.run("""
                INSERT INTO probe (site, message_id, sent_at, returned_at, transfer_id)
                VALUES (\(probe.site), \(probe.messageId), \(Timestamp(probe.sentAt)), \(probe.returnedAt.map(Timestamp.init)), \(probe.transferId))
                """, logger)
        }
    }

    public func probe(site: String, messageId: String) async throws -> Probe? {
        try await autocommit("read a probe") { connection in
            try await connection.rows("SELECT * FROM probe WHERE site = \(site) AND message_id = \(messageId)", logger)
                .first.map(ProbeRow.probe)
        }
    }

    public func probes(site: String, limit: Int) async throws -> [Probe] {
        try await autocommit("list probes") { connection in
            try await connection.rows("""
                SELECT * FROM probe WHERE site = \(site) ORDER BY sent_at DESC, message_id DESC LIMIT \(max(limit, 0))
                """, logger).map(ProbeRow.probe)
        }
    }
}
