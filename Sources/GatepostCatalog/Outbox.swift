import Foundation
import GRDB

/// One message waiting to go out over SMTP: an acknowledgment (MDN) of a received transfer, or
/// an outbound file. It is written in the same transaction as the record it belongs to, so a
/// crash never leaves an acknowledgment owed but forgotten, and the sender delivers it later
/// with retries.
public struct OutboxEntry: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable, Hashable {
        /// An RFC 8098 MDN for the inbound transfer `transferId`.
        case acknowledgment
        /// The outbound transfer `transferId` itself.
        case file
    }

    public enum State: String, Codable, Sendable, Hashable {
        case pending, sent, failed
    }

    public var id: String
    public var kind: Kind
    public var transferId: String
    public var site: String
    /// Envelope sender (MAIL FROM).
    public var mailFrom: String
    /// Envelope recipients (RCPT TO).
    public var recipients: [String]
    /// The message file, ready to send (CRLF line endings).
    public var path: String
    public var messageId: String
    public var state: State
    public var attempts: Int
    public var nextAttempt: Date
    public var lastError: String?
    public var createdAt: Date
    public var sentAt: Date?

    public init(
        id: String, kind: Kind, transferId: String, site: String, mailFrom: String, recipients: [String],
        path: String, messageId: String, state: State = .pending, attempts: Int = 0, nextAttempt: Date = Date(),
        lastError: String? = nil, createdAt: Date = Date(), sentAt: Date? = nil
    ) {
        self.id = id
        self.kind = kind
        self.transferId = transferId
        self.site = site
        self.mailFrom = mailFrom
        self.recipients = recipients
        self.path = path
        self.messageId = messageId
        self.state = state
        self.attempts = attempts
        self.nextAttempt = nextAttempt
        self.lastError = lastError
        self.createdAt = createdAt
        self.sentAt = sentAt
    }
}

/// The row form of an outbox entry: recipients as a JSON array.
struct StoredOutboxEntry: Codable, FetchableRecord {
    static let databaseTableName = "outbox"

    var id: String
    var kind: String
    var transferId: String
    var site: String
    var mailFrom: String
    var recipients: String
    var path: String
    var messageId: String
    var state: String
    var attempts: Int
    var nextAttempt: Date
    var lastError: String?
    var createdAt: Date
    var sentAt: Date?

    init(_ entry: OutboxEntry) {
        id = entry.id
        kind = entry.kind.rawValue
        transferId = entry.transferId
        site = entry.site
        mailFrom = entry.mailFrom
        recipients = String(decoding: (try? JSONEncoder().encode(entry.recipients)) ?? Data("[]".utf8), as: UTF8.self)
        path = entry.path
        messageId = entry.messageId
        state = entry.state.rawValue
        attempts = entry.attempts
        nextAttempt = entry.nextAttempt
        lastError = entry.lastError
        createdAt = entry.createdAt
        sentAt = entry.sentAt
    }

    var entry: OutboxEntry {
        OutboxEntry(
            id: id, kind: OutboxEntry.Kind(rawValue: kind) ?? .acknowledgment, transferId: transferId, site: site,
            mailFrom: mailFrom, recipients: (try? JSONDecoder().decode([String].self, from: Data(recipients.utf8))) ?? [],
            path: path, messageId: messageId, state: OutboxEntry.State(rawValue: state) ?? .pending, attempts: attempts,
            nextAttempt: nextAttempt, lastError: lastError, createdAt: createdAt, sentAt: sentAt
        )
    }
}
