import Foundation
import Testing
@testable import GatepostCatalog

@Suite struct OutboxTests {
    static func catalog() throws -> SQLiteCatalog {
        try SQLiteCatalog(path: try temporaryDirectory().appendingPathComponent("catalog.sqlite").path)
    }

    static func outbound(_ id: String, site: String = "acme") -> TransferRecord {
        TransferRecord(
            id: id, direction: .outbound, type: .xfer, fileName: "a.csv", site: site, state: .queued,
            messageId: "\(id)@ours.example", recipients: ["edi@acme.example", "ops@acme.example"], ack: .requested
        )
    }

    static func entry(_ id: String, site: String = "acme", now: Date = Date()) -> OutboxEntry {
        OutboxEntry(
            id: id, kind: .file, transferId: id, site: site, mailFrom: "g@ours.example",
            recipients: ["edi@acme.example", "ops@acme.example"], path: "/tmp/\(id).eml", messageId: "\(id)@ours.example",
            nextAttempt: now, createdAt: now
        )
    }

    static func report(_ id: String, site: String, original: String, lines: [RecipientReport]) -> TransferRecord {
        TransferRecord(
            id: id, type: .eerp, fileName: nil, site: site, messageId: "\(id)@acme.example",
            originalMessageId: original, recipientReports: lines
        )
    }

    @Test func aClaimIsExclusiveAndAPartial4xxGetsAnEntryOfItsOwn() async throws {
        let catalog = try Self.catalog()
        let now = Date()
        try await catalog.commitOutbound(Self.outbound("T1"), message: Self.entry("T1", now: now))
        #expect(try await catalog.claimOutbox("T1", due: now, until: now.addingTimeInterval(600)))
        #expect(try await !catalog.claimOutbox("T1", due: now, until: now.addingTimeInterval(600)), "a second sender gets nothing")
        #expect(try await catalog.dueOutbox(site: nil, at: now).isEmpty)

        var later = Self.entry("T1-1", now: now)
        later.transferId = "T1"
        later.recipients = ["ops@acme.example"]
        try await catalog.outboxSent(Self.entry("T1", now: now), at: now, refused: [], followUp: later)
        #expect(try await catalog.transfer(id: "T1")?.state == .sent)
        let entries = try await catalog.outbox(transferId: "T1")
        #expect(entries.map(\.state) == [.sent, .pending])
        #expect(entries.last?.recipients == ["ops@acme.example"])
    }

    @Test func aReportClosesOnlyItsOwnSitesTransferAndAnErrorFailsIt() async throws {
        let catalog = try Self.catalog()
        try await catalog.commitOutbound(Self.outbound("T1"), message: Self.entry("T1"))
        try await catalog.outboxSent(Self.entry("T1"), at: Date(), refused: [], followUp: nil)

        // Another partner cannot close ACME's transfer by naming its Message-ID.
        let forged = Self.report("R0", site: "mallory", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: "automatic-action/MDN-sent-automatically; processed"),
        ])
        try await catalog.commitReceived(forged, uidl: "f0")
        #expect(try await catalog.transfer(id: "T1")?.state == .sent)

        let processed = Self.report("R1", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: "automatic-action/MDN-sent-automatically; processed"),
        ])
        try await catalog.commitReceived(processed, uidl: "u1")
        var record = try #require(try await catalog.transfer(id: "T1"))
        #expect(record.state == .acknowledged)
        #expect(record.ack == .received)
        #expect(record.ackMessageId == "R1@acme.example")

        let failed = Self.report("R2", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "ops@acme.example", disposition: "automatic-action/MDN-sent-automatically; processed/error"),
        ])
        try await catalog.commitReceived(failed, uidl: "u2")
        record = try #require(try await catalog.transfer(id: "T1"))
        #expect(record.state == .failed)
        #expect(record.recipientReports.map(\.recipient) == ["edi@acme.example", "ops@acme.example"])
        #expect(record.error?.contains("ops@acme.example: automatic-action/MDN-sent-automatically; processed/error") == true)
    }

    @Test func aFailedMessageCanBeRequeued() async throws {
        let catalog = try Self.catalog()
        let entry = Self.entry("T1")
        try await catalog.commitOutbound(Self.outbound("T1"), message: entry)
        try await catalog.outboxFailed(entry, error: "550 5.1.1 unknown", retryAt: nil)
        #expect(try await catalog.transfer(id: "T1")?.state == .failed)
        #expect(try await catalog.requeueOutbox(transferId: "T1", at: Date()) == 1)
        #expect(try await catalog.transfer(id: "T1")?.state == .queued)
        #expect(try await catalog.dueOutbox(site: "acme", at: Date()).map(\.id) == ["T1"])
        #expect(try await catalog.requeueOutbox(transferId: "T1", at: Date()) == 0, "nothing failed any more")
    }
}
