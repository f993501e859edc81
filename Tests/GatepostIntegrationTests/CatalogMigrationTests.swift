import Foundation
import GatepostCatalog
import GatepostPostgres
import GatepostTestSupport
import Testing

/// `gatepost catalog migrate --to postgres://...`: a SQLite catalog whose site leaves messages
/// on the server moves to PostgreSQL, and the next poll fetches nothing again.
@Suite(.serialized) struct CatalogMigrationTests {
    @Test func aMigratedCatalogFetchesNothingAgain() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let postgres = try await PostgresPeer.shared()
        let url = try await postgres.makeDatabase()
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-migrate-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/sites", withIntermediateDirectories: true)
        try """
        \(dovecot.pop3Block(user: "alice"))
        poll: {delete_after_retrieve: false}
        """.write(toFile: root + "/sites/acme.yaml", atomically: true, encoding: .utf8)
        let expected = try await dovecot.fillMailbox(user: "alice", count: 4, seed: 9)
        let global = ["--sites", root + "/sites", "--spool", root + "/spool"]

        let first = try await GatepostProcess.run(["poll", "acme"] + global)
        #expect(first.status == 0, "\(first.stderr)")
        let sqlite = try SQLiteCatalog(path: root + "/spool/catalog.sqlite")
        let before = try await sqlite.transfers(TransferFilter())
        #expect(before.count == 4)
        #expect(dovecot.messageCount(user: "alice") == 4, "left on the server")
        try await sqlite.setSiteEnabled("acme", enabled: true)

        // A wrong password is refused without showing it; nothing is copied.
        let wrong = try await GatepostProcess.run(["catalog", "migrate", "--to", url.replacingOccurrences(of: postgres.info.password, with: "not-the-password")] + global)
        #expect(wrong.status != 0)
        #expect(!wrong.stderr.contains("not-the-password"), "\(wrong.stderr)")

        let migrate = try await GatepostProcess.run(["catalog", "migrate", "--to", url, "--node", "node-a"] + global)
        #expect(migrate.status == 0, "\(migrate.stderr)")
        #expect(migrate.stdout.contains("copied 4 transfers, 4 UIDLs"), "\(migrate.stdout)")
        #expect(!migrate.stdout.contains(postgres.info.password))

        let catalog = try await PostgresCatalog.connect(url: url)
        defer { Task { await catalog.close() } }
        let after = try await catalog.transfers(TransferFilter())
        #expect(after.map(\.id) == before.map(\.id))
        #expect(after.allSatisfy { $0.node == "node-a" })
        #expect(try await catalog.retrievedMessages(site: "acme") == sqlite.retrievedMessages(site: "acme"))
        #expect(try await catalog.siteStates()["acme"]?.enabled == true)

        // The next poll on PostgreSQL: the four are known, only a new one is fetched.
        let new = Array("From: a@b.example\r\nSubject: new\r\nMessage-ID: <new@migrate.test>\r\n\r\nhello\r\n".utf8)
        try dovecot.addMessage(user: "alice", new)
        let next = try await GatepostProcess.run(["poll", "acme", "--catalog", url, "--node", "node-a"] + global)
        #expect(next.status == 0, "\(next.stderr)")
        let records = try await catalog.transfers(TransferFilter())
        #expect(records.count == 5)
        // A one-shot poll on the shared catalog names its node too: that node's daemon delivers it.
        #expect(records.first { $0.messageId == "new@migrate.test" }?.node == "node-a")
        #expect(Set(records.compactMap(\.messageId)) == Set(expected.map(\.messageId) + ["new@migrate.test"]))

        // A one-shot poll holds the site's lease as a daemon node does: no lease is left
        // behind, and a site another node is polling is left to it.
        #expect(try await catalog.siteLeases().isEmpty)
        try dovecot.addMessage(user: "alice", new)
        #expect(try await catalog.claimSite("acme", node: "node-z", now: Date(), until: Date().addingTimeInterval(60)))
        let held = try await GatepostProcess.run(["poll", "acme", "--catalog", url, "--node", "node-a"] + global)
        #expect(held.status != 0)
        #expect(held.stderr.contains("acme: not polled: another node is polling it now"), "\(held.stderr)")
        #expect(try await catalog.transfers(TransferFilter()).count == 5)
        try await catalog.releaseSite("acme", node: "node-z")

        // The same message again: a DUPLICATE of the one PostgreSQL holds (the batch's commit
        // leaves the copy out; retrieved again in the same session, it is recorded as such).
        let repeated = try await GatepostProcess.run(["poll", "acme", "--catalog", url, "--node", "node-a"] + global)
        #expect(repeated.status == 0, "\(repeated.stderr)")
        let withCopy = try await catalog.transfers(TransferFilter(newestFirst: true))
        let original = try #require(records.first { $0.messageId == "new@migrate.test" })
        #expect(withCopy.count == 6)
        #expect(withCopy.first?.fileName == "DUPLICATE")
        #expect(withCopy.first?.error == "already received as transfer \(original.id) (same Message-ID)")
        // Into a catalog that is no longer empty: refused.
        let again = try await GatepostProcess.run(["catalog", "migrate", "--to", url] + global)
        #expect(again.status != 0)
        #expect(again.stderr.contains("empty catalog only"), "\(again.stderr)")
    }
}
