import Foundation
import Testing
@testable import GatepostCatalog

/// The rules stores apply, as pure functions: no store involved.
@Suite struct AcknowledgmentRulesTests {
    func sent() -> TransferRecord {
        var record = F.outbound("T1")
        record.state = .sent
        return record
    }

    @Test func onlyAReportWithLinesNamesWhatItAnswers() {
        let line = RecipientReport(recipient: "edi@acme.example", disposition: F.processed)
        #expect(AcknowledgmentRules.reference(of: F.report("R1", site: "acme", original: "T1@ours.example", lines: [line]))
            == AcknowledgmentRules.Reference(envelopeId: nil, messageId: "T1@ours.example"))
        #expect(AcknowledgmentRules.reference(of: F.report("R1", site: "acme", original: "T1@ours.example", lines: [])) == nil)
        var notAReport = F.inbound("R1")
        notAReport.originalMessageId = "T1@ours.example"
        notAReport.recipientReports = [line]
        #expect(AcknowledgmentRules.reference(of: notAReport) == nil)
        var noOriginal = F.report("R1", site: "acme", original: "x", lines: [line])
        noOriginal.originalMessageId = nil
        #expect(AcknowledgmentRules.reference(of: noOriginal) == nil)
        noOriginal.originalEnvelopeId = "T1"
        #expect(AcknowledgmentRules.reference(of: noOriginal) == AcknowledgmentRules.Reference(envelopeId: "T1", messageId: nil))
    }

    @Test func aDeliveryReportNamesItsTransferByEnvelopeIdOrMessageId() {
        let line = RecipientReport(recipient: "edi@acme.example", action: "failed", status: "5.1.1")
        var byEnvelope = F.report("R1", site: "acme", original: "lost@elsewhere.example", lines: [line])
        byEnvelope.originalEnvelopeId = "T1"
        #expect(AcknowledgmentRules.answers(byEnvelope, outbound: sent()))
        var byMessageId = F.report("R1", site: "acme", original: "T1@ours.example", lines: [line])
        byMessageId.originalEnvelopeId = "someone-elses-envid"
        #expect(AcknowledgmentRules.answers(byMessageId, outbound: sent()))
        var neither = byEnvelope
        neither.originalEnvelopeId = "T2"
        #expect(!AcknowledgmentRules.answers(neither, outbound: sent()))
        var otherSite = byEnvelope
        otherSite.site = "mallory"
        #expect(!AcknowledgmentRules.answers(otherSite, outbound: sent()), "an envelope id is no key to another site's transfer")
    }

    @Test func aDeliveryStatusNotificationDeliversOnlyOnceEveryRecipientIsDelivered() throws {
        // F.outbound has two recipients: edi@ and ops@acme.example.
        func dsn(_ lines: [RecipientReport]) -> TransferRecord {
            var report = F.report("D1", site: "acme", original: "T1@ours.example", lines: lines)
            report.originalEnvelopeId = "T1"
            return report
        }
        let first = try #require(AcknowledgmentRules.close(outbound: sent(), report: dsn([
            RecipientReport(recipient: "edi@acme.example", action: "delivered", status: "2.0.0"),
        ])))
        #expect(first.state == .sent, "one of two recipients delivered")
        #expect((first.ack, first.ackMessageId) == (.requested, nil), "a DSN is not the partner's acknowledgment")
        let delayed = try #require(AcknowledgmentRules.close(outbound: first, report: dsn([
            RecipientReport(recipient: "ops@acme.example", action: "delayed", status: "4.4.1"),
        ])))
        #expect(delayed.state == .sent)
        #expect(delayed.recipientReports.count == 2)
        let both = try #require(AcknowledgmentRules.close(outbound: delayed, report: dsn([
            RecipientReport(recipient: "OPS@acme.example", action: "relayed", status: "2.0.0"),
        ])))
        #expect(both.state == .delivered)
        #expect(both.recipientReports.map(\.action) == ["delivered", "relayed"])
        // The partner's MDN acknowledges a delivered (or overdue) transfer.
        let mdn = F.report("R1", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processed),
        ])
        #expect(AcknowledgmentRules.close(outbound: both, report: mdn)?.state == .acknowledged)
        var overdue = both
        overdue.state = .overdue
        #expect(AcknowledgmentRules.close(outbound: overdue, report: mdn)?.state == .acknowledged)
        #expect(AcknowledgmentRules.close(outbound: overdue, report: dsn([
            RecipientReport(recipient: "edi@acme.example", action: "delivered"),
        ]))?.state == .overdue, "a late delivery report is not the missing acknowledgment")
    }

    @Test func aFailedDeliveryStatusNotificationFailsTheTransfer() throws {
        var report = F.report("D1", site: "acme", original: "lost@elsewhere.example", lines: [
            RecipientReport(recipient: "edi@acme.example", action: "delivered", status: "2.0.0"),
            RecipientReport(recipient: "ops@acme.example", action: "failed", status: "5.1.1"),
        ])
        report.originalEnvelopeId = "T1"
        let closed = try #require(AcknowledgmentRules.close(outbound: sent(), report: report))
        #expect(closed.state == .failed)
        #expect(closed.error == "the partner reported: ops@acme.example: failed 5.1.1")
        #expect(closed.ack == .requested)
    }

    @Test func onlyASentOrDeliveredTransferBecomesOverdue() {
        for state in TransferRecord.State.allCases {
            var outbound = sent()
            outbound.state = state
            outbound.error = "refused by the server: x@acme.example"
            let overdue = AcknowledgmentRules.overdue(outbound)
            #expect((overdue != nil) == [.sent, .delivered].contains(state), "\(state)")
            #expect(overdue.map { ($0.state, $0.error) } ?? (.overdue, outbound.error) == (.overdue, outbound.error))
        }
        var inbound = sent()
        inbound.direction = .inbound
        #expect(AcknowledgmentRules.overdue(inbound) == nil)
    }

    @Test func aProcessedReportAcknowledges() throws {
        let report = F.report("R1", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", disposition: F.processed),
        ])
        let closed = try #require(AcknowledgmentRules.close(outbound: sent(), report: report))
        var expected = sent()
        expected.state = .acknowledged
        expected.ack = .received
        expected.ackMessageId = "R1@acme.example"
        expected.recipientReports = report.recipientReports
        #expect(closed == expected)
    }

    @Test func aFailureFailsNamingEachFailingLineAndLinesReplaceByRecipient() throws {
        var outbound = sent()
        outbound.recipientReports = [
            RecipientReport(recipient: "EDI@acme.example", disposition: F.processed),
            RecipientReport(recipient: "ops@acme.example", disposition: F.processed),
        ]
        let report = F.report("R2", site: "acme", original: "T1@ours.example", lines: [
            RecipientReport(recipient: "edi@acme.example", action: "failed", status: "5.1.1"),
        ])
        let closed = try #require(AcknowledgmentRules.close(outbound: outbound, report: report))
        #expect(closed.state == .failed)
        #expect(closed.error == "the partner reported: edi@acme.example: failed 5.1.1")
        #expect(closed.recipientReports.map(\.recipient) == ["ops@acme.example", "edi@acme.example"])
    }

    @Test func aReportLeavesWhatItCannotClose() {
        let line = RecipientReport(recipient: "edi@acme.example", disposition: F.processed)
        let report = F.report("R1", site: "acme", original: "T1@ours.example", lines: [line])
        #expect(AcknowledgmentRules.close(outbound: sent(), report: F.report("R1", site: "mallory", original: "T1@ours.example", lines: [line])) == nil)
        #expect(AcknowledgmentRules.close(outbound: sent(), report: F.report("R1", site: "acme", original: "T2@ours.example", lines: [line])) == nil)
        var inbound = sent()
        inbound.direction = .inbound
        #expect(AcknowledgmentRules.close(outbound: inbound, report: report) == nil)
        for state in TransferRecord.State.allCases {
            var outbound = sent()
            outbound.state = state
            let closes = AcknowledgmentRules.close(outbound: outbound, report: report) != nil
            #expect(closes == [.queued, .sent, .delivered, .overdue, .acknowledged].contains(state), "\(state)")
        }
    }
}

@Suite struct OutboxRulesTests {
    @Test func aFileWithRecipientsRefusedForNowStaysQueuedUntilTheirRetry() {
        let entry = F.entry("T1")
        var followUp = entry
        followUp.id = entry.id + "-1"
        followUp.recipients = ["later@acme.example"]
        let partly = OutboxRules.sent(F.outbound("T1"), entry: entry, refused: ["never@acme.example"], followUp: followUp)
        #expect(partly.state == .queued)
        #expect(partly.error == "waiting to retry later@acme.example (refused for now); refused by the server: never@acme.example")
        // The follow-up goes through: now the transfer is sent.
        #expect(OutboxRules.sent(partly, entry: followUp, refused: []).state == .sent)
    }

    @Test func aSentFileIsSentOnlyFromQueuedAndKeepsTheRefusals() {
        let entry = F.entry("T1")
        let sent = OutboxRules.sent(F.outbound("T1"), entry: entry, refused: ["a@acme.example", "b@acme.example"])
        #expect((sent.state, sent.error) == (.sent, "refused by the server: a@acme.example, b@acme.example"))
        #expect(OutboxRules.sent(F.outbound("T1"), entry: entry, refused: []).error == nil)
        var acknowledged = F.outbound("T1")
        acknowledged.state = .acknowledged
        #expect(OutboxRules.sent(acknowledged, entry: entry, refused: ["a@acme.example"]) == acknowledged, "the report came first")
        #expect(OutboxRules.refusalNote([]) == nil)
    }

    @Test func aSentAcknowledgmentMovesOnlyTheAck() {
        let mdn = F.entry("M1", kind: .acknowledgment, transferId: "T1")
        var expected = F.inbound("T1")
        expected.ack = .sent
        expected.ackMessageId = "M1@ours.example"
        #expect(OutboxRules.sent(F.inbound("T1"), entry: mdn, refused: ["x@acme.example"]) == expected)
    }

    @Test func givingUpFailsTheFileOrTheAcknowledgment() {
        let file = OutboxRules.givenUp(F.outbound("T1"), entry: F.entry("T1"), error: "550 no")
        #expect((file.state, file.error) == (.failed, "550 no"))
        let mdn = OutboxRules.givenUp(F.inbound("T1"), entry: F.entry("M1", kind: .acknowledgment, transferId: "T1"), error: "550 no")
        #expect((mdn.state, mdn.ack, mdn.error) == (.received, .failed, nil))
    }

    @Test func aRequeueUndoesOnlyAFailure() {
        var failed = F.outbound("T1")
        failed.state = .failed
        failed.error = "550 no"
        let queued = OutboxRules.requeued(failed)
        #expect((queued.state, queued.error) == (.queued, nil))
        var unacknowledged = F.inbound("T1", state: .delivered)
        unacknowledged.ack = .failed
        #expect(OutboxRules.requeued(unacknowledged).ack == .requested)
        #expect(OutboxRules.requeued(F.outbound("T1")) == F.outbound("T1"))
        let delivered = F.inbound("T1", state: .failed)
        #expect(OutboxRules.requeued(delivered) == delivered, "an inbound transfer's own failure is the deliverer's")
    }
}
