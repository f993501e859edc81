import Foundation
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

    /// The lookups every received message makes (and every report) use their equality index,
    /// not the one that orders a site's transfers by time: that one made each lookup read the
    /// whole site, a poll of 2,000 messages 60 % slower.
    @Test func lookupsByMessageIdAndHashUseTheirIndexes() throws {
        let catalog = try SQLiteCatalog(path: try temporaryDirectory().appendingPathComponent("catalog.sqlite").path)
        let byMessageId = try catalog.queryPlan(SQLiteCatalog.firstInboundSQL(column: "messageId"), arguments: ["acme", "m@x"])
        #expect(byMessageId.contains("transfer_site_messageId (site=? AND messageId=?)"), "\(byMessageId)")
        let byHash = try catalog.queryPlan(SQLiteCatalog.firstInboundSQL(column: "messageSha256"), arguments: ["acme", "abc"])
        #expect(byHash.contains("transfer_site_messageSha256 (site=? AND messageSha256=?)"), "\(byHash)")
        let outbound = try catalog.queryPlan(SQLiteCatalog.outboundByMessageIdSQL, arguments: ["m@x", "acme"])
        #expect(outbound.contains("messageId=?") && !outbound.contains("transfer_site_receivedAt"), "\(outbound)")
    }

    @Test func idsAreOrderedAndUnique() {
        let ids = (0..<1000).map { _ in TransferRecord.newID() }
        #expect(Set(ids).count == 1000)
        #expect(ids == ids.sorted(), "ids made in the same millisecond still sort in the order made")
        #expect(TransferRecord.newID(at: Date(timeIntervalSince1970: 1)) < TransferRecord.newID(at: Date(timeIntervalSince1970: 2)))
    }
}
