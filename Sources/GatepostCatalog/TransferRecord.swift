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
        /// A probe this gateway sent to the mailbox it polls, come back: proof the whole path
        /// works. Never routed.
        case probe = "PROBE"
    }

    public enum State: String, Codable, Sendable, Hashable, CaseIterable {
        /// Outbound: waiting in the outbox.
        case queued
        case received, routed
        /// Inbound: delivered to its application. Outbound: a delivery status notification
        /// (RFC 3464) says every recipient's server has it; the partner's acknowledgment is
        /// still to come.
        case delivered
        case failed, sent, acknowledged
        /// Outbound: no acknowledgment within the site's `ack_timeout` of being sent. A late
        /// acknowledgment still closes it.
        case overdue
    }

    public enum Acknowledgment: String, Codable, Sendable, Hashable, CaseIterable {
        case none, requested, sent, failed, received
    }

    /// The FILE_NAME of a message that did not fit a class and is kept whole.
    public static let recoverFileName = "RECOVER"
    /// The FILE_NAME of a message whose Message-ID this site already delivered.
    public static let duplicateFileName = "DUPLICATE"
    /// The FILE_NAMEs of messages kept whole.
    public static let keptWholeFileNames: Set<String> = [recoverFileName, duplicateFileName]

    /// Its kept file is the whole message as received (RECOVER or DUPLICATE).
    public var keptWhole: Bool {
        direction == .inbound && fileName.map(Self.keptWholeFileNames.contains) == true
    }

    /// The name a message kept whole is saved under (delivered or downloaded):
    /// `RECOVER-<id>.eml`; nil for anything else.
    public var wholeMessageFileName: String? {
        guard keptWhole, let fileName else { return nil }
        return "\(fileName)-\(id).eml"
    }

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
    /// For EERP: the `Original-Envelope-Id` of a delivery status notification (RFC 3464): the
    /// ENVID Gatepost gave the outbound transfer, its id.
    public var originalEnvelopeId: String?
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
    /// Why a received message got its type and FILE_NAME ("one attached file", "2 attached files
    /// in one message", ...): the classification's reason, kept apart from `error`.
    public var classification: String?
    /// How the message was signed ("S/MIME (application/pkcs7-signature)"), when it was; the
    /// signed content was classified as if unsigned. Not a verification.
    public var signature: String?
    /// S/MIME's evidence (decrypted, signed by whom, MICs and the signed receipt), when any.
    public var security: MessageSecurity?
    /// The node (`gatepost run --node`) whose spool holds the files, when several nodes share
    /// the catalog; nil for a gateway of one node.
    public var node: String?

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
        messageText: String? = nil,
        classification: String? = nil,
        signature: String? = nil,
        originalEnvelopeId: String? = nil,
        security: MessageSecurity? = nil,
        node: String? = nil
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
        self.classification = classification
        self.signature = signature
        self.originalEnvelopeId = originalEnvelopeId
        self.security = security
        self.node = node
    }

    private enum CodingKeys: String, CodingKey {
        case id, direction, type, fileName, site, application, state, messageId, uidl, sender, recipients, subject
        case size, sha256, path, receivedAt, ack, error, originalMessageId, disposition, deliveredPath
        case messageSha256, recipientReports, ackMessageId, purgedAt, messageText, classification, signature
        case originalEnvelopeId, security, node
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
        try container.encode(classification, forKey: .classification)
        try container.encode(signature, forKey: .signature)
        try container.encode(originalEnvelopeId, forKey: .originalEnvelopeId)
        try container.encode(security, forKey: .security)
        try container.encode(node, forKey: .node)
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

    /// A DSN says the recipient's server has it: `delivered`, or passed on where no report
    /// will come from (`relayed`, `expanded`).
    public var reportsDelivery: Bool {
        guard let action = action?.lowercased() else { return false }
        return ["delivered", "relayed", "expanded"].contains(action)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(recipient, forKey: .recipient)
        try container.encode(action, forKey: .action)
        try container.encode(status, forKey: .status)
        try container.encode(disposition, forKey: .disposition)
    }
}

/// Which transfers to list. Every condition given must hold; nil ones do not filter.
public struct TransferFilter: Sendable, Hashable {
    public var site: String?
    public var type: TransferRecord.Kind?
    public var state: TransferRecord.State?
    public var direction: TransferRecord.Direction?
    /// Received at or after.
    public var since: Date?
    /// Received strictly before.
    public var before: Date?
    /// True: only transfers whose files were purged; false: only those not purged.
    public var purged: Bool?
    /// True: only messages kept whole (FILE_NAME RECOVER or DUPLICATE); false: none of them.
    public var keptWhole: Bool?
    public var fileName: TextPattern?
    public var sender: TextPattern?
    public var subject: TextPattern?
    /// Any of file name, sender and subject (the console's one search box).
    public var anyText: TextPattern?
    /// Newest first (by `receivedAt`, then `id`, both descending) instead of oldest first.
    public var newestFirst: Bool
    /// Only transfers after this one in the order chosen: the next page after a page that
    /// ended with it.
    public var after: TransferCursor?
    public var limit: Int?

    public init(
        site: String? = nil, type: TransferRecord.Kind? = nil, state: TransferRecord.State? = nil, since: Date? = nil,
        before: Date? = nil, purged: Bool? = nil, limit: Int? = nil, direction: TransferRecord.Direction? = nil,
        keptWhole: Bool? = nil, fileName: TextPattern? = nil, sender: TextPattern? = nil, subject: TextPattern? = nil,
        newestFirst: Bool = false, after: TransferCursor? = nil
    ) {
        self.site = site
        self.type = type
        self.state = state
        self.since = since
        self.before = before
        self.purged = purged
        self.limit = limit
        self.direction = direction
        self.keptWhole = keptWhole
        self.fileName = fileName
        self.sender = sender
        self.subject = subject
        self.newestFirst = newestFirst
        self.after = after
    }

    /// The types operators list by: XFER (files, not messages kept whole), MSG, EERP, and
    /// RECOVER and DUPLICATE (XFERs kept whole). False when `name` is none of them.
    public mutating func narrow(toListedType name: String) -> Bool {
        switch name.uppercased() {
        case "XFER": (type, keptWhole) = (.xfer, false)
        case "MSG": type = .msg
        case "EERP": type = .eerp
        case "PROBE": type = .probe
        case TransferRecord.recoverFileName: (type, fileName) = (.xfer, .exactly(TransferRecord.recoverFileName))
        case TransferRecord.duplicateFileName: (type, fileName) = (.xfer, .exactly(TransferRecord.duplicateFileName))
        default: return false
        }
        return true
    }

    /// Whether `record` comes before `other` in this filter's order.
    public func orders(_ record: TransferRecord, before other: TransferRecord) -> Bool {
        let key = (record.receivedAt, record.id), otherKey = (other.receivedAt, other.id)
        return newestFirst ? key > otherKey : key < otherKey
    }

    /// Whether `record` passes every condition but `limit`: the in-memory catalog's filter, and
    /// what the SQL one means.
    func matches(_ record: TransferRecord) -> Bool {
        if let site, record.site != site { return false }
        if let type, record.type != type { return false }
        if let state, record.state != state { return false }
        if let since, record.receivedAt < since { return false }
        if let before, record.receivedAt >= before { return false }
        if let purged, (record.purgedAt != nil) != purged { return false }
        if let direction, record.direction != direction { return false }
        if let keptWhole, TransferRecord.keptWholeFileNames.contains(record.fileName ?? "") != keptWhole { return false }
        if let fileName, !fileName.matches(record.fileName) { return false }
        if let sender, !sender.matches(record.sender) { return false }
        if let subject, !subject.matches(record.subject) { return false }
        if let anyText, ![record.fileName, record.sender, record.subject].contains(where: anyText.matches) { return false }
        if let after {
            let key = (record.receivedAt, record.id), cursor = (after.receivedAt, after.id)
            if newestFirst ? key >= cursor : key <= cursor { return false }
        }
        return true
    }
}

/// A place in a list of transfers: the last one of a page, from which the next page goes on.
/// As text (for a URL) it is opaque to the caller but not a secret.
public struct TransferCursor: Sendable, Hashable {
    public var receivedAt: Date
    public var id: String

    public init(receivedAt: Date, id: String) {
        self.receivedAt = receivedAt
        self.id = id
    }

    public init(after record: TransferRecord) {
        self.init(receivedAt: record.receivedAt, id: record.id)
    }

    /// `<seconds since 1970, exactly as stored>_<id>`
    public var text: String {
        "\(receivedAt.timeIntervalSince1970)_\(id)"
    }

    public init?(text: String) {
        guard let separator = text.firstIndex(of: "_"), let seconds = Double(text[..<separator]), seconds.isFinite else { return nil }
        let id = String(text[text.index(after: separator)...])
        guard !id.isEmpty, id.count <= 64 else { return nil }
        self.init(receivedAt: Date(timeIntervalSince1970: seconds), id: id)
    }
}

/// What the catalog knows about one message on a site's server.
public struct RetrievedMessage: Sendable, Hashable {
    public var uidl: String
    public var transferID: String
    /// True once a DELE for it was followed by a successful QUIT.
    public var deleted: Bool
    /// What identifies the message recorded under this UIDL, for a later poll to tell it from
    /// another message a server lists under the same UIDL: its Message-ID and the size LIST
    /// gave it (nil where unknown, as for rows of catalogs older than this field).
    public var messageId: String?
    public var listedSize: Int64?

    public init(uidl: String, transferID: String, deleted: Bool, messageId: String? = nil, listedSize: Int64? = nil) {
        self.uidl = uidl
        self.transferID = transferID
        self.deleted = deleted
        self.messageId = messageId
        self.listedSize = listedSize
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
    /// Messages the polls went past because they could not be retrieved.
    public var skipped: [SkippedMessage]
    /// The error in the site's file since it was last edited badly, while the daemon runs the
    /// last good version of it; nil when the file is fine.
    public var configurationError: String?
    public var configurationErrorSince: Date?
    /// Polls in a row that failed: 0 after a success.
    public var failuresInARow: Int
    /// The kind of the last failure (authentication, tls, connection...) while it lasts.
    public var lastErrorCategory: String?
    /// When the site was first polled: the watch over its expected files starts there.
    public var firstPoll: Date?
    /// When the POP3 server's TLS certificate expires, as the last poll that saw it says.
    public var serverCertificateExpires: Date?

    public init(site: String, enabled: Bool? = nil, lastPoll: Date? = nil, lastSuccess: Date? = nil, lastError: String? = nil,
                nextPoll: Date? = nil, messages: Int64 = 0, bytes: Int64 = 0, skipped: [SkippedMessage] = [],
                configurationError: String? = nil, configurationErrorSince: Date? = nil,
                failuresInARow: Int = 0, lastErrorCategory: String? = nil, firstPoll: Date? = nil,
                serverCertificateExpires: Date? = nil) {
        self.serverCertificateExpires = serverCertificateExpires
        self.failuresInARow = failuresInARow
        self.lastErrorCategory = lastErrorCategory
        self.firstPoll = firstPoll
        self.configurationError = configurationError
        self.configurationErrorSince = configurationErrorSince
        self.site = site
        self.enabled = enabled
        self.lastPoll = lastPoll
        self.lastSuccess = lastSuccess
        self.lastError = lastError
        self.nextPoll = nextPoll
        self.messages = messages
        self.bytes = bytes
        self.skipped = skipped
    }
}

/// A message a poll could not retrieve (RETR refused, or larger than `max_message_size` though
/// LIST said otherwise) and went past, so that one bad message does not block a mailbox. It is
/// tried again at every poll; `polls` counts the polls in a row that could not retrieve it.
public struct SkippedMessage: Codable, Sendable, Hashable {
    public var uidl: String
    public var number: Int
    public var reason: String
    public var firstSkipped: Date
    public var lastSkipped: Date
    public var polls: Int

    public init(uidl: String, number: Int, reason: String, at: Date, polls: Int = 1) {
        self.uidl = uidl
        self.number = number
        self.reason = reason
        firstSkipped = at
        lastSkipped = at
        self.polls = polls
    }

    /// The skips after a poll: each message skipped again keeps when it was first skipped and
    /// counts one poll more. When the poll went through the whole listing (`complete`), a
    /// message it did not skip was retrieved or is gone, and leaves the list; otherwise what the
    /// poll did not reach stays as it was.
    public static func merge(_ previous: [SkippedMessage], with skipped: [SkippedMessage], complete: Bool) -> [SkippedMessage] {
        let earlier = Dictionary(previous.map { ($0.uidl, $0) }, uniquingKeysWith: { first, _ in first })
        var merged = skipped.map { skip in
            guard let before = earlier[skip.uidl] else { return skip }
            var again = skip
            again.firstSkipped = before.firstSkipped
            again.polls = before.polls + 1
            return again
        }
        if !complete {
            let now = Set(skipped.map(\.uidl))
            merged += previous.filter { !now.contains($0.uidl) }
        }
        return merged
    }
}
