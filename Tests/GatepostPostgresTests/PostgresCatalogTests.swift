import Foundation
import GatepostCatalog
import GatepostTestSupport
import Testing
@testable import GatepostPostgres

/// What only the PostgreSQL store has: a server, a schema it migrates, several nodes at once.
/// The contract itself is held in Tests/GatepostCatalogTests, against every store.
@Suite struct PostgresCatalogTests {
    static let epoch = Date(timeIntervalSince1970: 1_700_000_000)

    static func inbound(_ id: String, site: String = "acme", at seconds: TimeInterval = 0) -> TransferRecord {
        TransferRecord(
            id: id, type: .xfer, fileName: "a.csv", site: site, recipients: ["x@example.com"], size: 3, sha256: "abc",
            path: "/spool/in/\(site)/\(id)", receivedAt: epoch.addingTimeInterval(seconds)
        )
    }

    static func outbound(_ id: String) -> TransferRecord {
        TransferRecord(
            id: id, direction: .outbound, type: .xfer, fileName: "a.csv", site: "acme", state: .queued,
            messageId: "\(id)@ours.example", recipients: ["edi@acme.example", "ops@acme.example"], receivedAt: epoch, ack: .requested
        )
    }

    static func entry(_ id: String) -> OutboxEntry {
        OutboxEntry(
            id: id, kind: .file, transferId: id, site: "acme", mailFrom: "g@ours.example", recipients: ["edi@acme.example"],
            path: "/spool/out/\(id).eml", messageId: "\(id)@ours.example", nextAttempt: epoch, createdAt: epoch
        )
    }

    // MARK: Migrations

    @Test func nodesConnectingAtOnceMigrateOnceAndAgainChangesNothing() async throws {
        let peer = try await PostgresPeer.shared()
        let database = try await peer.createDatabase()
        let url = peer.url(database: database)
        let catalogs = try await withThrowingTaskGroup(of: PostgresCatalog.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresCatalog.connect(url: url, maximumConnections: 2) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(catalogs.count == 4)
        let applied = try await peer.psql("SELECT version, name FROM schema_migrations ORDER BY version", database: database)
        #expect(applied.split(separator: "\n") == ["1|catalog", "2|cluster", "3|message claims"])
        // Once more on a migrated database: nothing to do, nothing changed.
        let again = try await PostgresCatalog.connect(url: url, maximumConnections: 1)
        #expect(try await peer.psql("SELECT count(*) FROM schema_migrations", database: database).trimmingCharacters(in: .whitespacesAndNewlines) == "3")
        // Each node sees what another stored.
        try await catalogs[0].commitReceived(Self.inbound("T1"), uidl: "u1")
        #expect(try await again.transfer(id: "T1") == Self.inbound("T1"))
        for catalog in catalogs + [again] { await catalog.close() }
    }

    /// A catalog made before Message-ID claims (version 2) gets them from its records: each
    /// site's Message-ID claimed by its earliest inbound transfer, so that what was received
    /// before is still found, and not recorded again.
    @Test func claimsAreMadeFromTheRecordsOfAnOlderSchema() async throws {
        let peer = try await PostgresPeer.shared()
        let database = try await peer.createDatabase()
        let url = peer.url(database: database)
        let catalog = try await PostgresCatalog.connect(url: url, maximumConnections: 1)
        func inbound(_ id: String, site: String = "acme", messageId: String?, at seconds: TimeInterval) -> TransferRecord {
            var record = Self.inbound(id, site: site, at: seconds)
            record.messageId = messageId
            return record
        }
        for record in [inbound("T2", messageId: "m@x", at: 1), inbound("T1", messageId: "m@x", at: 2), inbound("T3", site: "other", messageId: "m@x", at: 3), inbound("T5", messageId: nil, at: 4)] {
            try await catalog.commitReceived(record, uidl: record.id)
        }
        try await catalog.commitOutbound(Self.outbound("T4"), message: Self.entry("T4"))
        await catalog.close()
        // Back to version 2: the claims are made again from the records.
        try await peer.psql("DROP TABLE message_claim; DELETE FROM schema_migrations WHERE version = 3", database: database)
        let migrated = try await PostgresCatalog.connect(url: url, maximumConnections: 1)
        #expect(try await migrated.transferID(site: "acme", messageId: "m@x") == "T2", "the earliest received")
        #expect(try await migrated.transferID(site: "other", messageId: "m@x") == "T3")
        #expect(try await migrated.transferID(site: "acme", messageId: "T4@ours.example") == nil, "outbound claims nothing")
        let leftOut = try await migrated.commitReceived(inbound("T6", messageId: "m@x", at: 5), uidl: "u6")
        #expect(leftOut.map(\.transferId) == ["T2"])
        await migrated.close()
    }

    @Test func aSchemaNewerThanThisBuildIsRefusedInWords() async throws {
        let peer = try await PostgresPeer.shared()
        let database = try await peer.createDatabase()
        let url = peer.url(database: database)
        try await PostgresCatalog.connect(url: url).close()
        try await peer.psql("INSERT INTO schema_migrations (version, name) VALUES (99, 'from the future')", database: database)
        do {
            _ = try await PostgresCatalog.connect(url: url)
            Issue.record("a schema of version 99 was accepted")
        } catch let error as PostgresCatalogError {
            guard case .schemaNewer(_, let found, let known) = error else { Issue.record("\(error)"); return }
            #expect((found, known) == (99, PostgresSchema.latestVersion))
            #expect("\(error)".contains("upgrade"), "\(error)")
        }
    }

    @Test func aDatabaseThatIsNotUTF8IsRefused() async throws {
        let peer = try await PostgresPeer.shared()
        let database = "t_latin1_" + UUID().uuidString.prefix(8).lowercased()
        try await peer.psql("CREATE DATABASE \(database) ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        await #expect(throws: PostgresCatalogError.self) { _ = try await PostgresCatalog.connect(url: peer.url(database: database)) }
    }

    @Test func aUserWhoMayNotCreateTablesIsToldWhatToGrant() async throws {
        let peer = try await PostgresPeer.shared()
        let database = try await peer.createDatabase()
        let role = "r_" + UUID().uuidString.prefix(8).lowercased()
        try await peer.psql("CREATE ROLE \(role) LOGIN PASSWORD 'reader-password'")
        let url = "postgres://\(role):reader-password@\(peer.info.host):\(peer.info.port)/\(database)?sslmode=disable"
        do {
            _ = try await PostgresCatalog.connect(url: url)
            Issue.record("a user without CREATE migrated the catalog")
        } catch let error as PostgresCatalogError {
            guard case .migrationFailed = error else { Issue.record("\(error)"); return }
            #expect("\(error)".contains("GRANT CREATE ON SCHEMA public TO \(role)"), "\(error)")
            #expect(!"\(error)".contains("reader-password"))
        }
        // Granted, it migrates.
        try await peer.psql("GRANT CREATE ON SCHEMA public TO \(role)", database: database)
        try await PostgresCatalog.connect(url: url).close()
    }

    // MARK: Connecting, and what errors say

    @Test func theURLsPasswordNeverAppearsInAnError() async throws {
        let peer = try await PostgresPeer.shared()
        let database = try await peer.createDatabase()
        let secret = "Sup3r-s3cret.Pa55"
        var failures: [(String, any Error)] = []
        func attempt(_ what: String, _ url: String) async {
            do {
                let catalog = try await PostgresCatalog.connect(url: url)
                await catalog.close()
                Issue.record("\(what): connected")
            } catch {
                failures.append((what, error))
            }
        }
        await attempt("wrong password", peer.url(database: database, password: secret))
        // The right password, which must not appear either.
        await attempt("no such database", peer.url(database: "t_missing"))
        await attempt("nothing listening", "postgres://gatepost:\(secret)@127.0.0.1:1/\(database)?sslmode=disable")
        await attempt("TLS the server does not offer", "postgres://gatepost:\(secret)@127.0.0.1:\(peer.info.port)/\(database)?sslmode=require")
        await attempt("a bad port", "postgres://gatepost:\(secret)@127.0.0.1:port/\(database)")
        await attempt("an unknown parameter", "postgres://gatepost:\(secret)@127.0.0.1/\(database)?sslmode=disable&\(secret)=1")
        #expect(failures.count == 6)
        for (what, error) in failures {
            for text in ["\(error)", String(reflecting: error), error.localizedDescription] {
                #expect(!text.contains(secret) && !text.contains(peer.info.password), "\(what): \(text)")
            }
        }
        let kinds = failures.map { what, error -> String in
            switch error as? PostgresCatalogError {
            case .authenticationFailed: "authentication"
            case .noSuchDatabase: "database"
            case .cannotConnect: "connect"
            case .tls: "tls"
            case .invalidURL: "url"
            default: "\(what): \(error)"
            }
        }
        #expect(kinds == ["authentication", "database", "connect", "tls", "url", "url"])
        let descriptions = failures.map { _, error in String(describing: error) }
        #expect(descriptions.first?.contains("check the user and password") == true, "\(descriptions)")
        #expect(descriptions.dropFirst().first?.contains("createdb") == true, "\(descriptions)")
    }

    @Test func aCatalogDescribesItselfWithoutItsPassword() async throws {
        let peer = try await PostgresPeer.shared()
        let catalog = try await PostgresCatalog.connect(url: try await peer.makeDatabase())
        #expect(!catalog.description.contains(peer.info.password))
        #expect(catalog.description.hasPrefix("postgres://gatepost@127.0.0.1:\(peer.info.port)/t_"))
        await catalog.close()
        do {
            _ = try await catalog.transfer(id: "T1")
            Issue.record("a closed catalog answered")
        } catch {
            #expect("\(error)" == "\(PostgresCatalogError.closed)")
        }
    }

    @Test func aUnixSocketURLConnects() async throws {
        let peer = try await PostgresPeer.shared()
        let database = try await peer.createDatabase()
        let catalog = try await PostgresCatalog.connect(url: peer.socketURL(database: database))
        try await catalog.commitReceived(Self.inbound("T1"), uidl: "u1")
        #expect(try await catalog.retrievedMessages(site: "acme")["u1"]?.transferID == "T1")
        await catalog.close()
    }

    @Test func urlsAreReadAsLibpqReadsThem() throws {
        let tcp = try PostgresLocation(parsing: "postgres://gp%40ops:p%3Ass%2Fword@db.example:6432/catalog?sslmode=verify-full")
        #expect(tcp.endpoint == .tcp(host: "db.example", port: 6432))
        #expect((tcp.user, tcp.password, tcp.database, tcp.sslMode) == ("gp@ops", "p:ss/word", "catalog", .verifyFull))
        #expect(tcp.description == "postgres://gp%40ops@db.example:6432/catalog?sslmode=verify-full")

        let plain = try PostgresLocation(parsing: "postgresql://gatepost@localhost")
        #expect(plain.endpoint == .tcp(host: "localhost", port: 5432))
        #expect((plain.password, plain.database, plain.sslMode) == (nil, "gatepost", .prefer), "the database defaults to the user's")

        let v6 = try PostgresLocation(parsing: "postgres://u:p@[::1]:5433/d")
        #expect(v6.endpoint == .tcp(host: "::1", port: 5433))
        #expect(v6.server == "[::1]:5433")

        let socket = try PostgresLocation(parsing: "postgres://u@/d?host=/run/postgresql&port=5433")
        #expect(socket.endpoint == .socket(path: "/run/postgresql/.s.PGSQL.5433"))
        let encoded = try PostgresLocation(parsing: "postgres://u@%2Frun%2Fpostgresql/d")
        #expect(encoded.endpoint == .socket(path: "/run/postgresql/.s.PGSQL.5432"))
        let noHost = try PostgresLocation(parsing: "postgres://u@/d")
        #expect(noHost.endpoint == .socket(path: "/var/run/postgresql/.s.PGSQL.5432"))

        for bad in ["mysql://u:p@h/d", "postgres://h/d", "postgres://u:p@h:0/d", "postgres://u:p@h/d?sslmode=always", "postgres://u:p@[::1/d"] {
            #expect(throws: PostgresCatalogError.self, "\(bad)") { _ = try PostgresLocation(parsing: bad) }
        }
    }

    // MARK: Several nodes at once

    @Test func ofConcurrentClaimsFromTwoNodesExactlyOneWins() async throws {
        let url = try await PostgresPeer.shared().makeDatabase()
        let first = try await PostgresCatalog.connect(url: url, maximumConnections: 8)
        let second = try await PostgresCatalog.connect(url: url, maximumConnections: 8)
        for round in 0..<10 {
            let id = "T\(round)"
            try await first.commitOutbound(Self.outbound(id), message: Self.entry(id))
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for claim in 0..<16 {
                    let node = claim % 2 == 0 ? first : second
                    group.addTask { try await node.claimOutbox(id, due: Self.epoch, until: Self.epoch.addingTimeInterval(600)) }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(wins == 1, "round \(round)")
        }
        await first.close()
        await second.close()
    }

    @Test func ofTwoNodesRecordingTheSameUIDLExactlyOneDoes() async throws {
        let url = try await PostgresPeer.shared().makeDatabase()
        let first = try await PostgresCatalog.connect(url: url)
        let second = try await PostgresCatalog.connect(url: url)
        for round in 0..<10 {
            let uidl = "u\(round)"
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for (node, catalog) in [first, second].enumerated() {
                    group.addTask {
                        let record = Self.inbound("T\(round)-\(node)", at: Double(round))
                        return (try? await catalog.commitReceived([ReceivedTransfer(record: record, uidl: uidl, listedSize: 10)])) != nil
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1, "round \(round): \(outcomes)")
            let recorded = try await first.transfers(TransferFilter(since: Self.epoch.addingTimeInterval(Double(round)), before: Self.epoch.addingTimeInterval(Double(round) + 1)))
            #expect(recorded.count == 1, "round \(round): one transfer row")
            #expect(try await second.retrievedMessages(site: "acme")[uidl]?.transferID == recorded.first?.id)
        }

        // A reused UIDL taken over by both at once: one takes it, the other throws.
        for round in 0..<10 {
            let uidl = "reused\(round)"
            try await first.commitReceived(Self.inbound("R\(round)", at: 100 + Double(round)), uidl: uidl)
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for (node, catalog) in [first, second].enumerated() {
                    group.addTask {
                        let record = Self.inbound("R\(round)-\(node)", at: 100 + Double(round))
                        let item = ReceivedTransfer(record: record, uidl: uidl, replacing: "R\(round)")
                        return (try? await catalog.commitReceived([item])) != nil
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1, "round \(round): \(outcomes)")
            let holder = try #require(try await second.retrievedMessages(site: "acme")[uidl]?.transferID)
            #expect(holder.hasPrefix("R\(round)-"))
            let losers = try await first.transfers(TransferFilter(since: Self.epoch.addingTimeInterval(100 + Double(round)), before: Self.epoch.addingTimeInterval(101 + Double(round))))
            #expect(losers.map(\.id).sorted() == ["R\(round)", holder].sorted(), "the loser stored nothing")
        }
        await first.close()
        await second.close()
    }

    /// Two reports for one outbound transfer, recorded by two nodes at once: each reads the
    /// transfer as the other left it (its row is locked from read to write), so neither line
    /// is lost and the transfer is delivered once both are in.
    @Test func reportsRecordedAtOnceByTwoNodesAreBothKept() async throws {
        let url = try await PostgresPeer.shared().makeDatabase()
        let first = try await PostgresCatalog.connect(url: url)
        let second = try await PostgresCatalog.connect(url: url)
        for round in 0..<8 {
            let id = "O\(round)"
            try await first.commitOutbound(Self.outbound(id), message: Self.entry(id))
            try await first.outboxSent(Self.entry(id), at: Self.epoch, refused: [], followUp: nil)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (node, recipient) in [(first, "edi@acme.example"), (second, "ops@acme.example")] {
                    group.addTask {
                        let report = TransferRecord(
                            id: "D\(round)-\(recipient.prefix(3))", type: .eerp, fileName: nil, site: "acme", receivedAt: Self.epoch,
                            originalMessageId: "\(id)@ours.example",
                            recipientReports: [RecipientReport(recipient: recipient, action: "delivered", status: "2.0.0")]
                        )
                        try await node.commitReceived(report, uidl: "d\(round)-\(recipient)")
                    }
                }
                try await group.waitForAll()
            }
            let closed = try #require(try await second.transfer(id: id))
            #expect(closed.recipientReports.count == 2, "round \(round)")
            #expect(closed.state == .delivered, "round \(round)")
        }
        await first.close()
        await second.close()
    }

    // MARK: Times and searches

    /// Times that are not whole milliseconds come back as stored and bind back to themselves:
    /// pages by cursor neither skip nor repeat a row.
    @Test func pagesByCursorHoldOverTimesToTheMicrosecond() async throws {
        let catalog = try await PostgresCatalog.connect(url: try await PostgresPeer.shared().makeDatabase())
        let base = Date(timeIntervalSince1970: 1_764_291_723.123_456)
        let batch = (0..<25).map { index in
            var record = Self.inbound("T\(index)")
            record.receivedAt = base.addingTimeInterval(Double(index / 2) * 0.000_013)
            return ReceivedTransfer(record: record, uidl: "u\(index)")
        }
        try await catalog.commitReceived(batch)
        for newestFirst in [false, true] {
            var filter = TransferFilter(limit: 4, newestFirst: newestFirst)
            var seen: [String] = []
            while true {
                let page = try await catalog.transfers(filter)
                seen += page.map(\.id)
                guard page.count == 4, let last = page.last else { break }
                filter.after = TransferCursor(text: TransferCursor(after: last).text)
            }
            #expect(seen.count == 25 && Set(seen).count == 25, "newest first: \(newestFirst): \(seen)")
        }
        let stored = try #require(try await catalog.transfer(id: "T3"))
        #expect(abs(stored.receivedAt.timeIntervalSince(batch[3].record.receivedAt)) < 0.000_001)
        await catalog.close()
    }

    /// A search that TextPattern decides reads the rows in batches: its page is the same as
    /// the scan's across batch boundaries, whichever way it runs.
    @Test func aSearchPastOneBatchAnswersAsAScanDoes() async throws {
        let catalog = try await PostgresCatalog.connect(url: try await PostgresPeer.shared().makeDatabase())
        let reference = InMemoryCatalog()
        let count = PostgresCatalog.searchBatch * 2 + 37
        let batch = (0..<count).map { index in
            var record = Self.inbound(String(format: "T%05d", index), at: Double(index))
            // Every seventh name is not ASCII: SQL passes those to TextPattern.
            record.fileName = index % 7 == 0 ? "Straße-\(index).CSV" : (index % 3 == 0 ? "INV-\(index).csv" : "notes-\(index).txt")
            return ReceivedTransfer(record: record, uidl: "u\(index)")
        }
        try await catalog.commitReceived(batch)
        try await reference.commitReceived(batch)
        for pattern in [TextPattern("csv"), TextPattern("*e-1?.csv"), TextPattern("STRASSE"), .exactly("inv-999.CSV")] {
            for newestFirst in [false, true] {
                for limit in [nil, 1, 5, 600] {
                    let filter = TransferFilter(limit: limit, fileName: pattern, newestFirst: newestFirst)
                    let expected = try await reference.transfers(filter).map(\.id)
                    #expect(try await catalog.transfers(filter).map(\.id) == expected, "\(pattern) \(newestFirst) \(String(describing: limit))")
                }
            }
        }
        await catalog.close()
    }

    @Test func aNULInAMessagesTextsIsWhereTheyEnd() async throws {
        let catalog = try await PostgresCatalog.connect(url: try await PostgresPeer.shared().makeDatabase())
        var record = Self.inbound("T1")
        record.subject = "invoice\0 and the rest"
        record.sender = "a@b\0c"
        record.recipients = ["x@example.com\0y"]
        try await catalog.commitReceived(record, uidl: "u1")
        let stored = try #require(try await catalog.transfer(id: "T1"))
        #expect((stored.subject, stored.sender, stored.recipients) == ("invoice", "a@b", ["x@example.com"]))
        await catalog.close()
    }
}
