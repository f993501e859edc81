import Foundation
import GatepostCatalog

/// Which transfers `gatepost catalog purge` may remove the spool files of.
public enum PurgeRules {
    /// Done with: delivered, failed, acknowledged, sent or overdue; or a report or a duplicate, which are
    /// never delivered, once received. A RECOVER (a message kept whole) waits for an operator,
    /// and a transfer still routed or queued for its delivery or its send.
    public static func isFinished(_ transfer: TransferRecord) -> Bool {
        switch transfer.state {
        case .delivered, .failed, .acknowledged, .sent, .overdue:
            true
        case .received:
            transfer.type == .eerp || transfer.fileName == TransferRecord.duplicateFileName
        case .routed, .queued:
            false
        }
    }

    /// Whether `transfer`'s files may go: received before `cutoff`, not purged yet, finished, and
    /// none of its entries in `outbox` still pending (an MDN or a file being sent needs its file).
    public static func isPurgeable(_ transfer: TransferRecord, before cutoff: Date, outbox: [OutboxEntry]) -> Bool {
        transfer.receivedAt < cutoff && transfer.purgedAt == nil && isFinished(transfer)
            && !outbox.contains { $0.transferId == transfer.id && $0.state == .pending }
    }
}
