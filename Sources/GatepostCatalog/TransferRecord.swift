import Foundation
import Synchronization

/// One transfer: a received message (direction in) or a file we sent (direction out).
/// The JSON names are the contract of `--format json` and the REST API.
public struct TransferRecord: Codable, Sendable, Hashable, Identifiable {
    public enum Direction: String, Codable, Sendable, Hashable { case inbound = "in", outbound = "out" }

    public enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
        /// A file transfer (or a message kept whole: FILE_NAME RECOVER or DUPLICATE).
        case xfer = "XFER"
        /// A text message for an application.
        case msg = "MSG"
        /// An end-to-end response: a delivery or disposition report closing an outbound transfer.
        case eerp = "EERP"
    }

    public enum State: String, Codable, Sendable, Hashable, CaseIterable {
        /// Outbound: waiting in the outbox.
        case queued
        case received, routed, delivered, failed, sent, acknowledged
    }

    public enum Acknowledgment: String, Codable, Sendable, Hashable, CaseIterable {
        case none, requested, sent, failed, received
    }

    /// The FILE_NAME of a message that did not fit a class and is kept whole.
    public static let recoverFileName = "RECOVER"
    /// The FILE_NAME of a message whose Message-ID this site already delivered.
    public static let duplicateFileName = "DUPLICATE"

    public var id: String
    public var direction: Direction
    public var type: Kind
    public var fileName: String?
    public var site: String
    public var application: String?
    public var state: State
    public var messageId: String?
    public var uidl: String?
    public var sender: String?
    public var recipients: [String]
    public var subject: String?
    /// Size in bytes of the file at `path`.
    public var size: Int64
    /// Hex SHA-256 of the file at `path`.
    public var sha256: String?
    /// The kept file (for XFER the received file, for MSG the text, for RECOVER the whole message).
    public var path: String?
    public var receivedAt: Date
    public var ack: Acknowledgment
    public var error: String?
    /// For EERP: the Message-ID of the message the report is about.
    public var originalMessageId: String?
    /// For EERP: the Disposition (RFC 8098) or Action (RFC 3464) reported.
    public var disposition: String?
    /// Where the file was delivered to its application, once delivered.
    public var deliveredPath: String?
    /// SHA-256 of the whole message as received (`sha256` is that of the kept file), for a message
    /// without a Message-ID (how its duplicates are recognized) or kept whole. A message with a
    /// Message-ID is not hashed whole: that is 7 % of a poll's CPU for a field nothing reads.
    public var messageSha256: String?
    /// Per-recipient results of a report (RFC 3464 Action and Status, RFC 8098 Disposition); on an
    /// outbound transfer, what each recipient's acknowledgment said.
    public var recipientReports: [RecipientReport]
    /// The Message-ID of the acknowledgment: the MDN sent for an inbound transfer, or the one
    /// that acknowledged an outbound transfer.
    public var ackMessageId: String?
    /// When `gatepost catalog purge` removed the transfer's files.
    public var purgedAt: Date?
    /// The message's text (UTF-8) kept with an XFER, when it was small enough to be held in
    /// memory (and holds no NUL byte); otherwise it is kept as the file `path` + ".txt".
    public var messageText: String?

    public init(
        id: String,
        direction: Direction = .inbound,
        type: Kind,
        fileName: String?,
        site: String,
        application: String? = nil,
        state: State = .received,
        messageId: String? = nil,
        uidl: String? = nil,
        sender: String? = nil,
        recipients: [String] = [],
        subject: String? = nil,
        size: Int64 = 0,
        sha256: String? = nil,
        path: String? = nil,
        receivedAt: Date = Date(),
        ack: Acknowledgment = .none,
        error: String? = nil,
        originalMessageId: String? = nil,
        disposition: String? = nil,
        deliveredPath: String? = nil,
        messageSha256: String? = nil,
        recipientReports: [RecipientReport] = [],
        ackMessageId: String? = nil,
        purgedAt: Date? = nil,
        messageText: String? = nil
    ) {
        self.id = id
        self.direction = direction
        self.type = type
        self.fileName = fileName
        self.site = site
        self.application = application
        self.state = state
        self.messageId = messageId
        self.uidl = uidl
        self.sender = sender
        self.recipients = recipients
        self.subject = subject
        self.size = size
        self.sha256 = sha256
        self.path = path
        self.receivedAt = receivedAt
        self.ack = ack
        self.error = error
        self.originalMessageId = originalMessageId
        self.disposition = disposition
        self.deliveredPath = deliveredPath
        self.messageSha256 = messageSha256
        self.recipientReports = recipientReports
        self.ackMessageId = ackMessageId
        self.purgedAt = purgedAt
        self.messageText = messageText
    }

    private enum CodingKeys: String, CodingKey {
        case id, direction, type, fileName, site, application, state, messageId, uidl, sender, recipients, subject
        case size, sha256, path, receivedAt, ack, error, originalMessageId, disposition, deliveredPath
        case messageSha256, recipientReports, ackMessageId, purgedAt, messageText
    }

    /// Every field is written, absent ones as `null`: a consumer of `--format json` sees the
    /// same keys on every record.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(direction, forKey: .direction)
        try container.encode(type, forKey: .type)
        try container.encode(fileName, forKey: .fileName)
        try container.encode(site, forKey: .site)
        try container.encode(application, forKey: .application)
        try container.encode(state, forKey: .state)
        try container.encode(messageId, forKey: .messageId)
        try container.encode(uidl, forKey: .uidl)
        try container.encode(sender, forKey: .sender)
        try container.encode(recipients, forKey: .recipients)
        try container.encode(subject, forKey: .subject)
        try container.encode(size, forKey: .size)
        try container.encode(sha256, forKey: .sha256)
        try container.encode(path, forKey: .path)
        try container.encode(receivedAt, forKey: .receivedAt)
        try container.encode(ack, forKey: .ack)
        try container.encode(error, forKey: .error)
        try container.encode(originalMessageId, forKey: .originalMessageId)
        try container.encode(disposition, forKey: .disposition)
        try container.encode(deliveredPath, forKey: .deliveredPath)
        try container.encode(messageSha256, forKey: .messageSha256)
        try container.encode(recipientReports, forKey: .recipientReports)
        try container.encode(ackMessageId, forKey: .ackMessageId)
        try container.encode(purgedAt, forKey: .purgedAt)
        try container.encode(messageText, forKey: .messageText)
    }

    /// A new, time-ordered id: `T` + UTC timestamp to the millisecond + 8 hex digits, random for
    /// the first id of a millisecond. Ids made in the same millisecond by this process still sort
    /// in the order they were made (as monotonic ULIDs do: the random part grows by a random
    /// step), so records received together list in the order they arrived. Not a secret.
    public static func newID(at date: Date = Date()) -> String {
        let (millis, random) = lastID.withLock { last -> (Int64, UInt32) in
            var millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
            var random = UInt32.random(in: 0 ... UInt32.max / 2)
            if millis == last.millis {
                let (next, overflow) = last.random.addingReportingOverflow(UInt32.random(in: 1 ... 1 << 16))
                if overflow {
                    millis += 1
                } else {
                    random = next
                }
            }
            if millis >= last.millis { last = (millis, random) }
            return (millis, random)
        }
        let hex = String(random, radix: 16)
        return "T" + String(millis, radix: 10) + "-" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    private static let lastID = Mutex<(millis: Int64, random: UInt32)>((0, 0))
}

/// Which transfers to list.
/// One recipient's line in a report: a delivery status notification (RFC 3464) gives Action and
/// Status, a disposition notification (RFC 8098) its Disposition.
public struct RecipientReport: Codable, Sendable, Hashable {
    public var recipient: String
    public var action: String?
    public var status: String?
    public var disposition: String?

    public init(recipient: String, action: String? = nil, status: String? = nil, disposition: String? = nil) {
        self.recipient = recipient
        self.action = action
        self.status = status
        self.disposition = disposition
    }

    /// The partner says it failed: an MDN's `processed/error` (or the older `failed`,
    /// `deleted`), or a DSN's `failed`.
    public var reportsFailure: Bool {
        if action?.lowercased() == "failed" { return true }
        guard let disposition = disposition?.lowercased() else { return false }
        let type = disposition.split(separator: ";").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return type.contains("/error") || type.hasPrefix("failed") || type.hasPrefix("deleted") || type.hasPrefix("denied")
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(recipient, forKey: .recipient)
        try container.encode(action, forKey: .action)
        try container.encode(status, forKey: .status)
        try container.encode(disposition, forKey: .disposition)
    }
}

public struct TransferFilter: Sendable, Hashable {
    public var site: String?
    public var type: TransferRecord.Kind?
    public var state: TransferRecord.State?
    public var since: Date?
    public var limit: Int?

    public init(site: String? = nil, type: TransferRecord.Kind? = nil, state: TransferRecord.State? = nil, since: Date? = nil, limit: Int? = nil) {
        self.site = site
        self.type = type
        self.state = state
        self.since = since
        self.limit = limit
    }
}

/// What the catalog knows about one message on a site's server.
public struct RetrievedMessage: Sendable, Hashable {
    public var uidl: String
    public var transferID: String
    /// True once a DELE for it was followed by a successful QUIT.
    public var deleted: Bool

    public init(uidl: String, transferID: String, deleted: Bool) {
        self.uidl = uidl
        self.transferID = transferID
        self.deleted = deleted
    }
}

/// What the catalog keeps about a site between polls. `enabled` is the operator's override of
/// the site file's `enabled:` (nil: the file decides).
public struct SiteState: Codable, Sendable, Hashable {
    public var site: String
    public var enabled: Bool?
    public var lastPoll: Date?
    public var lastSuccess: Date?
    public var lastError: String?
    public var nextPoll: Date?
    /// Totals over all polls.
    public var messages: Int64
    public var bytes: Int64

    public init(site: String, enabled: Bool? = nil, lastPoll: Date? = nil, lastSuccess: Date? = nil, lastError: String? = nil,
                nextPoll: Date? = nil, messages: Int64 = 0, bytes: Int64 = 0) {
        self.site = site
        self.enabled = enabled
        self.lastPoll = lastPoll
        self.lastSuccess = lastSuccess
        self.lastError = lastError
        self.nextPoll = nextPoll
        self.messages = messages
        self.bytes = bytes
    }
}

/// The spool catalog: transfer records and, per site, which server messages are already safe.
///
/// The one rule every implementation keeps: ``commitReceived(_:uidl:)`` stores the record and
/// marks the UIDL retrieved in one transaction, so a message is either fully recorded (and will
/// only be deleted, never fetched again) or not at all (and will be fetched again).
/// One received message as the catalog commits it: the record, its UIDL, the MDN it is owed.
public struct ReceivedTransfer: Sendable {
    public var record: TransferRecord
    public var uidl: String?
    public var acknowledgment: OutboxEntry?

    public init(record: TransferRecord, uidl: String?, acknowledgment: OutboxEntry? = nil) {
        self.record = record
        self.uidl = uidl
        self.acknowledgment = acknowledgment
    }
}

extension Catalog {
    public func transfersToDeliver() async throws -> [TransferRecord] {
        try await transfersToDeliver(at: Date())
    }

    public func commitReceived(_ record: TransferRecord, uidl: String?) async throws {
        try await commitReceived([ReceivedTransfer(record: record, uidl: uidl)])
    }

    public func commitReceived(_ record: TransferRecord, uidl: String?, acknowledgment: OutboxEntry?) async throws {
        try await commitReceived([ReceivedTransfer(record: record, uidl: uidl, acknowledgment: acknowledgment)])
    }
}

public protocol Catalog: Sendable {
    /// Messages of `site` already recorded, by UIDL.
    func retrievedMessages(site: String) async throws -> [String: RetrievedMessage]
    /// Stores a received transfer, its UIDL and the acknowledgment it is owed, atomically. An EERP
    /// whose Original-Message-ID names an outbound transfer acknowledges it in the same
    /// transaction (per Final-Recipient, with the disposition).
    ///
    /// Several messages go in one transaction (one fsync of the database for the batch).
    func commitReceived(_ batch: [ReceivedTransfer]) async throws
    /// Stores an outbound transfer and its message in the outbox, atomically.
    func commitOutbound(_ record: TransferRecord, message: OutboxEntry) async throws
    /// Pending outbox entries whose next attempt is due (of one site, or all).
    func dueOutbox(site: String?, at: Date) async throws -> [OutboxEntry]
    /// Takes a due entry for this process until `until`, so that two processes (a daemon and a
    /// `gatepost send`) never send the same message. False when another one has it, or it is
    /// no longer due.
    func claimOutbox(_ id: String, due: Date, until: Date) async throws -> Bool
    /// The server took the message: the entry is sent, and so is its transfer's acknowledgment
    /// (MDN) or the transfer itself (file). `refused` lists recipients the server refused for
    /// good; `followUp`, if any, is a new entry for those it refused for now (4xx), committed in
    /// the same transaction.
    func outboxSent(_ entry: OutboxEntry, at: Date, refused: [String], followUp: OutboxEntry?) async throws
    /// Failed entries of a transfer become pending again, due now (`gatepost catalog retry`);
    /// the transfer goes back to queued (a file) or its acknowledgment to requested (an MDN).
    /// Returns how many entries were requeued.
    func requeueOutbox(transferId: String, at: Date) async throws -> Int
    /// A failed attempt: tried again at `retryAt`, or given up (nil), which marks the
    /// acknowledgment or the outbound transfer failed.
    func outboxFailed(_ entry: OutboxEntry, error: String, retryAt: Date?) async throws
    func outbox(transferId: String) async throws -> [OutboxEntry]
    /// Whether any outbox entry names this message file.
    func outboxReferences(path: String) async throws -> Bool
    /// Transfers received before `before` (of one site, or all) that are done with: delivered,
    /// failed, acknowledged or sent (and reports and duplicates, which are never delivered), with
    /// no outgoing message still pending, not yet purged. RECOVER waits for an operator.
    func purgeCandidates(before: Date, site: String?) async throws -> [TransferRecord]
    /// Records that `id`'s files are gone: `path` and `messageText` become nil, `purgedAt` is set. The row
    /// stays (the audit trail, and the UIDL that keeps the message from being fetched again).
    func markPurged(id: String, at: Date) async throws
    /// Inbound transfers not yet delivered: state received (to route) or routed (to deliver),
    /// except those whose next delivery attempt is still in the future.
    func transfersToDeliver(at now: Date) async throws -> [TransferRecord]
    /// How many delivery attempts of this transfer have failed so far.
    func deliveryAttempts(id: String) async throws -> Int
    /// A failed attempt that will be tried again at `at`: the transfer stays routed, with the error.
    func scheduleDeliveryRetry(id: String, application: String, error: String, at: Date) async throws
    /// Sets a transfer's state, application, error and delivered path in one update.
    func updateDelivery(id: String, state: TransferRecord.State, application: String?, error: String?, deliveredPath: String?) async throws
    /// The delivery target chosen for a transfer before its file was linked into place, so a
    /// crash between the link and the state update is recognized and not delivered twice.
    func deliveryTarget(id: String) async throws -> String?
    func recordDeliveryTarget(id: String, application: String, target: String) async throws

    /// Per-site state, by site name.
    func siteStates() async throws -> [String: SiteState]
    /// Persists an operator's enable/disable; a running daemon picks it up.
    func setSiteEnabled(_ site: String, enabled: Bool) async throws
    /// Records one poll's outcome: `error` nil for success; counts are added to the totals.
    func recordPoll(site: String, at: Date, error: String?, messages: Int, bytes: Int64, nextPoll: Date?) async throws

    /// Records that the server applied our DELEs for these UIDLs (after QUIT succeeded).
    func markDeleted(site: String, uidls: [String]) async throws
    /// The id of an inbound transfer of `site` with this Message-ID, if any.
    func transferID(site: String, messageId: String) async throws -> String?
    /// The id of an inbound transfer of `site` whose whole message had this SHA-256, if any:
    /// how a message without a Message-ID is recognized when it comes again.
    func transferID(site: String, messageSha256: String) async throws -> String?
    func transfers(_ filter: TransferFilter) async throws -> [TransferRecord]
    func transfer(id: String) async throws -> TransferRecord?
}
