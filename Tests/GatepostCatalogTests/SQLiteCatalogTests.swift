import Foundation
import Testing
@testable import GatepostCatalog

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("gatepost-catalog-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite struct SQLiteCatalogTests {
    func record(_ id: String, site: String = "acme", messageId: String? = nil, type: TransferRecord.Kind = .xfer) -> TransferRecord {
        TransferRecord(
            id: id, type: type, fileName: "a.csv", site: site, messageId: messageId,
            recipients: ["x@example.com", "y@example.com"], subject: "s", size: 3, sha256: "abc",
            receivedAt: Date(timeIntervalSince1970: 1_700_000_000)
        )
    }

    @Test func recordAndUIDLCommitTogether() async throws {
        let dir = try temporaryDirectory()
        let catalog = try SQLiteCatalog(path: dir.appendingPathComponent("catalog.sqlite").path)
        try await catalog.commitReceived(record("T1", messageId: "m1@x"), uidl: "u1")
        let retrieved = try await catalog.retrievedMessages(site: "acme")
        #expect(retrieved == ["u1": RetrievedMessage(uidl: "u1", transferID: "T1", deleted: false)])
        #expect(try await catalog.transfer(id: "T1") == record("T1", messageId: "m1@x"))
        #expect(try await catalog.transferID(site: "acme", messageId: "m1@x") == "T1")
        #expect(try await catalog.transferID(site: "other", messageId: "m1@x") == nil)
    }

    @Test func aDuplicateUIDLRollsBackTheRecordToo() async throws {
        let dir = try temporaryDirectory()
        let catalog = try SQLiteCatalog(path: dir.appendingPathComponent("catalog.sqlite").path)
        try await catalog.commitReceived(record("T1"), uidl: "u1")
        await #expect(throws: (any Error).self) { try await catalog.commitReceived(record("T2"), uidl: "u1") }
        #expect(try await catalog.transfer(id: "T2") == nil)
    }

    @Test func deletionsAreRecorded() async throws {
        let dir = try temporaryDirectory()
        let catalog = try SQLiteCatalog(path: dir.appendingPathComponent("catalog.sqlite").path)
        try await catalog.commitReceived(record("T1"), uidl: "u1")
        try await catalog.commitReceived(record("T2"), uidl: "u2")
        try await catalog.markDeleted(site: "acme", uidls: ["u2"])
        let retrieved = try await catalog.retrievedMessages(site: "acme")
        #expect(retrieved["u1"]?.deleted == false)
        #expect(retrieved["u2"]?.deleted == true)
    }

    @Test func filtersAndOrder() async throws {
        let dir = try temporaryDirectory()
        let catalog = try SQLiteCatalog(path: dir.appendingPathComponent("catalog.sqlite").path)
        try await catalog.commitReceived(record("T1", site: "a"), uidl: nil)
        try await catalog.commitReceived(record("T2", site: "b", type: .msg), uidl: nil)
        try await catalog.commitReceived(record("T3", site: "a", type: .eerp), uidl: nil)
        #expect(try await catalog.transfers(TransferFilter()).map(\.id) == ["T1", "T2", "T3"])
        #expect(try await catalog.transfers(TransferFilter(site: "a")).map(\.id) == ["T1", "T3"])
        #expect(try await catalog.transfers(TransferFilter(type: .msg)).map(\.id) == ["T2"])
        #expect(try await catalog.transfers(TransferFilter(since: Date())).isEmpty)
    }

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
