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

    @Test func idsAreOrderedAndUnique() {
        let ids = (0..<1000).map { _ in TransferRecord.newID() }
        #expect(Set(ids).count == 1000)
        #expect(ids == ids.sorted(), "ids made in the same millisecond still sort in the order made")
        #expect(TransferRecord.newID(at: Date(timeIntervalSince1970: 1)) < TransferRecord.newID(at: Date(timeIntervalSince1970: 2)))
    }
}
