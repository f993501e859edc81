import Foundation

/// A condition an operator is told about (a site failing, a file that did not arrive), as the
/// catalog keeps it: opened once, while it lasts, and resolved when it clears. Acknowledging it
/// says someone is on it; it stays open until the condition clears.
public struct Alert: Sendable, Hashable, Codable {
    public var id: Int64
    /// What the condition is and what about: one open alert per key at most.
    public var key: String
    public var kind: String
    public var site: String?
    public var summary: String
    public var openedAt: Date
    public var resolvedAt: Date?
    public var acknowledgedBy: String?
    public var acknowledgedAt: Date?

    public init(
        id: Int64 = 0, key: String, kind: String, site: String?, summary: String, openedAt: Date,
        resolvedAt: Date? = nil, acknowledgedBy: String? = nil, acknowledgedAt: Date? = nil
    ) {
        self.id = id
        self.key = key
        self.kind = kind
        self.site = site
        self.summary = summary
        self.openedAt = openedAt
        self.resolvedAt = resolvedAt
        self.acknowledgedBy = acknowledgedBy
        self.acknowledgedAt = acknowledgedAt
    }

    public var isOpen: Bool { resolvedAt == nil }
}

/// The alerts opened and resolved by one ``AlertStore/updateAlerts(opening:resolving:at:)``.
public struct AlertChanges: Sendable, Hashable {
    public var opened: [Alert]
    public var resolved: [Alert]

    public init(opened: [Alert] = [], resolved: [Alert] = []) {
        self.opened = opened
        self.resolved = resolved
    }

    public var isEmpty: Bool { opened.isEmpty && resolved.isEmpty }
}

/// Open and past alerts.
public protocol AlertStore: Sendable {
    /// In one transaction: each of `opening` whose key has no open alert is opened at `at`
    /// (its id assigned: ids grow), and the open alerts whose keys are in `resolving` are
    /// resolved at `at`. Returns what was opened and resolved, in the order given.
    func updateAlerts(opening: [Alert], resolving: [String], at: Date) async throws -> AlertChanges
    /// Open alerts (or all, `openOnly` false), newest first (by id), at most `limit`.
    func alerts(openOnly: Bool, limit: Int) async throws -> [Alert]
    /// Records who acknowledged alert `id` and when (a second acknowledgment replaces the
    /// first); returns it as it now is, nil when there is no such alert.
    func acknowledgeAlert(id: Int64, by actor: String, at: Date) async throws -> Alert?
}

/// A probe message sent over a site's SMTP to the mailbox the site polls, and whether it came
/// back through a poll.
public struct Probe: Sendable, Hashable, Codable {
    public var site: String
    /// Its Message-ID (without angle brackets): how the poll recognises it.
    public var messageId: String
    public var sentAt: Date
    public var returnedAt: Date?
    /// The PROBE transfer it came back as.
    public var transferId: String?

    public init(site: String, messageId: String, sentAt: Date, returnedAt: Date? = nil, transferId: String? = nil) {
        self.site = site
        self.messageId = messageId
        self.sentAt = sentAt
        self.returnedAt = returnedAt
        self.transferId = transferId
    }
}

/// Probes sent and returned. A PROBE record committed by ``TransferStore/commitReceived(_:)``
/// marks the probe of its site with its Message-ID returned (at the record's `receivedAt`), in
/// the same transaction.
public protocol ProbeStore: Sendable {
    /// Records a probe sent. Throws when the site already has one with this Message-ID.
    func recordProbe(_ probe: Probe) async throws
    /// The probe of `site` with this Message-ID, if it is one this gateway sent.
    func probe(site: String, messageId: String) async throws -> Probe?
    /// The probes of `site`, newest first (by `sentAt`), at most `limit`.
    func probes(site: String, limit: Int) async throws -> [Probe]
}
