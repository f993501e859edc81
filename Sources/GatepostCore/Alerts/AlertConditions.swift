import Foundation
import GatepostCatalog

/// What the conditions are judged from at one instant: the sites, their states, the transfers
/// and outgoing messages that may need attention, and the expected files' last windows.
public struct AlertSnapshot: Sendable {
    /// An `expect` rule's last window, and whether a matching file came within it.
    public struct Arrival: Sendable, Hashable {
        public var site: String
        /// The rule's place in the site's `expect` list.
        public var rule: Int
        public var expectation: ExpectedArrival
        public var deadline: Date
        public var arrived: Bool

        public init(site: String, rule: Int, expectation: ExpectedArrival, deadline: Date, arrived: Bool) {
            self.site = site
            self.rule = rule
            self.expectation = expectation
            self.deadline = deadline
            self.arrived = arrived
        }
    }

    /// Something of a site that stops working at a known time.
    public struct Expiry: Sendable, Hashable {
        public var site: String
        /// What it is, as an operator finds it: `pop3 server certificate`, `pop3.password`...
        public var what: String
        public var expires: Date

        public init(site: String, what: String, expires: Date) {
            self.site = site
            self.what = what
            self.expires = expires
        }
    }

    public var now: Date
    public var sites: [RemoteSite]
    public var states: [String: SiteState]
    /// Transfers received or sent since `now` minus the lookback that are failed, overdue or
    /// kept whole (the others cannot open anything).
    public var transfers: [TransferRecord]
    /// Pending outgoing messages.
    public var pendingOutbox: [OutboxEntry]
    public var arrivals: [Arrival]
    public var expiries: [Expiry]
    /// The recent probes of each site with `probe:`.
    public var probes: [String: [Probe]]
    /// The nodes sharing the catalog (none with SQLite): a node that left is not among them.
    public var nodes: [ClusterNode]

    public init(now: Date, sites: [RemoteSite], states: [String: SiteState], transfers: [TransferRecord],
                pendingOutbox: [OutboxEntry], arrivals: [Arrival], expiries: [Expiry] = [], probes: [String: [Probe]] = [:],
                nodes: [ClusterNode] = []) {
        self.expiries = expiries
        self.probes = probes
        self.nodes = nodes
        self.now = now
        self.sites = sites
        self.states = states
        self.transfers = transfers
        self.pendingOutbox = pendingOutbox
        self.arrivals = arrivals
    }
}

/// The conditions that hold in a snapshot, as alerts (key, kind, site, summary): a pure
/// function, so each condition is tested at any instant without a clock or a server.
public enum AlertConditions {
    /// Failures that do not go away by waiting: one is enough to open `site-failing`.
    static let immediateFailures: Set<String> = ["authentication", "tls", "configuration"]

    public static func active(in snapshot: AlertSnapshot, settings: AlertSettings) -> [Alert] {
        var alerts: [Alert] = []
        func add(_ kind: AlertKind, site: String?, subject: String, _ summary: String) {
            alerts.append(Alert(
                key: [kind.rawValue, site ?? "-", subject].joined(separator: ":"), kind: kind.rawValue, site: site,
                summary: summary, openedAt: snapshot.now
            ))
        }
        // A site the operator stopped is not alerted about (its transfers and outbox still are).
        let enabled = snapshot.sites.filter { $0.isEnabled(snapshot.states[$0.name]) }
        let enabledNames = Set(enabled.map(\.name))

        for site in enabled {
            guard let state = snapshot.states[site.name] else { continue }
            let failures = state.failuresInARow
            let immediate = state.lastErrorCategory.map(immediateFailures.contains) ?? false
            if failures >= settings.failingAfter || (failures > 0 && immediate) {
                add(.siteFailing, site: site.name, subject: "polls",
                    "\(site.name): \(failures) poll\(failures == 1 ? "" : "s") in a row failed"
                        + (state.lastErrorCategory.map { " (\($0))" } ?? "") + ": \(state.lastError ?? "-")")
            }
            if let probe = site.probe, let missing = Probes.missing(snapshot.probes[site.name] ?? [], deadline: probe.deadline, at: snapshot.now) {
                add(.probeMissing, site: site.name, subject: "probe",
                    "\(site.name): the probe sent at \(OperatorText.timestamp(missing.sentAt)) to \(probe.to) did not come back "
                        + "through the poll within \(DurationText.describe(probe.deadline))")
            }
            for skipped in state.skipped where skipped.polls >= settings.stuckAfter {
                add(.messageStuck, site: site.name, subject: skipped.uidl,
                    "\(site.name): message \(skipped.number) (UIDL \(skipped.uidl)) not retrieved in \(skipped.polls) polls: \(skipped.reason)")
            }
        }

        let since = snapshot.now.addingTimeInterval(-settings.lookback.timeInterval)
        for record in snapshot.transfers where record.receivedAt >= since {
            let name = record.fileName ?? record.id
            switch (record.direction, record.state) {
            case (.inbound, .failed):
                add(.deliveryFailed, site: record.site, subject: record.id,
                    "\(record.site): \(name) (\(record.id)) not delivered to \(record.application ?? "its application"): \(record.error ?? "-")")
            case (.inbound, _) where record.fileName == TransferRecord.recoverFileName && record.state != .delivered && record.purgedAt == nil:
                add(.recoverReceived, site: record.site, subject: record.id,
                    "\(record.site): a message kept whole (RECOVER, \(record.id)): \(record.classification ?? record.error ?? "not a file transfer")")
            case (.outbound, .failed):
                add(.acknowledgmentFailed, site: record.site, subject: record.id,
                    "\(record.site): \(name) (\(record.id)) was refused or bounced: \(record.error ?? "-")")
            case (.outbound, .overdue):
                add(.acknowledgmentOverdue, site: record.site, subject: record.id,
                    "\(record.site): \(name) (\(record.id)) not acknowledged in time")
            default:
                break
            }
        }

        let staleBefore = snapshot.now.addingTimeInterval(-settings.outboxOlderThan.timeInterval)
        let stale = Dictionary(grouping: snapshot.pendingOutbox.filter { $0.createdAt < staleBefore }, by: \.site)
        for (site, entries) in stale.sorted(by: { $0.key < $1.key }) {
            guard let oldest = entries.map(\.createdAt).min() else { continue }
            add(.outboxStale, site: site, subject: "outbox",
                "\(site): \(entries.count) outgoing message\(entries.count == 1 ? "" : "s") waiting since \(OperatorText.timestamp(oldest))")
        }

        let soon = snapshot.now.addingTimeInterval(settings.expiringWithin.timeInterval)
        for expiry in snapshot.expiries where expiry.expires <= soon && enabledNames.contains(expiry.site) {
            let days = Int((expiry.expires.timeIntervalSince(snapshot.now) / 86400).rounded(.down))
            let when = expiry.expires <= snapshot.now ? "expired" : (days == 0 ? "expires today" : "expires in \(days) day\(days == 1 ? "" : "s")")
            add(.expiring, site: expiry.site, subject: expiry.what,
                "\(expiry.site): \(expiry.what) \(when) (\(OperatorText.timestamp(expiry.expires)))")
        }

        // A node stopped on purpose leaves (its row goes); one whose heartbeat only ran out did not.
        for node in snapshot.nodes where !node.isAlive(at: snapshot.now) {
            add(.nodeGone, site: nil, subject: node.name,
                "node \(node.name) gone: no heartbeat since \(OperatorText.timestamp(node.heartbeatAt)); the other nodes poll its sites, "
                    + "and deliver and acknowledge what it received where its spool reads here (else that waits for it)")
        }

        for arrival in snapshot.arrivals where !arrival.arrived && enabledNames.contains(arrival.site) {
            add(.arrivalMissed, site: arrival.site, subject: "expect[\(arrival.rule)]",
                "\(arrival.site): no \(arrival.expectation.fileName) by \(OperatorText.timestamp(arrival.deadline))")
        }
        return alerts
    }

    /// Whether a rule's last window counts: the site was being polled by its deadline (a
    /// gateway installed since, or a site added since, is not blamed for what came before).
    public static func watches(_ window: (start: Date, deadline: Date), state: SiteState?) -> Bool {
        guard let firstPoll = state?.firstPoll else { return false }
        return firstPoll <= window.deadline
    }

    /// What to open and what to resolve: conditions that hold with no open alert, and open
    /// alerts whose condition no longer holds.
    public static func changes(open: [Alert], active: [Alert]) -> (opening: [Alert], resolving: [String]) {
        let openKeys = Set(open.map(\.key))
        let activeKeys = Set(active.map(\.key))
        var seen = Set<String>()
        let opening = active.filter { !openKeys.contains($0.key) && seen.insert($0.key).inserted }
        return (opening, open.map(\.key).filter { !activeKeys.contains($0) })
    }
}
