import Foundation
import GRDB
import Testing
@testable import GatepostCatalog

/// What only the SQLite store has: a file on disk.
@Suite struct SQLiteCatalogTests {
    @Test func catalogFileIsOwnerOnlyAndIntact() throws {
        let dir = try temporaryDirectory()
        let path = dir.appendingPathComponent("catalog.sqlite").path
        let catalog = try SQLiteCatalog(path: path)
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode & 0o077 == 0)
        #expect(try catalog.integrityCheck() == "ok")
    }

    /// Many polls at once, each making the synchronous duplicate lookups while others read
    /// asynchronously: no thread of the concurrency pool may wait for a connection that only a
    /// suspended read can give back. (At 10,000 sites the daemon stopped for good: both pool
    /// threads waited in GRDB's reader pool for readers whose async reads needed a pool thread
    /// to resume and release them; SIGTERM could not stop it.)
    @Test(.timeLimit(.minutes(1))) func lookupsNeverWaitForTheReadersOfSuspendedReads() async throws {
        let catalog = try SQLiteCatalog(path: try temporaryDirectory().appendingPathComponent("catalog.sqlite").path)
        for index in 0 ..< 20 {
            try await catalog.commitReceived(F.inbound("T\(index)", messageId: "m\(index)@x", at: Double(index)), uidl: "u\(index)")
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0 ..< 64 {
                group.addTask {
                    // Few rounds: the deadlock needs many tasks at once, not many rounds, and
                    // each round is a hop through the concurrency pool, which in a full run other
                    // tests' CPU-bound bodies (bcrypt, large encodings) hold for seconds at a time.
                    for round in 0 ..< 3 {
                        _ = try await catalog.transferID(site: "acme", messageId: "m\((task + round) % 25)@x")
                        _ = try await catalog.transfers(TransferFilter(site: "acme"))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await catalog.transferID(site: "acme", messageId: "m3@x") == "T3")
    }

    /// The lookups every received message makes (and every report) use their equality index,
    /// not the one that orders a site's transfers by time: that one made each lookup read the
    /// whole site, a poll of 2,000 messages 60 % slower.
    @Test func lookupsByMessageIdAndHashUseTheirIndexes() throws {
        let catalog = try SQLiteCatalog(path: try temporaryDirectory().appendingPathComponent("catalog.sqlite").path)
        let byMessageId = try catalog.queryPlan(SQLiteCatalog.claimSQL, arguments: ["acme", "m@x"])
        #expect(byMessageId.contains("message_claim USING PRIMARY KEY (site=? AND messageId=?)"), "\(byMessageId)")
        let byHash = try catalog.queryPlan(SQLiteCatalog.firstBySha256SQL, arguments: ["acme", "abc"])
        #expect(byHash.contains("transfer_site_messageSha256 (site=? AND messageSha256=?)"), "\(byHash)")
        let outbound = try catalog.queryPlan(SQLiteCatalog.outboundByMessageIdSQL, arguments: ["m@x", "acme"])
        #expect(outbound.contains("messageId=?") && !outbound.contains("transfer_site_receivedAt"), "\(outbound)")
    }

    /// A catalog made before Message-ID claims (v21) gets them from its records: each site's
    /// Message-ID claimed by its earliest inbound transfer, so that what was received before is
    /// still found, and not recorded again.
    @Test func claimsAreMadeFromTheRecordsOfAnOlderCatalog() async throws {
        let path = try temporaryDirectory().appendingPathComponent("catalog.sqlite").path
        do {
            let queue = try DatabaseQueue(path: path)
            try SQLiteCatalog.migrator.migrate(queue, upTo: "v21-cluster")
            let rows: [(String, String, String, String?, TimeInterval)] = [
                ("T1", "acme", "in", "m@x", 2), ("T2", "acme", "in", "m@x", 1), ("T3", "other", "in", "m@x", 3),
                ("T4", "acme", "out", "o@x", 0), ("T5", "acme", "in", nil, 0),
            ]
            try await queue.write { db in
                for (id, site, direction, messageId, seconds) in rows {
                    try db.execute(
                        sql: """
                        INSERT INTO transfer (id, direction, type, site, state, messageId, recipients, size, receivedAt, ack)
                        VALUES (?, ?, 'XFER', ?, 'received', ?, '[]', 0, ?, 'none')
                        """,
                        arguments: [id, direction, site, messageId, F.epoch.addingTimeInterval(seconds)]
                    )
                }
            }
        }
        let catalog = try SQLiteCatalog(path: path)
        #expect(try await catalog.transferID(site: "acme", messageId: "m@x") == "T2", "the earliest received")
        #expect(try await catalog.transferID(site: "other", messageId: "m@x") == "T3")
        #expect(try await catalog.transferID(site: "acme", messageId: "o@x") == nil, "outbound claims nothing")
        let leftOut = try await catalog.commitReceived(F.inbound("T6", messageId: "m@x", at: 5), uidl: "u6")
        #expect(leftOut.map(\.transferId) == ["T2"])
    }

    @Test func idsAreOrderedAndUnique() {
        let ids = (0..<1000).map { _ in TransferRecord.newID() }
        #expect(Set(ids).count == 1000)
        #expect(ids == ids.sorted(), "ids made in the same millisecond still sort in the order made")
        #expect(TransferRecord.newID(at: Date(timeIntervalSince1970: 1)) < TransferRecord.newID(at: Date(timeIntervalSince1970: 2)))
    }
}
