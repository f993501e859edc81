import Foundation
import GatepostCatalog

/// What `gatepost catalog retry` does with a transfer once its failed outgoing messages (a file,
/// an MDN), if it had any, were queued and sent again.
public enum RetryDecision: Sendable, Equatable {
    /// Route and deliver it again from scratch, as the transfer given: back to received, with no
    /// application, since the site's routes may have been fixed since.
    case deliverAgain(TransferRecord)
    /// Sending its failed messages again was the whole retry: there is nothing to deliver.
    case resent
    /// Nothing to try again; the reason is for the operator.
    case refused(reason: String)
}

public enum RetryRules {
    /// `requeued`: how many of the transfer's failed outgoing messages were queued again.
    public static func decide(_ transfer: TransferRecord, requeued: Int) -> RetryDecision {
        if let purged = transfer.purgedAt {
            return .refused(reason: "transfer \(transfer.id)'s files were purged on \(purged.formatted(.iso8601)): there is nothing to send or deliver")
        }
        guard transfer.direction == .inbound else {
            return requeued > 0 ? .resent : .refused(
                reason: "transfer \(transfer.id) is outbound and has no failed message to send again (\(transfer.state.rawValue))"
            )
        }
        switch transfer.state {
        case .failed, .routed, .received:
            var again = transfer
            again.state = .received
            again.application = nil
            return .deliverAgain(again)
        case .delivered, .acknowledged, .sent, .queued, .overdue:
            return requeued > 0 ? .resent : .refused(reason: "transfer \(transfer.id) is already \(transfer.state.rawValue)")
        }
    }
}
