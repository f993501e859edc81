import Foundation

// The rules a store applies inside its transactions: pure functions of records, so that every
// store (SQLite, in-memory, PostgreSQL) gets the same answer from one definition, and a store
// only finds rows, hands them here and writes back what comes out.

extension TransferRecord.State {
    /// An inbound transfer in one of these states is still to be routed (received) or delivered
    /// (routed).
    public static let awaitingDelivery: [TransferRecord.State] = [.received, .routed]
}

/// What a partner's report (an EERP: an RFC 8098 MDN or an RFC 3464 DSN) does to the outbound
/// transfer it answers.
public enum AcknowledgmentRules {
    /// The Message-ID of the outbound transfer `report` may close: that of the message it
    /// reports on, when it is a report with at least one recipient's line.
    public static func acknowledgedMessageId(by report: TransferRecord) -> String? {
        guard report.type == .eerp, !report.recipientReports.isEmpty else { return nil }
        return report.originalMessageId
    }

    /// The outbound transfer after `report`, or nil when the report leaves it as it is: a report
    /// from another site (a partner cannot close another partner's transfer by naming its
    /// Message-ID), about another message, or for a transfer not waiting for one.
    ///
    /// Each reported recipient's line replaces an earlier one for the same recipient (compared
    /// without case). A report of failure (`processed/error`, a DSN `failed`) fails the transfer,
    /// naming each failing line; any other acknowledges it.
    public static func close(outbound: TransferRecord, report: TransferRecord) -> TransferRecord? {
        guard outbound.direction == .outbound, outbound.site == report.site,
              let original = acknowledgedMessageId(by: report), outbound.messageId == original,
              [.queued, .sent, .acknowledged].contains(outbound.state)
        else { return nil }
        var closed = outbound
        for line in report.recipientReports {
            closed.recipientReports.removeAll { $0.recipient.lowercased() == line.recipient.lowercased() }
            closed.recipientReports.append(line)
        }
        closed.ack = .received
        closed.ackMessageId = report.messageId
        let failures = report.recipientReports.filter(\.reportsFailure)
        if failures.isEmpty {
            closed.state = .acknowledged
        } else {
            closed.state = .failed
            closed.error = "the partner reported: " + failures.map { line in
                "\(line.recipient): " + [line.disposition, line.action, line.status].compactMap { $0 }.joined(separator: " ")
            }.joined(separator: "; ")
        }
        return closed
    }
}

/// What happens to a transfer when one of its outbox entries is sent, given up on, or requeued.
/// An acknowledgment entry (an MDN) moves the inbound transfer's `ack`; a file entry moves the
/// outbound transfer's `state`.
public enum OutboxRules {
    /// The note an entry (and a file's transfer) keeps when the server took the message but
    /// refused some recipients for good; nil when it refused none.
    public static func refusalNote(_ refused: [String]) -> String? {
        refused.isEmpty ? nil : "refused by the server: \(refused.joined(separator: ", "))"
    }

    /// The server took `entry`. A file's transfer becomes sent only from queued: a report that
    /// came back before the send was recorded has already moved it further. While `followUp`
    /// (recipients the server refused for now, 4xx) waits for its retry, the transfer stays
    /// queued: work is still owed, and `catalog list --state queued` shows it.
    public static func sent(_ transfer: TransferRecord, entry: OutboxEntry, refused: [String], followUp: OutboxEntry? = nil) -> TransferRecord {
        var transfer = transfer
        switch entry.kind {
        case .acknowledgment:
            transfer.ack = .sent
            transfer.ackMessageId = entry.messageId
        case .file:
            guard transfer.state == .queued else { return transfer }
            if let followUp {
                transfer.error = ["waiting to retry \(followUp.recipients.joined(separator: ", ")) (refused for now)", refusalNote(refused)]
                    .compactMap { $0 }.joined(separator: "; ")
                return transfer
            }
            transfer.state = .sent
            transfer.error = refusalNote(refused)
        }
        return transfer
    }

    /// `entry` failed for good with `error`.
    public static func givenUp(_ transfer: TransferRecord, entry: OutboxEntry, error: String) -> TransferRecord {
        var transfer = transfer
        switch entry.kind {
        case .acknowledgment:
            transfer.ack = .failed
        case .file:
            transfer.state = .failed
            transfer.error = error
        }
        return transfer
    }

    /// The transfer's failed entries are pending again: a failed outbound transfer is queued
    /// again, a failed acknowledgment requested again.
    public static func requeued(_ transfer: TransferRecord) -> TransferRecord {
        var transfer = transfer
        switch transfer.direction {
        case .outbound where transfer.state == .failed:
            transfer.state = .queued
            transfer.error = nil
        case .inbound where transfer.ack == .failed:
            transfer.ack = .requested
        case .outbound, .inbound:
            break
        }
        return transfer
    }
}
