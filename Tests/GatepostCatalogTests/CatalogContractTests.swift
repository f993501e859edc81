import Foundation
import Testing
@testable import GatepostCatalog

/// The contract of TransferStore, UIDLStore and SiteStateStore, held against every store.
@Suite struct CatalogContractTests {
    @Test(arguments: CatalogStore.allCases)
    func recordAndUIDLCommitTogether(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived(F.inbound("T1", messageId: "m1@x"), uidl: "u1")
        let retrieved = try await catalog.retrievedMessages(site: "acme")
        #expect(retrieved == ["u1": RetrievedMessage(uidl: "u1", transferID: "T1", deleted: false, messageId: "m1@x")])
        #expect(try await catalog.transfer(id: "T1") == F.inbound("T1", messageId: "m1@x"))
        #expect(try await catalog.retrievedMessages(site: "other").isEmpty)
    }

    /// A batch larger than one statement holds (PostgreSQL writes a batch a statement per table,
    /// at most 1,000 rows each) is stored whole, in order; a clash in its last rows stores nothing.
    @Test(arguments: CatalogStore.allCases)
    func aBatchOfMoreRowsThanOneStatementTakesIsStoredWholeOrNotAtAll(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        // 2,400 transfer rows are 74,400 parameters: past the 65,535 one statement may hold.
        let count = 2_400
        func batch(clashAtEnd: Bool) -> [ReceivedTransfer] {
            (0..<count).map { n in
                let id = String(format: "T%05d", n + (clashAtEnd ? count : 0))
                // Every third a sibling (no UIDL), every fifth owed an acknowledgment.
                let uidl = n % 3 == 2 ? nil : (clashAtEnd && n == count - 2 ? "u00000" : String(format: "u%05d", n + (clashAtEnd ? count : 0)))
                let acknowledgment = n % 5 == 0 ? F.entry("O" + id, kind: .acknowledgment, transferId: id) : nil
                return ReceivedTransfer(record: F.inbound(id, at: Double(n)), uidl: uidl, acknowledgment: acknowledgment, listedSize: Int64(n))
            }
        }
        try await catalog.commitReceived(batch(clashAtEnd: false))
        let stored = try await catalog.transfers(TransferFilter())
        #expect(stored.map(\.id) == (0..<count).map { String(format: "T%05d", $0) })
        let retrieved = try await catalog.retrievedMessages(site: "acme")
        #expect(retrieved.count == count - count / 3)
        #expect(retrieved["u02098"]?.transferID == "T02098")
        #expect(try await catalog.outboxEntries(state: nil, limit: 10_000).count == count / 5)

        // The last row with a UIDL has the first batch's "u00000": nothing of the second batch is stored.
        await #expect(throws: (any Error).self) { try await catalog.commitReceived(batch(clashAtEnd: true)) }
        #expect(try await catalog.transfers(TransferFilter()).count == count)
        #expect(try await catalog.retrievedMessages(site: "acme").count == count - count / 3)
        #expect(try await catalog.outboxEntries(state: nil, limit: 10_000).count == count / 5)
    }

    /// Skipped messages: counted poll after poll, forgotten once a complete poll did not skip
    /// them, kept when a poll stopped before reaching them.
    @Test(arguments: CatalogStore.allCases)
    func skippedMessagesAreCountedAndForgotten(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let first = Date(timeIntervalSince1970: 1_000_000)
        let later = first.addingTimeInterval(60)
        try await catalog.recordSkips(site: "acme", skipped: [
            SkippedMessage(uidl: "u1", number: 1, reason: "RETR refused", at: first),
            SkippedMessage(uidl: "u2", number: 2, reason: "too large", at: first),
        ], complete: true)
        try await catalog.recordSkips(site: "acme", skipped: [SkippedMessage(uidl: "u1", number: 1, reason: "RETR refused", at: later)], complete: false)
        var skipped = try await catalog.siteStates()["acme"]?.skipped ?? []
        #expect(skipped.map(\.uidl) == ["u1", "u2"])
        #expect(skipped.first?.polls == 2)
        #expect(skipped.first?.firstSkipped == first)
        #expect(skipped.first?.lastSkipped == later)
        try await catalog.recordSkips(site: "acme", skipped: [SkippedMessage(uidl: "u1", number: 1, reason: "RETR refused", at: later)], complete: true)
        skipped = try await catalog.siteStates()["acme"]?.skipped ?? []
        #expect(skipped.map(\.uidl) == ["u1"])
        #expect(skipped.first?.polls == 3)
        try await catalog.recordSkips(site: "acme", skipped: [], complete: true)
        #expect(try await catalog.siteStates()["acme"]?.skipped == [])
    }

    /// A server that reuses a UIDL: the new message's record takes the UIDL over, but only from
    /// the transfer the poll saw under it, so two pollers can never both record a message.
    @Test(arguments: CatalogStore.allCases)
    func aReusedUIDLIsTakenOverOnlyFromTheTransferItNamed(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived([ReceivedTransfer(record: F.inbound("T1", messageId: "a@x"), uidl: "u1", listedSize: 100)])
        try await catalog.markDeleted(site: "acme", uidls: ["u1"])
        #expect(try await catalog.retrievedMessages(site: "acme")["u1"]?.listedSize == 100)
        // Without naming the transfer it replaces, the UIDL is a clash; naming another, too.
        await #expect(throws: (any Error).self) {
            try await catalog.commitReceived([ReceivedTransfer(record: F.inbound("T2", messageId: "b@x"), uidl: "u1")])
        }
        await #expect(throws: (any Error).self) {
            try await catalog.commitReceived([ReceivedTransfer(record: F.inbound("T2", messageId: "b@x"), uidl: "u1", replacing: "T9")])
        }
        #expect(try await catalog.transfer(id: "T2") == nil)
        try await catalog.commitReceived([ReceivedTransfer(record: F.inbound("T2", messageId: "b@x"), uidl: "u1", listedSize: 120, replacing: "T1")])
        #expect(try await catalog.retrievedMessages(site: "acme")["u1"] == RetrievedMessage(
            uidl: "u1", transferID: "T2", deleted: false, messageId: "b@x", listedSize: 120
        ))
        // A second poller that saw T1 under u1 too loses (with a message of its own: the
        // same message would be left out, its Message-ID claimed by T2).
        await #expect(throws: (any Error).self) {
            try await catalog.commitReceived([ReceivedTransfer(record: F.inbound("T3", messageId: "c@x"), uidl: "u1", replacing: "T1")])
        }
    }

    @Test(arguments: CatalogStore.allCases)
    func aBatchIsStoredWhollyOrNotAtAll(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived(F.inbound("T1"), uidl: "u1")
        let owed = F.entry("M2", kind: .acknowledgment, transferId: "T2")
        let failing: [[ReceivedTransfer]] = [
            // A UIDL the site already has, after a good item that owes an MDN.
            [ReceivedTransfer(record: F.inbound("T2"), uidl: "u2", acknowledgment: owed), ReceivedTransfer(record: F.inbound("T3"), uidl: "u1")],
            // The same UIDL twice in one batch.
            [ReceivedTransfer(record: F.inbound("T2"), uidl: "u2"), ReceivedTransfer(record: F.inbound("T3"), uidl: "u2")],
            // A transfer id that exists.
            [ReceivedTransfer(record: F.inbound("T2"), uidl: "u2"), ReceivedTransfer(record: F.inbound("T1"), uidl: "u3")],
            // An MDN for a transfer that is not stored.
            [ReceivedTransfer(record: F.inbound("T2"), uidl: "u2", acknowledgment: F.entry("M2", kind: .acknowledgment, transferId: "T9"))],
        ]
        for batch in failing {
            await #expect(throws: (any Error).self) { try await catalog.commitReceived(batch) }
            #expect(try await catalog.transfer(id: "T2") == nil)
            #expect(try await catalog.transfer(id: "T3") == nil)
            #expect(try await catalog.outbox(transferId: "T2").isEmpty)
            #expect(try await catalog.retrievedMessages(site: "acme").keys.sorted() == ["u1"])
        }
        try await catalog.commitReceived([])
        try await catalog.commitReceived(F.inbound("T2"), uidl: "u2", acknowledgment: owed)
        #expect(try await catalog.outbox(transferId: "T2") == [owed])
    }

    @Test(arguments: CatalogStore.allCases)
    func aUIDLIsUniqueWithinItsSiteOnly(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived(F.inbound("T1", site: "a"), uidl: "u1")
        try await catalog.commitReceived(F.inbound("T2", site: "b"), uidl: "u1")
        #expect(try await catalog.retrievedMessages(site: "a")["u1"]?.transferID == "T1")
        #expect(try await catalog.retrievedMessages(site: "b")["u1"]?.transferID == "T2")
        try await catalog.commitReceived(F.inbound("T3", site: "a"), uidl: nil)
        #expect(try await catalog.retrievedMessages(site: "a").count == 1, "a record without a UIDL has none")
    }

    @Test(arguments: CatalogStore.allCases)
    func deletionsAreRecordedPerSite(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived(F.inbound("T1"), uidl: "u1")
        try await catalog.commitReceived(F.inbound("T2"), uidl: "u2")
        try await catalog.commitReceived(F.inbound("T3", site: "other"), uidl: "u2")
        try await catalog.markDeleted(site: "acme", uidls: ["u2", "unknown"])
        let retrieved = try await catalog.retrievedMessages(site: "acme")
        #expect(retrieved["u1"]?.deleted == false)
        #expect(retrieved["u2"]?.deleted == true)
        #expect(retrieved["unknown"] == nil)
        #expect(try await catalog.retrievedMessages(site: "other")["u2"]?.deleted == false)
    }

    @Test(arguments: CatalogStore.allCases)
    func filtersAndOrder(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        // Received order, not id order: T0 arrived last.
        try await catalog.commitReceived(F.inbound("T0", site: "b", at: 30), uidl: nil)
        try await catalog.commitReceived(F.inbound("T1", site: "a"), uidl: nil)
        try await catalog.commitReceived(F.inbound("T2", site: "b", type: .msg, state: .delivered, at: 10), uidl: nil)
        try await catalog.commitReceived(F.inbound("T3", site: "a", type: .eerp, at: 10), uidl: nil)
        try await catalog.markPurged(id: "T3", at: F.epoch)
        func ids(_ filter: TransferFilter) async throws -> [String] { try await catalog.transfers(filter).map(\.id) }
        #expect(try await ids(TransferFilter()) == ["T1", "T2", "T3", "T0"])
        #expect(try await ids(TransferFilter(site: "a")) == ["T1", "T3"])
        #expect(try await ids(TransferFilter(type: .msg)) == ["T2"])
        #expect(try await ids(TransferFilter(state: .received)) == ["T1", "T3", "T0"])
        #expect(try await ids(TransferFilter(since: F.epoch.addingTimeInterval(10))) == ["T2", "T3", "T0"])
        #expect(try await ids(TransferFilter(before: F.epoch.addingTimeInterval(10))) == ["T1"])
        #expect(try await ids(TransferFilter(purged: true)) == ["T3"])
        #expect(try await ids(TransferFilter(purged: false)) == ["T1", "T2", "T0"])
        #expect(try await ids(TransferFilter(site: "b", limit: 1)) == ["T2"])
        #expect(try await catalog.transfer(id: "T9") == nil)
    }

    @Test(arguments: CatalogStore.allCases)
    func duplicatesAreFoundAmongTheSitesInboundTransfers(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        var first = F.inbound("T2", messageId: "m@x")
        first.messageSha256 = "feed"
        var again = F.inbound("T1", messageId: "m@x", at: 10)
        again.messageSha256 = "feed"
        var ours = F.outbound("T0")
        ours.messageId = "o@x"
        try await catalog.commitReceived([ReceivedTransfer(record: again, uidl: "u1"), ReceivedTransfer(record: first, uidl: "u2")])
        try await catalog.commitOutbound(ours, message: F.entry("T0"))
        #expect(try await catalog.transferID(site: "acme", messageId: "m@x") == "T2", "the earliest received")
        #expect(try await catalog.transferID(site: "acme", messageSha256: "feed") == "T2")
        #expect(try await catalog.transferID(site: "other", messageId: "m@x") == nil)
        #expect(try await catalog.transferID(site: "acme", messageSha256: "beef") == nil)
        #expect(try await catalog.transferID(site: "acme", messageId: "o@x") == nil, "an outbound transfer is no duplicate")
    }

    /// A message is recorded once per site: an item whose Message-ID the site claimed before the
    /// batch is left out (with its UIDL, its acknowledgment and its siblings) and returned; the
    /// rest of the batch is stored, a DUPLICATE naming the first transfer among it.
    @Test(arguments: CatalogStore.allCases)
    func aMessageRecordedBeforeIsLeftOutOfTheBatch(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived(F.inbound("T1", messageId: "m@x"), uidl: "u1")
        var duplicate = F.inbound("T3", messageId: "m@x", at: 2)
        duplicate.fileName = TransferRecord.duplicateFileName
        let leftOut = try await catalog.commitReceived([
            ReceivedTransfer(record: F.inbound("T2", messageId: "m@x", at: 1), uidl: "u2", acknowledgment: F.entry("E2", kind: .acknowledgment, transferId: "T2")),
            ReceivedTransfer(record: F.inbound("T2b", messageId: "m@x", at: 1), uidl: nil),
            ReceivedTransfer(record: duplicate, uidl: "u3"),
            ReceivedTransfer(record: F.inbound("T4", messageId: "n@x", at: 3), uidl: "u4"),
            ReceivedTransfer(record: F.inbound("T5", site: "other", messageId: "m@x", at: 4), uidl: "u5"),
            ReceivedTransfer(record: F.inbound("T6", at: 5), uidl: "u6"),
        ])
        #expect(leftOut == [
            RecordedBefore(id: "T2", site: "acme", messageId: "m@x", transferId: "T1"),
            RecordedBefore(id: "T2b", site: "acme", messageId: "m@x", transferId: "T1"),
        ])
        #expect(try await catalog.transfer(id: "T2") == nil)
        #expect(try await catalog.transfer(id: "T2b") == nil)
        #expect(try await catalog.outbox(transferId: "T2").isEmpty)
        #expect(Set(try await catalog.retrievedMessages(site: "acme").keys) == ["u1", "u3", "u4", "u6"])
        for id in ["T3", "T4", "T5", "T6"] {
            #expect(try await catalog.transfer(id: id) != nil, "\(id)")
        }
        #expect(try await catalog.transferID(site: "acme", messageId: "m@x") == "T1", "a DUPLICATE claims nothing")
        #expect(try await catalog.transferID(site: "acme", messageId: "n@x") == "T4")
        #expect(try await catalog.transferID(site: "other", messageId: "m@x") == "T5", "claims are per site")
        // A batch of nothing but messages recorded before stores nothing, and says so.
        let again = try await catalog.commitReceived(F.inbound("T7", messageId: "n@x", at: 6), uidl: "u7")
        #expect(again.map(\.transferId) == ["T4"])
        #expect(try await catalog.transfer(id: "T7") == nil)
        #expect(try await catalog.retrievedMessages(site: "acme")["u7"] == nil)
    }

    /// Two pollers that took one message (a lease that broke): the second's item is left out
    /// with its UIDL said to be recorded already, so that its poll deletes the message rather
    /// than taking it again; a copy under a new UIDL, or under a UIDL the server reused (the
    /// row names the transfer the item replaces), is left out to be taken again.
    @Test(arguments: CatalogStore.allCases)
    func aMessageAnotherPollerRecordedUnderItsUIDLIsSaidSo(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived(F.inbound("T1", messageId: "m@x"), uidl: "u1")
        try await catalog.commitReceived(F.inbound("T2", messageId: "n@x"), uidl: "u2")
        let leftOut = try await catalog.commitReceived([
            ReceivedTransfer(record: F.inbound("T3", messageId: "m@x", at: 1), uidl: "u1"),
            ReceivedTransfer(record: F.inbound("T4", messageId: "m@x", at: 2), uidl: "u9"),
            ReceivedTransfer(record: F.inbound("T5", messageId: "n@x", at: 3), uidl: "u2", replacing: "T2"),
        ])
        #expect(leftOut.map(\.id) == ["T3", "T4", "T5"])
        #expect(leftOut.map(\.uidlRecorded) == [true, false, false])
        #expect(try await catalog.retrievedMessages(site: "acme")["u1"]?.transferID == "T1")
        #expect(try await catalog.retrievedMessages(site: "acme")["u2"]?.transferID == "T2")
    }

    /// The message split into several transfers claims its Message-ID with the first; an
    /// outbound transfer claims nothing (a partner's message may quote its Message-ID).
    @Test(arguments: CatalogStore.allCases)
    func aSplitMessageIsStoredWholeAndClaimsOnce(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        var ours = F.outbound("T0")
        ours.messageId = "m@x"
        try await catalog.commitOutbound(ours, message: F.entry("T0"))
        let leftOut = try await catalog.commitReceived([
            ReceivedTransfer(record: F.inbound("T1", messageId: "m@x"), uidl: "u1"),
            ReceivedTransfer(record: F.inbound("T1b", messageId: "m@x"), uidl: nil),
            ReceivedTransfer(record: F.inbound("T1c", messageId: "m@x"), uidl: nil),
        ])
        #expect(leftOut.isEmpty)
        #expect(try await catalog.transfers(TransferFilter(site: "acme", direction: .inbound)).map(\.id) == ["T1", "T1b", "T1c"])
        #expect(try await catalog.transferID(site: "acme", messageId: "m@x") == "T1")
    }

    /// A delivery is claimed by one caller until the claim's end: the transfer is not due for
    /// anyone else before then, a claim is no attempt, and only a transfer waiting for delivery
    /// can be claimed. The attempt's outcome replaces the claim.
    @Test(arguments: CatalogStore.allCases)
    func aDeliveryIsClaimedByOneUntilTheClaimEnds(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let now = F.epoch.addingTimeInterval(100)
        try await catalog.commitReceived([
            ReceivedTransfer(record: F.inbound("T1"), uidl: "u1"),
            ReceivedTransfer(record: F.inbound("T2", state: .delivered, at: 1), uidl: "u2"),
            ReceivedTransfer(record: F.inbound("T3", state: .routed, at: 2), uidl: "u3"),
        ])
        try await catalog.commitOutbound(F.outbound("T4"), message: F.entry("T4"))
        #expect(try await catalog.claimDelivery(id: "T1", due: now, until: now.addingTimeInterval(600)))
        #expect(try await !catalog.claimDelivery(id: "T1", due: now.addingTimeInterval(599), until: now.addingTimeInterval(1200)), "held")
        #expect(try await catalog.transfersToDeliver(at: now.addingTimeInterval(599)).map(\.id) == ["T3"])
        #expect(try await catalog.deliveryAttempts(id: "T1") == 0, "a claim is no attempt")
        #expect(try await catalog.claimDelivery(id: "T1", due: now.addingTimeInterval(600), until: now.addingTimeInterval(1200)), "ended")
        #expect(try await !catalog.claimDelivery(id: "T2", due: now, until: now.addingTimeInterval(600)), "delivered")
        #expect(try await !catalog.claimDelivery(id: "T4", due: now, until: now.addingTimeInterval(600)), "outbound")
        #expect(try await !catalog.claimDelivery(id: "T9", due: now, until: now.addingTimeInterval(600)), "no such transfer")
        // A failed attempt to try again plans the next one: the claim is gone with it.
        let retrying = DeliveryAttempt.retrying(at: now, application: "billing", error: "disk full", retryAt: now.addingTimeInterval(60))
        try await catalog.recordDeliveryAttempt(id: "T3", retrying)
        #expect(try await !catalog.claimDelivery(id: "T3", due: now, until: now.addingTimeInterval(600)), "not due yet")
        #expect(try await catalog.claimDelivery(id: "T3", due: now.addingTimeInterval(60), until: now.addingTimeInterval(600)))
        #expect(try await catalog.deliveryAttempts(id: "T3") == 1)
        try await catalog.recordDeliveryAttempt(id: "T3", .retrying(at: now, application: "billing", error: "again", retryAt: now.addingTimeInterval(90)))
        #expect(try await catalog.transfersToDeliver(at: now.addingTimeInterval(90)).map(\.id) == ["T3"])
        #expect(try await catalog.deliveryAttempts(id: "T3") == 2)
    }

    @Test(arguments: CatalogStore.allCases)
    func deliveryFollowsItsRetrySchedule(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let now = F.epoch.addingTimeInterval(100)
        try await catalog.commitReceived([
            ReceivedTransfer(record: F.inbound("T1"), uidl: "u1"),
            ReceivedTransfer(record: F.inbound("T2", state: .routed, at: 1), uidl: "u2"),
            ReceivedTransfer(record: F.inbound("T3", state: .delivered, at: 2), uidl: "u3"),
            ReceivedTransfer(record: F.inbound("T4", state: .failed, at: 3), uidl: "u4"),
        ])
        try await catalog.commitOutbound(F.outbound("T5"), message: F.entry("T5"))
        #expect(try await catalog.transfersToDeliver(at: now).map(\.id) == ["T1", "T2"])

        let first = DeliveryAttempt.retrying(at: now, application: "billing", error: "disk full", retryAt: now.addingTimeInterval(60))
        try await catalog.recordDeliveryAttempt(id: "T1", first)
        var record = try #require(try await catalog.transfer(id: "T1"))
        #expect((record.state, record.application, record.error) == (.routed, "billing", "disk full"))
        #expect(try await catalog.deliveryAttempts(id: "T1") == 1)
        #expect(try await catalog.deliveryAttempts(id: "T2") == 0)
        #expect(try await catalog.transfersToDeliver(at: now).map(\.id) == ["T2"], "not due yet")
        #expect(try await catalog.transfersToDeliver(at: now.addingTimeInterval(60)).map(\.id) == ["T1", "T2"])
        let second = DeliveryAttempt.retrying(at: now.addingTimeInterval(60), application: "billing", error: "disk full", retryAt: now)
        try await catalog.recordDeliveryAttempt(id: "T1", second)
        #expect(try await catalog.deliveryAttempts(id: "T1") == 2)

        try await catalog.recordDeliveryTarget(id: "T1", application: "billing", target: "/apps/billing/a.csv")
        try await catalog.recordDeliveryTarget(id: "T1", application: "billing", target: "/apps/billing/a-1.csv")
        #expect(try await catalog.deliveryTarget(id: "T1") == "/apps/billing/a-1.csv")
        #expect(try await catalog.deliveryTarget(id: "T2") == nil)
        let delivered = DeliveryAttempt.delivered(at: now.addingTimeInterval(120), application: "billing", path: "/apps/billing/a-1.csv")
        try await catalog.recordDeliveryAttempt(id: "T1", delivered)
        record = try #require(try await catalog.transfer(id: "T1"))
        #expect((record.state, record.error, record.deliveredPath) == (.delivered, nil, "/apps/billing/a-1.csv"))
        #expect(try await catalog.deliveryHistory(id: "T1") == [first, second, delivered])
        #expect(try await catalog.deliveryHistory(id: "T2").isEmpty)
        #expect(try await catalog.transfersToDeliver(at: now).map(\.id) == ["T2"])
        #expect(try await catalog.deliveryAttempts(id: "T1") == 2, "never reset")
        try await catalog.recordDeliveryAttempt(id: "T2", .failed(at: now, application: "ledger", error: "exit 3"))
        let failed = try #require(try await catalog.transfer(id: "T2"))
        #expect((failed.state, failed.application, failed.error) == (.failed, "ledger", "exit 3"))
        #expect(try await catalog.deliveryAttempts(id: "T2") == 0, "only attempts to be tried again are counted")

        await #expect(throws: (any Error).self) {
            try await catalog.recordDeliveryAttempt(id: "T9", .failed(at: now, application: "billing", error: "x"))
        }
        await #expect(throws: (any Error).self) {
            try await catalog.recordDeliveryTarget(id: "T9", application: "billing", target: "/apps/billing/x")
        }
        #expect(try await catalog.deliveryAttempts(id: "T9") == 0)
        #expect(try await catalog.deliveryHistory(id: "T9").isEmpty)
        try await catalog.updateDelivery(id: "T9", state: .delivered, application: nil, error: nil, deliveredPath: nil)
        #expect(try await catalog.transfer(id: "T9") == nil)
    }

    @Test(arguments: CatalogStore.allCases)
    func aPurgedTransferKeepsItsRowAndUIDL(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitReceived(F.inbound("T1"), uidl: "u1")
        let at = F.epoch.addingTimeInterval(86400)
        try await catalog.markPurged(id: "T1", at: at)
        var expected = F.inbound("T1")
        expected.path = nil
        expected.messageText = nil
        expected.purgedAt = at
        #expect(try await catalog.transfer(id: "T1") == expected)
        #expect(try await catalog.retrievedMessages(site: "acme")["u1"] != nil)
        try await catalog.markPurged(id: "T9", at: at)
    }

    @Test(arguments: CatalogStore.allCases)
    func siteStateKeepsTotalsAndTheLastSuccess(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let first = F.epoch
        let second = F.epoch.addingTimeInterval(300)
        try await catalog.recordPoll(site: "acme", at: first, error: nil, errorCategory: nil, messages: 3, bytes: 300, nextPoll: first.addingTimeInterval(300))
        try await catalog.recordPoll(site: "acme", at: second, error: "connection refused", errorCategory: "connection", messages: 1, bytes: 20, nextPoll: nil)
        try await catalog.setSiteEnabled("acme", enabled: false)
        try await catalog.setSiteEnabled("bcorp", enabled: true)
        let states = try await catalog.siteStates()
        #expect(states["acme"] == SiteState(
            site: "acme", enabled: false, lastPoll: second, lastSuccess: first, lastError: "connection refused",
            nextPoll: nil, messages: 4, bytes: 320, failuresInARow: 1, lastErrorCategory: "connection", firstPoll: first
        ))
        #expect(states["bcorp"] == SiteState(site: "bcorp", enabled: true))
        #expect(states.count == 2)
        try await catalog.recordPoll(site: "bcorp", at: second, error: nil, errorCategory: nil, messages: 0, bytes: 0, nextPoll: nil)
        #expect(try await catalog.siteStates()["bcorp"]?.enabled == true, "a poll leaves the operator's override")

        let third = second.addingTimeInterval(300)
        try await catalog.recordPoll(site: "acme", at: third, error: "bad password", errorCategory: "authentication", messages: 0, bytes: 0, nextPoll: nil)
        var acme = try #require(try await catalog.siteStates()["acme"])
        #expect((acme.failuresInARow, acme.lastErrorCategory, acme.firstPoll) == (2, "authentication", first))
        try await catalog.recordPoll(site: "acme", at: third.addingTimeInterval(60), error: nil, errorCategory: nil, messages: 0, bytes: 0, nextPoll: nil)
        acme = try #require(try await catalog.siteStates()["acme"])
        #expect((acme.failuresInARow, acme.lastErrorCategory) == (0, nil), "a success ends the run of failures")
    }

    @Test(arguments: CatalogStore.allCases)
    func aProbeIsReturnedByThePROBERecordOfItsSiteAndMessageID(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let first = Probe(site: "acme", messageId: "probe.1@ours.example", sentAt: F.epoch)
        let second = Probe(site: "acme", messageId: "probe.2@ours.example", sentAt: F.epoch.addingTimeInterval(3600))
        try await catalog.recordProbe(first)
        try await catalog.recordProbe(second)
        await #expect(throws: (any Error).self) { try await catalog.recordProbe(first) }
        try await catalog.recordProbe(Probe(site: "bcorp", messageId: "probe.1@ours.example", sentAt: F.epoch))
        #expect(try await catalog.probes(site: "acme", limit: 10).map(\.messageId) == [second.messageId, first.messageId], "newest first")
        #expect(try await catalog.probes(site: "acme", limit: 1).count == 1)

        // A message of another type with the probe's Message-ID returns nothing; the PROBE does.
        var lookalike = F.inbound("T1", messageId: first.messageId, at: 10)
        lookalike.type = .xfer
        try await catalog.commitReceived(lookalike, uidl: "u1")
        #expect(try await catalog.probe(site: "acme", messageId: first.messageId)?.returnedAt == nil)
        let returned = F.inbound("T2", messageId: first.messageId, type: .probe, at: 20)
        // Stored with a file split off it (a sibling), though T1 claimed the Message-ID.
        let sibling = F.inbound("T2b", messageId: first.messageId, at: 20)
        let leftOut = try await catalog.commitReceived([ReceivedTransfer(record: returned, uidl: "u2"), ReceivedTransfer(record: sibling, uidl: nil)])
        #expect(leftOut.isEmpty)
        #expect(try await catalog.transfer(id: "T2b") != nil, "a probe's sibling is stored with it")
        let probe = try #require(try await catalog.probe(site: "acme", messageId: first.messageId))
        #expect((probe.returnedAt, probe.transferId) == (F.epoch.addingTimeInterval(20), "T2"))
        #expect(try await catalog.transfer(id: "T2")?.type == .probe, "stored though its Message-ID was claimed by T1")
        #expect(try await catalog.transferID(site: "acme", messageId: first.messageId) == "T1")
        #expect(try await catalog.probe(site: "bcorp", messageId: first.messageId)?.returnedAt == nil, "only its own site's")
        #expect(try await catalog.probe(site: "acme", messageId: "probe.9@ours.example") == nil)
    }

    @Test(arguments: CatalogStore.allCases)
    func anAlertIsOpenedOncePerConditionAndResolvedWhenItClears(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let failing = Alert(key: "site-failing:acme", kind: "site-failing", site: "acme", summary: "acme: 3 polls failed", openedAt: .distantPast)
        let missed = Alert(key: "arrival-missed:bcorp:INV*:2026-11-27", kind: "arrival-missed", site: "bcorp", summary: "no INV*", openedAt: .distantPast)
        var changes = try await catalog.updateAlerts(opening: [failing, missed], resolving: [], at: F.epoch)
        #expect(changes.opened.map(\.key) == [failing.key, missed.key])
        #expect(changes.opened.allSatisfy { $0.openedAt == F.epoch && $0.isOpen })
        let firstId = try #require(changes.opened.first?.id)
        #expect(changes.opened.last?.id ?? 0 > firstId, "ids grow")

        changes = try await catalog.updateAlerts(opening: [failing], resolving: ["no-such-key"], at: F.epoch.addingTimeInterval(60))
        #expect(changes.isEmpty, "an open condition is not opened again")

        let acknowledged = try await catalog.acknowledgeAlert(id: firstId, by: "alice", at: F.epoch.addingTimeInterval(90))
        #expect((acknowledged?.acknowledgedBy, acknowledged?.acknowledgedAt, acknowledged?.isOpen) == ("alice", F.epoch.addingTimeInterval(90), true))
        #expect(try await catalog.acknowledgeAlert(id: 999, by: "alice", at: F.epoch) == nil)

        changes = try await catalog.updateAlerts(opening: [], resolving: [failing.key], at: F.epoch.addingTimeInterval(120))
        #expect(changes.resolved.map(\.id) == [firstId])
        #expect(changes.resolved.first?.resolvedAt == F.epoch.addingTimeInterval(120))
        #expect(changes.resolved.first?.acknowledgedBy == "alice")
        #expect(try await catalog.alerts(openOnly: true, limit: 10).map(\.key) == [missed.key])

        // The same condition again later is a new alert.
        changes = try await catalog.updateAlerts(opening: [failing], resolving: [], at: F.epoch.addingTimeInterval(180))
        #expect(changes.opened.count == 1 && changes.opened.first?.id != firstId && changes.opened.first?.acknowledgedBy == nil)
        let all = try await catalog.alerts(openOnly: false, limit: 10)
        #expect(all.map(\.key) == [failing.key, missed.key, failing.key], "newest first")
        #expect(all.last?.resolvedAt != nil)
        #expect(try await catalog.alerts(openOnly: false, limit: 1).count == 1)
    }

    @Test(arguments: CatalogStore.allCases)
    func aConfigurationErrorKeepsWhenItBeganUntilItClears(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let first = F.epoch
        let later = F.epoch.addingTimeInterval(60)
        try await catalog.recordConfigurationError(site: "acme", error: "acme.yaml:3: pop3.port: must be a number", at: first)
        try await catalog.recordConfigurationError(site: "acme", error: "acme.yaml:4: poll.interval: not a duration", at: later)
        var state = try #require(try await catalog.siteStates()["acme"])
        #expect(state.configurationError == "acme.yaml:4: poll.interval: not a duration")
        #expect(state.configurationErrorSince == first, "an edit that changes the error keeps when it began")
        try await catalog.recordConfigurationError(site: "acme", error: nil, at: later)
        state = try #require(try await catalog.siteStates()["acme"])
        #expect(state.configurationError == nil && state.configurationErrorSince == nil)
    }
}
