import Foundation
import Testing
@testable import GatepostCatalog

/// The contract of OutboxStore, and what reports and sends do to transfers, held against every
/// store.
@Suite struct OutboxTests {
    @Test(arguments: CatalogStore.allCases)
    func aClaimIsExclusiveAndAPartial4xxGetsAnEntryOfItsOwn(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let now = F.epoch
        try await catalog.commitOutbound(F.outbound("T1"), message: F.entry("T1", now: now))
        #expect(try await catalog.claimOutbox("T1", due: now, until: now.addingTimeInterval(600)))
        #expect(try await !catalog.claimOutbox("T1", due: now, until: now.addingTimeInterval(600)), "a second sender gets nothing")
        #expect(try await catalog.dueOutbox(site: nil, at: now).isEmpty)

        var later = F.entry("T1-1", transferId: "T1", now: now)
        later.recipients = ["ops@acme.example"]
        try await catalog.outboxSent(F.entry("T1", now: now), at: now, refused: ["bad@acme.example"], followUp: later)
        let record = try #require(try await catalog.transfer(id: "T1"))
        #expect(record.state == .queued, "ops@ waits for its retry")
        #expect(record.error == "waiting to retry ops@acme.example (refused for now); refused by the server: bad@acme.example")
        let entries = try await catalog.outbox(transferId: "T1")
        #expect(entries.map(\.state) == [.sent, .pending])
        #expect(entries.first?.sentAt == now)
        #expect(entries.first?.attempts == 1)
        #expect(entries.first?.lastError == "refused by the server: bad@acme.example")
        #expect(entries.last?.recipients == ["ops@acme.example"])
    }

    @Test(arguments: CatalogStore.allCases)
    func onlyOneOfManyConcurrentClaimsWins(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(F.outbound("T1"), message: F.entry("T1"))
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 {
                group.addTask { try await catalog.claimOutbox("T1", due: F.epoch, until: F.epoch.addingTimeInterval(600)) }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(wins == 1)
    }

    @Test(arguments: CatalogStore.allCases)
    func aClaimIsALeaseThatRunsOut(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let now = F.epoch
        let end = now.addingTimeInterval(600)
        try await catalog.commitOutbound(F.outbound("T1"), message: F.entry("T1", now: now))
        #expect(try await catalog.claimOutbox("T1", due: now, until: end))
        #expect(try await catalog.dueOutbox(site: "acme", at: end.addingTimeInterval(-1)).isEmpty)
        #expect(try await !catalog.claimOutbox("T1", due: end.addingTimeInterval(-1), until: end.addingTimeInterval(600)))
        #expect(try await catalog.dueOutbox(site: "acme", at: end).map(\.id) == ["T1"], "the holder died: due again")
        #expect(try await catalog.claimOutbox("T1", due: end, until: end.addingTimeInterval(600)))
        #expect(try await !catalog.claimOutbox("T9", due: end, until: end), "no such entry")
    }

    @Test(arguments: CatalogStore.allCases)
    func dueEntriesOfASiteInTheOrderTheyWereQueued(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(F.outbound("T3"), message: F.entry("T3", now: F.epoch))
        try await catalog.commitOutbound(F.outbound("T2"), message: F.entry("T2", now: F.epoch.addingTimeInterval(1)))
        try await catalog.commitOutbound(F.outbound("T1", site: "bcorp"), message: F.entry("T1", site: "bcorp", now: F.epoch))
        try await catalog.commitOutbound(F.outbound("T4"), message: F.entry("T4", now: F.epoch.addingTimeInterval(60)))
        #expect(try await catalog.dueOutbox(site: nil, at: F.epoch.addingTimeInterval(1)).map(\.id) == ["T1", "T3", "T2"])
        #expect(try await catalog.dueOutbox(site: "acme", at: F.epoch.addingTimeInterval(60)).map(\.id) == ["T3", "T2", "T4"])
        #expect(try await catalog.outbox(transferId: "T2") == [F.entry("T2", now: F.epoch.addingTimeInterval(1))])
        #expect(try await catalog.outboxReferences(path: "/spool/out/T2.eml"))
        #expect(try await !catalog.outboxReferences(path: "/spool/out/T9.eml"))
    }

    @Test(arguments: CatalogStore.allCases)
    func anOutboundCommitIsWhollyStoredOrNotAtAll(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(F.outbound("T1"), message: F.entry("T1"))
        await #expect(throws: (any Error).self) { try await catalog.commitOutbound(F.outbound("T2"), message: F.entry("T1", transferId: "T2")) }
        await #expect(throws: (any Error).self) { try await catalog.commitOutbound(F.outbound("T3"), message: F.entry("T3", transferId: "T9")) }
        #expect(try await catalog.transfer(id: "T2") == nil)
        #expect(try await catalog.transfer(id: "T3") == nil)
        #expect(try await catalog.outbox(transferId: "T1").count == 1)
    }

    @Test(arguments: CatalogStore.allCases)
    func aReportClosesOnlyItsOwnSitesTransferAndAnErrorFailsIt(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(F.outbound("T1"), message: F.entry("T1"))
        try await catalog.outboxSent(F.entry("T1"), at: F.epoch, refused: [], followUp: nil)

        // Another partner cannot close ACME's transfer by naming its Message-ID.
        let forged = F.report("R0", site: "mallory", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processed),
        ])
        try await catalog.commitReceived(forged, uidl: "f0")
        #expect(try await catalog.transfer(id: "T1")?.state == .sent)

        let processed = F.report("R1", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processed),
        ])
        try await catalog.commitReceived(processed, uidl: "u1")
        var record = try #require(try await catalog.transfer(id: "T1"))
        #expect(record.state == .acknowledged)
        #expect(record.ack == .received)
        #expect(record.ackMessageId == "R1@acme.example")

        let failed = F.report("R2", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "ops@acme.example", disposition: F.processedWithError),
        ])
        try await catalog.commitReceived(failed, uidl: "u2")
        record = try #require(try await catalog.transfer(id: "T1"))
        #expect(record.state == .failed)
        #expect(record.recipientReports.map(\.recipient) == ["edi@acme.example", "ops@acme.example"])
        #expect(record.error?.contains("ops@acme.example: \(F.processedWithError)") == true)
        #expect(try await catalog.transfer(id: "R2")?.type == .eerp, "the report is a transfer of its own")
    }

    @Test(arguments: CatalogStore.allCases)
    func aDeliveryReportClosesItsTransferByEnvelopeId(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.commitOutbound(F.outbound("T1"), message: F.entry("T1"))
        try await catalog.outboxSent(F.entry("T1"), at: F.epoch, refused: [], followUp: nil)
        try await catalog.commitOutbound(F.outbound("T2"), message: F.entry("T2"))
        try await catalog.outboxSent(F.entry("T2"), at: F.epoch, refused: [], followUp: nil)

        // The returned header named no Message-ID we know; the envelope id is enough.
        var bounce = F.report("D1", site: "acme", original: "unknown@relay.example", lines: [
            RecipientReport(recipient: "ops@acme.example", action: "failed", status: "5.1.1"),
        ])
        bounce.originalEnvelopeId = "T2"
        try await catalog.commitReceived(bounce, uidl: "d1")
        #expect(try await catalog.transfer(id: "T1")?.state == .sent)
        let failed = try #require(try await catalog.transfer(id: "T2"))
        #expect(failed.state == .failed)
        #expect(failed.error == "the partner reported: ops@acme.example: failed 5.1.1")

        // Both recipients delivered, by Message-ID alone: delivered, still waiting for the MDN.
        let delivered = F.report("D2", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", action: "delivered", status: "2.0.0"),
            RecipientReport(recipient: "ops@acme.example", action: "delivered", status: "2.0.0"),
        ])
        try await catalog.commitReceived(delivered, uidl: "d2")
        let record = try #require(try await catalog.transfer(id: "T1"))
        #expect((record.state, record.ack) == (.delivered, .requested))
    }

    @Test(arguments: CatalogStore.allCases)
    func anUnacknowledgedTransferBecomesOverdueCountingFromItsLastSend(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let hour: TimeInterval = 3600
        // T1 sent at 0, T2 sent at 0 but partly refused for now: its follow-up went at 2 h.
        for id in ["T1", "T2", "T3", "T4"] {
            try await catalog.commitOutbound(F.outbound(id), message: F.entry(id))
        }
        try await catalog.outboxSent(F.entry("T1"), at: F.epoch, refused: [], followUp: nil)
        var followUp = F.entry("T2-2", transferId: "T2")
        followUp.recipients = ["ops@acme.example"]
        try await catalog.outboxSent(F.entry("T2"), at: F.epoch, refused: [], followUp: followUp)
        try await catalog.outboxSent(followUp, at: F.epoch.addingTimeInterval(2 * hour), refused: [], followUp: nil)
        // T3 acknowledged; T4 never sent.
        try await catalog.outboxSent(F.entry("T3"), at: F.epoch, refused: [], followUp: nil)
        try await catalog.commitReceived(F.report("R3", site: "acme", original: "T3@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processed),
        ]), uidl: "r3")

        #expect(try await catalog.markOverdue(site: "acme", sentBefore: F.epoch).isEmpty, "sent at the cutoff is not before it")
        #expect(try await catalog.markOverdue(site: "other", sentBefore: F.epoch.addingTimeInterval(9 * hour)).isEmpty)
        let first = try await catalog.markOverdue(site: "acme", sentBefore: F.epoch.addingTimeInterval(hour))
        #expect(first.map(\.id) == ["T1"])
        #expect(first.map(\.state) == [.overdue])
        let later = try await catalog.markOverdue(site: "acme", sentBefore: F.epoch.addingTimeInterval(3 * hour))
        #expect(later.map(\.id) == ["T2"], "once overdue is not overdue again; acknowledged and queued never")
        #expect(try await catalog.transfer(id: "T3")?.state == .acknowledged)
        #expect(try await catalog.transfer(id: "T4")?.state == .queued)
        #expect(try await catalog.transfers(TransferFilter(state: .overdue)).map(\.id) == ["T1", "T2"])

        // A late acknowledgment still closes it.
        try await catalog.commitReceived(F.report("R1", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processed),
        ]), uidl: "r1")
        #expect(try await catalog.transfer(id: "T1")?.state == .acknowledged)
    }

    @Test(arguments: CatalogStore.allCases)
    func theOutboxListsNewestFirstByState(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        for (index, id) in ["T1", "T2", "T3"].enumerated() {
            try await catalog.commitOutbound(F.outbound(id), message: F.entry(id, now: F.epoch.addingTimeInterval(TimeInterval(index))))
        }
        try await catalog.outboxSent(F.entry("T1"), at: F.epoch, refused: [], followUp: nil)
        try await catalog.outboxFailed(F.entry("T2"), error: "550 no", retryAt: nil)
        #expect(try await catalog.outboxEntries(state: nil, limit: 10).map(\.id) == ["T3", "T2", "T1"])
        #expect(try await catalog.outboxEntries(state: .pending, limit: 10).map(\.id) == ["T3"])
        #expect(try await catalog.outboxEntries(state: .failed, limit: 10).map(\.lastError) == ["550 no"])
        #expect(try await catalog.outboxEntries(state: nil, limit: 2).map(\.id) == ["T3", "T2"])
    }

    @Test(arguments: CatalogStore.allCases)
    func aFailedFileCanBeRequeued(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let entry = F.entry("T1")
        try await catalog.commitOutbound(F.outbound("T1"), message: entry)
        try await catalog.outboxFailed(entry, error: "550 5.1.1 unknown", retryAt: nil)
        var record = try #require(try await catalog.transfer(id: "T1"))
        #expect((record.state, record.error) == (.failed, "550 5.1.1 unknown"))
        #expect(try await catalog.outbox(transferId: "T1").map(\.state) == [.failed])

        let requeuedAt = F.epoch.addingTimeInterval(3600)
        #expect(try await catalog.requeueOutbox(transferId: "T1", at: requeuedAt) == 1)
        record = try #require(try await catalog.transfer(id: "T1"))
        #expect((record.state, record.error) == (.queued, nil))
        let again = try #require(try await catalog.dueOutbox(site: "acme", at: requeuedAt).first)
        #expect((again.id, again.state, again.attempts, again.lastError) == ("T1", .pending, 1, nil))
        #expect((again.nextAttempt, again.createdAt) == (requeuedAt, requeuedAt), "its time to fail for good counts from now")
        #expect(try await catalog.requeueOutbox(transferId: "T1", at: requeuedAt) == 0, "nothing failed any more")
    }

    @Test(arguments: CatalogStore.allCases)
    func anAcknowledgmentIsSentOrFailsAndIsRequeuedOnItsInboundTransfer(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        var received = F.inbound("T1")
        received.ack = .requested
        let mdn = F.entry("M1", kind: .acknowledgment, transferId: "T1")
        try await catalog.commitReceived(received, uidl: "u1", acknowledgment: mdn)

        try await catalog.outboxFailed(mdn, error: "421 try later", retryAt: F.epoch.addingTimeInterval(30))
        #expect(try await catalog.transfer(id: "T1")?.ack == .requested, "a temporary failure leaves the transfer")
        var entry = try #require(try await catalog.outbox(transferId: "T1").first)
        #expect((entry.state, entry.attempts, entry.lastError, entry.nextAttempt) == (.pending, 1, "421 try later", F.epoch.addingTimeInterval(30)))

        try await catalog.outboxFailed(mdn, error: "550 no", retryAt: nil)
        var record = try #require(try await catalog.transfer(id: "T1"))
        #expect((record.state, record.ack) == (.received, .failed))
        entry = try #require(try await catalog.outbox(transferId: "T1").first)
        #expect((entry.state, entry.attempts) == (.failed, 2))

        #expect(try await catalog.requeueOutbox(transferId: "T1", at: F.epoch) == 1)
        #expect(try await catalog.transfer(id: "T1")?.ack == .requested)
        try await catalog.outboxSent(mdn, at: F.epoch, refused: [], followUp: nil)
        record = try #require(try await catalog.transfer(id: "T1"))
        #expect((record.state, record.ack, record.ackMessageId) == (.received, .sent, "M1@ours.example"))
        #expect(try await catalog.outbox(transferId: "T1").map(\.attempts) == [3])
    }
}
