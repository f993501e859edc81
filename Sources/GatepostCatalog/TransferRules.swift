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
/// transfer it answers, and what the lack of one does.
public enum AcknowledgmentRules {
    /// How a report names the outbound transfer it answers: a DSN by the ENVID Gatepost gave
    /// it (the transfer's id) and by the Message-ID in the header it returns; an MDN by its
    /// Original-Message-ID.
    public struct Reference: Sendable, Hashable {
        public var envelopeId: String?
        public var messageId: String?
    }

    /// What `report` names, when it is a report with at least one recipient's line and names
    /// something.
    public static func reference(of report: TransferRecord) -> Reference? {
        guard report.type == .eerp, !report.recipientReports.isEmpty,
              report.originalEnvelopeId != nil || report.originalMessageId != nil
        else { return nil }
        return Reference(envelopeId: report.originalEnvelopeId, messageId: report.originalMessageId)
    }

    /// Whether `report` is about `outbound`: the same site (a partner cannot close another
    /// partner's transfer by naming it), and the envelope id or Message-ID it names.
    public static func answers(_ report: TransferRecord, outbound: TransferRecord) -> Bool {
        guard outbound.direction == .outbound, outbound.site == report.site, let reference = reference(of: report) else { return false }
        if let envelopeId = reference.envelopeId, outbound.id == envelopeId { return true }
        if let messageId = reference.messageId, outbound.messageId == messageId { return true }
        return false
    }

    /// The outbound transfer after `report`, or nil when the report leaves it as it is: a report
    /// about another transfer (``answers(_:outbound:)``), or for a transfer not waiting for one.
    ///
    /// Each reported recipient's line replaces an earlier one for the same recipient (compared
    /// without case). Then, in this order:
    /// - a line reporting failure (an MDN's `processed/error`, a DSN's `failed`) fails the
    ///   transfer, naming each failing line;
    /// - an MDN acknowledges it (the partner has processed it);
    /// - a DSN moves a sent transfer to `delivered` once every recipient has been reported
    ///   delivered (or relayed, or expanded): the server has it, the partner's acknowledgment is
    ///   still to come. A `delayed` line is recorded and changes nothing else.
    ///
    /// A transfer sent asking for a signed receipt is moved only by a report whose signature
    /// verified (``signedReceipt(_:expectedMIC:closing:)``): an unsigned one (a forged MDN, a
    /// mail system's DSN) is noted on the transfer and changes nothing else, neither failing it
    /// nor reopening an acknowledged one.
    public static func close(outbound: TransferRecord, report: TransferRecord) -> TransferRecord? {
        guard answers(report, outbound: outbound),
              [.queued, .sent, .delivered, .overdue, .acknowledged].contains(outbound.state)
        else { return nil }
        var closed = outbound
        let expectedMIC = outbound.security?.signedReceiptRequested == true ? outbound.security?.mic : nil
        if expectedMIC != nil, report.security?.signedBy == nil {
            guard outbound.state != .acknowledged else { return nil }
            let how = report.security?.signatureFailure.map { "with a signature that does not verify (\($0))" } ?? "unsigned"
            let said = report.recipientReports.map { line in
                "\(line.recipient): " + [line.disposition, line.action, line.status].compactMap { $0 }.joined(separator: " ")
            }.joined(separator: "; ")
            closed.error = "report \(report.id) came back \(how), saying \(said); a signed receipt was asked for, "
                + "so only a verified one moves this transfer, and it waits for one"
            return closed
        }
        for line in report.recipientReports {
            closed.recipientReports.removeAll { $0.recipient.lowercased() == line.recipient.lowercased() }
            closed.recipientReports.append(line)
        }
        let failures = report.recipientReports.filter(\.reportsFailure)
        let isDisposition = report.recipientReports.contains { $0.disposition != nil }
        if isDisposition {
            closed.ack = .received
            closed.ackMessageId = report.messageId
        }
        if !failures.isEmpty {
            closed.state = .failed
            closed.error = "the partner reported: " + failures.map { line in
                "\(line.recipient): " + [line.disposition, line.action, line.status].compactMap { $0 }.joined(separator: " ")
            }.joined(separator: "; ")
        } else if isDisposition {
            if let mic = expectedMIC, let signer = report.security?.signedBy {
                signedReceipt(report, signer: signer, expectedMIC: mic, closing: &closed)
            } else {
                closed.state = .acknowledged
            }
        } else if [.queued, .sent].contains(closed.state), allDelivered(closed) {
            closed.state = .delivered
        }
        return closed
    }

    /// Non-repudiation of receipt: a transfer sent asking for a signed receipt is acknowledged
    /// only by a receipt whose signature verified against the site's partner certificates (by
    /// `signer`) and whose Received-Content-MIC is the MIC computed when sending (an unverified
    /// one never gets here: ``close(outbound:report:)``). A verified receipt with another MIC
    /// fails it: the partner received other content than was sent.
    static func signedReceipt(_ report: TransferRecord, signer: String, expectedMIC: String, closing closed: inout TransferRecord) {
        guard let returned = report.security?.receivedContentMIC, MessageSecurity.sameMIC(returned, expectedMIC) else {
            closed.state = .failed
            closed.error = "the signed receipt \(report.id) from \(signer) returns "
                + (report.security?.receivedContentMIC.map { "Received-Content-MIC \($0)" } ?? "no Received-Content-MIC")
                + ", but what was sent has MIC \(expectedMIC): the partner did not receive the content that was sent"
            return
        }
        closed.state = .acknowledged
        closed.error = nil
        var security = closed.security ?? MessageSecurity()
        security.receipt = MessageSecurity.SignedReceipt(signedBy: signer, mic: returned, receivedAt: report.receivedAt, transferId: report.id)
        closed.security = security
    }

    /// Whether every recipient of `outbound` has a line saying its server has the message.
    static func allDelivered(_ outbound: TransferRecord) -> Bool {
        let delivered = Set(outbound.recipientReports.filter(\.reportsDelivery).map { $0.recipient.lowercased() })
        return !outbound.recipients.isEmpty && outbound.recipients.allSatisfy { delivered.contains($0.lowercased()) }
    }

    /// `outbound` once its site's `ack_timeout` has passed since it was sent with no
    /// acknowledgment, or nil when it is not waiting for one (not sent yet, acknowledged,
    /// failed, or already overdue). Its `error` stays: the state says what is missing.
    public static func overdue(_ outbound: TransferRecord) -> TransferRecord? {
        guard outbound.direction == .outbound, [.sent, .delivered].contains(outbound.state) else { return nil }
        var overdue = outbound
        overdue.state = .overdue
        return overdue
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
