import Foundation
import Testing
@testable import GatepostCatalog

/// `gatepost catalog migrate`: a catalog copied through the contract's reads into an empty
/// store reads back the same, every role.
@Suite struct CatalogCopyTests {
    /// A catalog with a little of everything: records with UIDLs (one deleted on the server),
    /// a report, an outbound transfer and its entry, delivery attempts, site states, skipped
    /// messages, operator actions, alerts and probes.
    static func filled(_ catalog: any Catalog) async throws {
        let epoch = F.epoch
        try await catalog.commitReceived([
            ReceivedTransfer(record: F.inbound("T1", messageId: "a@x", at: 1), uidl: "u1", listedSize: 100),
            ReceivedTransfer(record: F.inbound("T2", messageId: "b@x", at: 2), uidl: "u2", listedSize: 200),
            ReceivedTransfer(record: F.inbound("T3", site: "globex", messageId: "c@x", at: 3), uidl: "g1"),
        ])
        try await catalog.markDeleted(site: "acme", uidls: ["u1"])
        try await catalog.commitOutbound(F.outbound("T4"), message: F.entry("T4"))
        try await catalog.recordDeliveryTarget(id: "T1", application: "orders", target: "/in/orders/a.csv")
        try await catalog.recordDeliveryAttempt(id: "T1", .retrying(
            at: epoch.addingTimeInterval(10), application: "orders", error: "disk full", retryAt: epoch.addingTimeInterval(70)
        ))
        try await catalog.recordDeliveryAttempt(id: "T2", .delivered(at: epoch.addingTimeInterval(11), application: "orders", path: "/in/orders/b.csv"))
        try await catalog.recordPoll(site: "acme", at: epoch, error: nil, errorCategory: nil, messages: 2, bytes: 300, nextPoll: epoch.addingTimeInterval(60))
        try await catalog.recordPoll(site: "globex", at: epoch, error: "login refused", errorCategory: "authentication", messages: 1, bytes: 10, nextPoll: nil)
        try await catalog.recordSkips(site: "acme", skipped: [SkippedMessage(uidl: "u9", number: 9, reason: "too large", at: epoch)], complete: true)
        try await catalog.setSiteEnabled("globex", enabled: false)
        try await catalog.recordOperatorAction(OperatorAction(at: epoch, actor: "ops", action: "disable", site: "globex"))
        try await catalog.recordOperatorAction(OperatorAction(at: epoch.addingTimeInterval(1), actor: "ops", action: "retry", site: "acme", transferId: "T1"))
        _ = try await catalog.updateAlerts(
            opening: [Alert(key: "silent:globex", kind: "silent", site: "globex", summary: "no message for 2 days", openedAt: epoch)],
            resolving: [], at: epoch
        )
        try await catalog.recordProbe(Probe(site: "acme", messageId: "p1@ours", sentAt: epoch, returnedAt: epoch.addingTimeInterval(5), transferId: "T2"))
    }

    /// Every read of the contract gives the same answer from both.
    static func expectSame(_ source: any Catalog, _ target: any Catalog, sites: [String]) async throws {
        #expect(try await target.transfers(TransferFilter()) == source.transfers(TransferFilter()))
        for record in try await source.transfers(TransferFilter()) {
            #expect(try await target.deliveryHistory(id: record.id) == source.deliveryHistory(id: record.id), "\(record.id)")
            #expect(try await target.deliveryAttempts(id: record.id) == source.deliveryAttempts(id: record.id), "\(record.id)")
            #expect(try await target.deliveryTarget(id: record.id) == source.deliveryTarget(id: record.id), "\(record.id)")
            #expect(try await target.outbox(transferId: record.id) == source.outbox(transferId: record.id), "\(record.id)")
        }
        for site in sites {
            #expect(try await target.retrievedMessages(site: site) == source.retrievedMessages(site: site), "\(site)")
            #expect(try await target.probes(site: site, limit: 10) == source.probes(site: site, limit: 10), "\(site)")
        }
        #expect(try await target.siteStates() == source.siteStates())
        #expect(try await target.operatorActions(site: nil, transferId: nil, limit: 10) == source.operatorActions(site: nil, transferId: nil, limit: 10))
        #expect(try await target.alerts(openOnly: false, limit: 10) == source.alerts(openOnly: false, limit: 10))
        let later = F.epoch.addingTimeInterval(30)
        #expect(try await target.transfersToDeliver(at: later).map(\.id) == source.transfersToDeliver(at: later).map(\.id))
        #expect(try await target.transferID(site: "acme", messageId: "b@x") == "T2")
    }

    @Test(arguments: [CatalogStore.inMemory, .postgres])
    func aSQLiteCatalogCopiesWhole(into store: CatalogStore) async throws {
        let source = try SQLiteCatalog(path: try temporaryDirectory().appendingPathComponent("catalog.sqlite").path)
        try await Self.filled(source)
        let target = try #require(try await store.make() as? any Catalog & CatalogImporter)
        let counts = try await CatalogCopy().copy(from: source, to: target)
        #expect(counts.transfers == 4 && counts.uidls == 3 && counts.outbox == 1 && counts.sites == 2)
        #expect(counts.operatorActions == 2 && counts.alerts == 1 && counts.probes == 1)
        try await Self.expectSame(source, target, sites: ["acme", "globex"])
        // The ids go on after the copied ones.
        try await target.recordOperatorAction(OperatorAction(actor: "ops", action: "enable", site: "globex"))
        #expect(try await target.operatorActions(site: nil, transferId: nil, limit: 1).first?.id == 3)
        // Into a catalog that holds anything: refused.
        await #expect(throws: CatalogCopy.CopyError.self) { try await CatalogCopy().copy(from: source, to: target) }
    }

    @Test func recordsWithoutANodeAreGivenTheMigratingOne() async throws {
        let source = InMemoryCatalog()
        try await source.commitReceived(F.inbound("T1"), uidl: "u1")
        var elsewhere = F.inbound("T2", at: 1)
        elsewhere.node = "node-b"
        try await source.commitReceived(elsewhere, uidl: "u2")
        let target = InMemoryCatalog()
        try await CatalogCopy(node: "node-a").copy(from: source, to: target)
        #expect(try await target.transfers(TransferFilter()).map(\.node) == ["node-a", "node-b"])
    }
}
