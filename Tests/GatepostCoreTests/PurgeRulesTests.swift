import Foundation
import GatepostCatalog
import Testing
@testable import GatepostCore

@Suite struct PurgeRulesTests {
    let cutoff = Date(timeIntervalSince1970: 1_800_000_000)

    func transfer(_ state: TransferRecord.State, type: TransferRecord.Kind = .xfer, fileName: String? = "a.csv") -> TransferRecord {
        TransferRecord(id: "T1", type: type, fileName: fileName, site: "acme", state: state, receivedAt: cutoff.addingTimeInterval(-1))
    }

    func entry(_ state: OutboxEntry.State, transferId: String = "T1") -> OutboxEntry {
        OutboxEntry(id: "M1", kind: .acknowledgment, transferId: transferId, site: "acme", mailFrom: "", recipients: ["edi@acme.example"],
                    path: "/spool/out/M1.eml", messageId: "M1@ours.example", state: state)
    }

    @Test func finishedTransfersAndNeverDeliveredOnesOnceReceived() {
        for state in TransferRecord.State.allCases {
            #expect(PurgeRules.isFinished(transfer(state)) == [.delivered, .failed, .acknowledged, .sent, .overdue].contains(state), "\(state)")
        }
        #expect(PurgeRules.isFinished(transfer(.received, type: .eerp, fileName: nil)))
        #expect(PurgeRules.isFinished(transfer(.received, fileName: TransferRecord.duplicateFileName)))
        #expect(!PurgeRules.isFinished(transfer(.received, fileName: TransferRecord.recoverFileName)), "RECOVER waits for an operator")
        #expect(!PurgeRules.isFinished(transfer(.routed, type: .eerp, fileName: nil)))
    }

    @Test func onlyOlderUnpurgedTransfersWithNothingPendingInTheOutbox() {
        let delivered = transfer(.delivered)
        #expect(PurgeRules.isPurgeable(delivered, before: cutoff, outbox: []))
        #expect(!PurgeRules.isPurgeable(delivered, before: delivered.receivedAt, outbox: []), "received at the cutoff is not before it")
        var purged = delivered
        purged.purgedAt = cutoff
        #expect(!PurgeRules.isPurgeable(purged, before: cutoff, outbox: []))
        #expect(!PurgeRules.isPurgeable(delivered, before: cutoff, outbox: [entry(.sent), entry(.pending)]), "its MDN still needs its file")
        #expect(PurgeRules.isPurgeable(delivered, before: cutoff, outbox: [entry(.sent), entry(.failed), entry(.pending, transferId: "T2")]))
        #expect(!PurgeRules.isPurgeable(transfer(.routed), before: cutoff, outbox: []))
    }
}
