import Foundation

// The catalog contract, one protocol per role. Every store (SQLiteCatalog, InMemoryCatalog, a
// PostgreSQL one) keeps it to the letter; Tests/GatepostCatalogTests run the same tests against
// each. What holds for every method:
//
// - Atomic: a method's effects happen all together or, when it throws, not at all, and no other
//   caller (in this process or another on the same catalog) sees them in part.
// - Ids are unique: a transfer's id, an outbox entry's id, a UIDL within its site. Inserting one
//   that exists throws (and so, by the rule above, stores nothing of the call).
// - Times are kept to the millisecond at least; callers do not depend on finer.
// - An update naming a row that does not exist changes nothing and does not throw, unless its
//   documentation says it throws.
// - Lists of transfers are ordered by `receivedAt`, then `id`; lists of outbox entries by
//   `createdAt`, then `id`.
// - What a report, a send or a requeue does to a transfer is decided by ``AcknowledgmentRules``
//   and ``OutboxRules``, not by the store: it reads the transfer, applies the rule and writes the
//   result, in the same transaction.

/// One received message as the catalog commits it: the record, its UIDL, the MDN it is owed.
public struct ReceivedTransfer: Sendable {
    public var record: TransferRecord
    public var uidl: String?
    public var acknowledgment: OutboxEntry?
    /// The size LIST gave the message, kept with its UIDL.
    public var listedSize: Int64?
    /// The transfer an earlier message under the same UIDL was recorded as, when the server
    /// reuses a UIDL for a new message (the poll checked that the message is not that one):
    /// the UIDL's row then names this transfer instead, if it still names that one.
    public var replacing: String?

    public init(
        record: TransferRecord, uidl: String?, acknowledgment: OutboxEntry? = nil,
        listedSize: Int64? = nil, replacing: String? = nil
    ) {
        self.record = record
        self.uidl = uidl
        self.acknowledgment = acknowledgment
        self.listedSize = listedSize
        self.replacing = replacing
    }
}

/// A received item ``TransferStore/commitReceived(_:)`` left out: its message was recorded
/// before, under the same Message-ID, as `transferId`.
public struct RecordedBefore: Sendable, Hashable {
    /// The left-out item's record id.
    public var id: String
    public var site: String
    public var messageId: String
    /// The transfer the site's Message-ID is claimed by.
    public var transferId: String
    /// The site has the item's UIDL recorded already, for another transfer than the one the
    /// item replaces: another poller took this very message (two nodes polled the site at
    /// once). It is recorded; the server may delete it, and there is nothing to take again.
    public var uidlRecorded: Bool

    public init(id: String, site: String, messageId: String, transferId: String, uidlRecorded: Bool = false) {
        self.id = id
        self.site = site
        self.messageId = messageId
        self.transferId = transferId
        self.uidlRecorded = uidlRecorded
    }
}

/// A UIDL of a site.
public struct SiteUIDL: Sendable, Hashable {
    public var site: String
    public var uidl: String

    public init(site: String, uidl: String) {
        self.site = site
        self.uidl = uidl
    }
}

/// A site's claim on a Message-ID: the first transfer recorded with it.
public struct MessageClaimKey: Sendable, Hashable {
    public var site: String
    public var messageId: String

    public init(site: String, messageId: String) {
        self.site = site
        self.messageId = messageId
    }
}

/// What a store does with a received batch's Message-IDs, decided here once for every store:
/// which items are left out because their Message-ID was claimed before the batch, and which
/// claims the stored items make.
///
/// An item takes part when it is inbound, has a Message-ID and is not a DUPLICATE (a DUPLICATE
/// names the first transfer; it never claims, and is never left out). Of the batch's items with
/// a Message-ID not claimed before, the earliest received (then the lowest id) claims it; the
/// others with it (the siblings of a message split into several transfers) are stored too, as
/// they are left out together when it was claimed before. A returned probe (PROBE) is stored
/// even then, without a claim: the message this gateway sent came back, whatever took its
/// Message-ID before (the poll records a copy of a message recorded before as a DUPLICATE, but a
/// probe as the PROBE it is).
public struct ReceivedBatchPlan: Sendable {
    /// The items to store, in order.
    public var stored: [ReceivedTransfer] = []
    /// The claims to insert, each a key not claimed before the batch (a clash with a claim made
    /// meanwhile, by another node, must throw: that is what keeps a message from being recorded
    /// twice when two nodes poll one site).
    public var claims: [(key: MessageClaimKey, transferId: String)] = []
    public var leftOut: [RecordedBefore] = []
    /// The left-out items, in the order of `leftOut`.
    private var leftOutItems: [ReceivedTransfer] = []

    /// The left-out items' UIDLs: a store looks them up and gives ``noteRecordedUIDLs(_:)``
    /// the transfer each one's row names.
    public var leftOutUIDLs: [SiteUIDL] {
        leftOutItems.compactMap { item in item.uidl.map { SiteUIDL(site: item.record.site, uidl: $0) } }
    }

    /// Marks the left-out items whose UIDL the site has for another transfer than the one they
    /// replace (``RecordedBefore/uidlRecorded``). `rows`: the transfer each recorded UIDL names.
    public mutating func noteRecordedUIDLs(_ rows: [SiteUIDL: String]) {
        for (index, item) in leftOutItems.enumerated() {
            guard let uidl = item.uidl, let named = rows[SiteUIDL(site: item.record.site, uidl: uidl)] else { continue }
            leftOut[index].uidlRecorded = named != item.replacing
        }
    }

    /// The keys a store looks up before planning: those of the items that take part.
    public static func keys(of batch: [ReceivedTransfer]) -> [MessageClaimKey] {
        var seen = Set<MessageClaimKey>()
        return batch.compactMap(key).filter { seen.insert($0).inserted }
    }

    /// - Parameter claimed: the claims among `keys(of: batch)` made before the batch: the
    ///   transfer each names.
    public init(_ batch: [ReceivedTransfer], claimed: [MessageClaimKey: String]) {
        var claimants: [MessageClaimKey: TransferRecord] = [:]
        var order: [MessageClaimKey] = []
        // A probe's message is stored whole, its siblings (if any) with it.
        let probes = Set(batch.filter { $0.record.type == .probe }.compactMap(Self.key))
        for item in batch {
            guard let key = Self.key(item) else {
                stored.append(item)
                continue
            }
            if let earlier = claimed[key] {
                if probes.contains(key) {
                    stored.append(item)
                } else {
                    leftOut.append(RecordedBefore(id: item.record.id, site: key.site, messageId: key.messageId, transferId: earlier))
                    leftOutItems.append(item)
                }
                continue
            }
            stored.append(item)
            if let claimant = claimants[key] {
                if (item.record.receivedAt, item.record.id) < (claimant.receivedAt, claimant.id) { claimants[key] = item.record }
            } else {
                claimants[key] = item.record
                order.append(key)
            }
        }
        claims = order.compactMap { key in claimants[key].map { (key, $0.id) } }
    }

    private static func key(_ item: ReceivedTransfer) -> MessageClaimKey? {
        let record = item.record
        guard record.direction == .inbound, let messageId = record.messageId, record.fileName != TransferRecord.duplicateFileName
        else { return nil }
        return MessageClaimKey(site: record.site, messageId: messageId)
    }
}

/// Transfer records: received and outbound, their delivery, and the purge of their files.
public protocol TransferStore: Sendable {
    /// Stores a batch of received messages in one transaction (one fsync of the database for the
    /// batch), each item in order: its record; its UIDL as retrieved and not deleted, if it has
    /// one; the acknowledgment entry it is owed, if any. A report closes the outbound transfer it
    /// ``AcknowledgmentRules/answers(_:outbound:)`` (the first one in order: the transfer
    /// whose id is the report's envelope id, else one with its Message-ID), in the same
    /// transaction: it becomes what ``AcknowledgmentRules/close(outbound:report:)`` returns
    /// (and stays as it is for nil).
    ///
    /// The one rule the poll relies on: a message is either fully recorded (and will only be
    /// deleted, never fetched again) or not at all (and will be fetched again). So a record id,
    /// a UIDL of the site or an entry id that exists already (or twice in the batch), or an
    /// entry for a transfer that is not stored, throws, and nothing of the batch is stored. An
    /// empty batch does nothing. The one exception is a UIDL the server reused: an item with
    /// ``ReceivedTransfer/replacing`` takes over the UIDL's row (not deleted, its new size) if
    /// that row still names the transfer it replaces, and throws like a clash otherwise, so
    /// that two pollers can never both record a message.
    ///
    /// A message is recorded once per site: the first inbound record with a Message-ID claims it
    /// for the site (``transferID(site:messageId:)`` answers with that record from then on). An
    /// item whose Message-ID the site claimed before this batch is left out, with its UIDL and
    /// acknowledgment, unless it is a DUPLICATE or a returned PROBE (the rule:
    /// ``ReceivedBatchPlan``); the rest of
    /// the batch is stored, and the left-out items are returned. A claim made meanwhile by
    /// another caller throws like a UIDL clash. So a message that two nodes take (a lease that
    /// broke) is recorded once: the poll that finds its message left out with its UIDL recorded
    /// (``RecordedBefore/uidlRecorded``) deletes it; one that finds a copy of a message recorded
    /// before keeps it on the server and takes it again as the DUPLICATE it is.
    @discardableResult
    func commitReceived(_ batch: [ReceivedTransfer]) async throws -> [RecordedBefore]
    /// Stores an outbound transfer and the outbox entry that sends it, in one transaction. Throws
    /// (storing neither) when either id exists, or the entry names a transfer that is not stored.
    func commitOutbound(_ record: TransferRecord, message: OutboxEntry) async throws

    /// The transfers `filter` selects, in order, at most `filter.limit` of them.
    func transfers(_ filter: TransferFilter) async throws -> [TransferRecord]
    func transfer(id: String) async throws -> TransferRecord?
    /// Per site, how many inbound transfers were received at or after `since` (sites with none
    /// are left out): the dashboard's volume, without reading the records.
    func inboundCounts(since: Date) async throws -> [String: Int]
    /// The transfer that claimed this Message-ID for `site` (its first inbound record with it),
    /// if any.
    func transferID(site: String, messageId: String) async throws -> String?
    /// Whether each lookup is a round trip to a server (PostgreSQL): a poll then leaves finding
    /// a message recorded before to the batch's commit (``commitReceived(_:)`` leaves it out)
    /// instead of asking once per message. A store in this process answers in microseconds.
    var lookupsAreRemote: Bool { get }
    /// The id of the earliest received inbound transfer of `site` whose whole message had this
    /// SHA-256, if any: how a message without a Message-ID is recognized when it comes again.
    func transferID(site: String, messageSha256: String) async throws -> String?

    /// Inbound transfers in a state of ``TransferRecord/State/awaitingDelivery``, in order,
    /// except those whose next delivery attempt (a ``DeliveryAttempt/Outcome/retrying``
    /// attempt's `retryAt`) is after `now`.
    func transfersToDeliver(at now: Date) async throws -> [TransferRecord]
    /// Takes the delivery of transfer `id` for the caller until `until`, if it is inbound,
    /// waits for delivery and is due at `due` (no attempt planned after `due`): true when
    /// taken. The claim is the transfer's next attempt (`transfersToDeliver(at:)` leaves it out
    /// until then): a retrying attempt's next try replaces it, a final outcome takes the
    /// transfer out of the deliveries (the claim stays, unused). Nodes sharing a catalog claim each
    /// delivery, so that one transfer is delivered by one of them, and one that dies while
    /// delivering lets the transfer go at `until`.
    func claimDelivery(id: String, due: Date, until: Date) async throws -> Bool
    /// How many delivery attempts of this transfer failed to be tried again: the number of
    /// ``DeliveryAttempt/Outcome/retrying`` attempts recorded for it, 0 for none. Never reset.
    func deliveryAttempts(id: String) async throws -> Int
    /// Records how an attempt to deliver `id` ended, in one transaction: the attempt is appended
    /// to the transfer's delivery history, and the transfer goes to `attempt.application` with
    /// its outcome: `delivered` (with the delivered path, no error), `failed` (with the error),
    /// or, for `retrying`, `routed` with the error, its failed attempts one more and its next
    /// attempt at `attempt.retryAt` (at once when nil). Throws when no transfer has this id.
    func recordDeliveryAttempt(id: String, _ attempt: DeliveryAttempt) async throws
    /// The delivery attempts recorded for `id`, oldest first.
    func deliveryHistory(id: String) async throws -> [DeliveryAttempt]
    /// Sets a transfer's state, application, error and delivered path in one update (nil clears
    /// a field).
    func updateDelivery(id: String, state: TransferRecord.State, application: String?, error: String?, deliveredPath: String?) async throws
    /// The delivery target last recorded for a transfer, if any.
    func deliveryTarget(id: String) async throws -> String?
    /// Records the target chosen for a transfer before its file is linked into place, so that a
    /// crash between the link and the state update is recognized and not delivered twice.
    /// Replaces an earlier target. Throws when no transfer has this id.
    func recordDeliveryTarget(id: String, application: String, target: String) async throws

    /// The outbound transfers of `site` that ``AcknowledgmentRules/overdue(_:)`` moves on, when
    /// their file's last outbox entry was sent before `sentBefore`, in one transaction; returns
    /// them as they now are, in order.
    func markOverdue(site: String, sentBefore: Date) async throws -> [TransferRecord]

    /// Records that `id`'s files are gone: `path` and `messageText` become nil, `purgedAt` is
    /// `at`. The row stays (the audit trail, and the UIDL that keeps the message from being
    /// fetched again).
    func markPurged(id: String, at: Date) async throws
}

/// Per site, which messages on its server are already safe in the catalog.
public protocol UIDLStore: Sendable {
    /// Messages of `site` already recorded, by UIDL.
    func retrievedMessages(site: String) async throws -> [String: RetrievedMessage]
    /// Records that the server applied our DELEs for these UIDLs (after QUIT succeeded). UIDLs
    /// the site has no record of are passed over.
    func markDeleted(site: String, uidls: [String]) async throws
}

/// What is kept about each site between polls.
public protocol SiteStateStore: Sendable {
    /// The state of every site ever polled or enabled or disabled, by site name.
    func siteStates() async throws -> [String: SiteState]
    /// Persists an operator's enable/disable (creating the site's state if need be; nothing else
    /// in it changes); a running daemon picks it up.
    func setSiteEnabled(_ site: String, enabled: Bool) async throws
    /// Records one poll's outcome (creating the site's state if need be): `lastPoll` becomes
    /// `at`, `lastError` becomes `error` and `lastErrorCategory` `errorCategory`, `nextPoll`
    /// becomes `nextPoll` (nil clears it), the counts are added to the totals, `firstPoll`
    /// becomes `at` if it was nil; when `error` is nil `lastSuccess` becomes `at` and
    /// `failuresInARow` 0, else `failuresInARow` grows by one; `serverCertificateExpires`
    /// becomes the one given unless it is nil (a poll that did not get as far keeps the last).
    func recordPoll(
        site: String, at: Date, error: String?, errorCategory: String?, messages: Int, bytes: Int64, nextPoll: Date?,
        serverCertificateExpires: Date?
    ) async throws
    /// Records the messages one poll went past (creating the site's state if need be): the
    /// site's `skipped` becomes ``SkippedMessage/merge(_:with:complete:)`` of what it was and
    /// `skipped`, in one transaction.
    func recordSkips(site: String, skipped: [SkippedMessage], complete: Bool) async throws
    /// Records that the site's file has `error` while the last good version of it runs (nil:
    /// the file is fine again). `configurationErrorSince` becomes `at` when the error appears,
    /// and stays while it lasts (an edit that changes the error keeps the first time).
    func recordConfigurationError(site: String, error: String?, at: Date) async throws
}

/// Messages waiting to go out over SMTP (MDNs and outbound files), claimed with leases so that
/// two processes (a daemon and a `gatepost send`) never send the same one at once.
public protocol OutboxStore: Sendable {
    /// Pending entries (of one site, or all) whose next attempt is at or before `at`, in order.
    func dueOutbox(site: String?, at: Date) async throws -> [OutboxEntry]
    /// Takes a due entry until `until` (a lease): a compare-and-set that moves its next attempt
    /// to `until` if it is still pending with its next attempt at or before `due`. True for
    /// exactly one of any number of concurrent callers; false when another one has it, or it is
    /// no longer due. If the holder dies, the entry is due again when the lease ends.
    func claimOutbox(_ id: String, due: Date, until: Date) async throws -> Bool
    /// The server took the message, in one transaction: the entry (found by id) is sent at `at`,
    /// its attempts grow by one, its `lastError` is ``OutboxRules/refusalNote(_:)`` of `refused`
    /// (the recipients the server refused for good); `followUp`, if any, is inserted (a new
    /// entry for those refused for now, 4xx); the entry's transfer becomes what
    /// ``OutboxRules/sent(_:entry:refused:)`` returns. Throws when `followUp`'s id exists or its
    /// transfer is not stored.
    func outboxSent(_ entry: OutboxEntry, at: Date, refused: [String], followUp: OutboxEntry?) async throws
    /// A failed attempt, in one transaction; the entry's attempts grow by one and its
    /// `lastError` is `error`. With `retryAt` the entry stays pending, next tried at `retryAt`,
    /// and the transfer is untouched; with nil it is given up: the entry fails and its transfer
    /// becomes what ``OutboxRules/givenUp(_:entry:error:)`` returns.
    func outboxFailed(_ entry: OutboxEntry, error: String, retryAt: Date?) async throws
    /// The failed entries of a transfer become pending again (`gatepost catalog retry`), in one
    /// transaction: due at `at`, created at `at` (their time to fail for good counts from now),
    /// no `lastError`; if there were any, the transfer becomes what
    /// ``OutboxRules/requeued(_:)`` returns. Returns how many entries were requeued.
    func requeueOutbox(transferId: String, at: Date) async throws -> Int
    /// The entries of a transfer, in any state, in order.
    func outbox(transferId: String) async throws -> [OutboxEntry]
    /// Entries in `state` (any when nil), newest first (by `createdAt`, then `id`), at most
    /// `limit`: the console's view of the outbox.
    func outboxEntries(state: OutboxEntry.State?, limit: Int) async throws -> [OutboxEntry]
    /// Whether an entry, in any state, names this message file.
    func outboxReferences(path: String) async throws -> Bool
}

/// Who did what to which site or transfer, and when: every operator action, from the console,
/// the API or the command line.
public protocol AuditStore: Sendable {
    /// Appends `action` (its id is assigned: ids grow with each action recorded).
    func recordOperatorAction(_ action: OperatorAction) async throws
    /// The actions on `site` (every one naming it, including those on its transfers) or on
    /// `transferId`, or all of them when both are nil; newest first, at most `limit`.
    func operatorActions(site: String?, transferId: String?, limit: Int) async throws -> [OperatorAction]
}

/// The spool catalog: every role, in one store, so that a commit spanning roles (a record, its
/// UIDL and its MDN) is one transaction.
public protocol Catalog: TransferStore, UIDLStore, SiteStateStore, OutboxStore, AuditStore, AlertStore, ProbeStore, LeaseStore {}

extension TransferStore {
    public var lookupsAreRemote: Bool { false }
}

extension SiteStateStore {
    /// A poll's outcome that says nothing of the server's certificate.
    public func recordPoll(site: String, at: Date, error: String?, errorCategory: String?, messages: Int, bytes: Int64, nextPoll: Date?) async throws {
        try await recordPoll(
            site: site, at: at, error: error, errorCategory: errorCategory, messages: messages, bytes: bytes, nextPoll: nextPoll,
            serverCertificateExpires: nil
        )
    }
}

extension TransferStore {
    public func transfersToDeliver() async throws -> [TransferRecord] {
        try await transfersToDeliver(at: Date())
    }

    @discardableResult
    public func commitReceived(_ record: TransferRecord, uidl: String?) async throws -> [RecordedBefore] {
        try await commitReceived([ReceivedTransfer(record: record, uidl: uidl)])
    }

    @discardableResult
    public func commitReceived(_ record: TransferRecord, uidl: String?, acknowledgment: OutboxEntry?) async throws -> [RecordedBefore] {
        try await commitReceived([ReceivedTransfer(record: record, uidl: uidl, acknowledgment: acknowledgment)])
    }
}
