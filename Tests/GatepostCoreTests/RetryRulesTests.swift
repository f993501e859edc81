import Foundation
import GatepostCatalog
import Testing
@testable import GatepostCore

@Suite struct RetryRulesTests {
    func transfer(_ direction: TransferRecord.Direction, _ state: TransferRecord.State) -> TransferRecord {
        TransferRecord(
            id: "T1", direction: direction, type: .xfer, fileName: "a.csv", site: "acme", application: "billing", state: state,
            receivedAt: Date(timeIntervalSince1970: 1_800_000_000)
        )
    }

    @Test func aFailedOrUndeliveredInboundTransferIsRoutedAgainFromScratch() {
        for state in [TransferRecord.State.failed, .routed, .received] {
            for requeued in [0, 1] {
                var again = transfer(.inbound, state)
                again.state = .received
                again.application = nil
                #expect(RetryRules.decide(transfer(.inbound, state), requeued: requeued) == .deliverAgain(again), "\(state)")
            }
        }
    }

    @Test func aFinishedInboundTransferHasNothingToDeliver() {
        for state in [TransferRecord.State.delivered, .acknowledged, .sent, .queued] {
            #expect(RetryRules.decide(transfer(.inbound, state), requeued: 0) == .refused(reason: "transfer T1 is already \(state.rawValue)"))
            #expect(RetryRules.decide(transfer(.inbound, state), requeued: 1) == .resent, "its MDN went again")
        }
    }

    @Test func anOutboundTransferIsRetriedOnlyBySendingAgain() {
        for state in TransferRecord.State.allCases {
            #expect(RetryRules.decide(transfer(.outbound, state), requeued: 0) == .refused(
                reason: "transfer T1 is outbound and has no failed message to send again (\(state.rawValue))"
            ))
            #expect(RetryRules.decide(transfer(.outbound, state), requeued: 2) == .resent)
        }
    }
}

@Suite struct RetryOfPurgedTransfersTests {
    @Test func aPurgedTransferIsNeverRetried() {
        for direction in [TransferRecord.Direction.inbound, .outbound] {
            var record = TransferRecord(id: "T1", direction: direction, type: .xfer, fileName: "a.csv", site: "acme", state: .failed)
            record.purgedAt = Date(timeIntervalSince1970: 1_700_000_000)
            guard case .refused(let reason) = RetryRules.decide(record, requeued: 1) else {
                Issue.record("a purged \(direction) transfer was retried")
                continue
            }
            #expect(reason.contains("purged on 2023-11-14"), "\(reason)")
        }
    }
}
