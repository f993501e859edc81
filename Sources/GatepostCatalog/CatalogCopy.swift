import Foundation

/// A transfer with what the store keeps beside it about its delivery.
public struct ImportedTransfer: Sendable, Hashable {
    public var record: TransferRecord
    public var deliveryTarget: String?
    public var deliveryHistory: [DeliveryAttempt]
    /// ``TransferStore/deliveryAttempts(id:)``.
    public var failedDeliveryAttempts: Int
    /// When it is tried again after a failed delivery: the last `retrying` attempt's time.
    public var nextDeliveryAttempt: Date?

    public init(record: TransferRecord, deliveryTarget: String?, deliveryHistory: [DeliveryAttempt], failedDeliveryAttempts: Int, nextDeliveryAttempt: Date?) {
        self.record = record
        self.deliveryTarget = deliveryTarget
        self.deliveryHistory = deliveryHistory
        self.failedDeliveryAttempts = failedDeliveryAttempts
        self.nextDeliveryAttempt = nextDeliveryAttempt
    }
}

/// A store that takes rows as another store kept them (`gatepost catalog migrate --to`): ids,
/// states and times as they are, no rule applied. Each call is one transaction; a row whose
/// key exists throws, and nothing of the call is stored.
public protocol CatalogImporter: Sendable {
    func importTransfers(_ transfers: [ImportedTransfer]) async throws
    func importUIDLs(site: String, _ messages: [RetrievedMessage]) async throws
    func importSiteStates(_ states: [SiteState]) async throws
    func importOutbox(_ entries: [OutboxEntry]) async throws
    /// Ids kept; the store's next id follows the largest.
    func importOperatorActions(_ actions: [OperatorAction]) async throws
    /// Ids kept; the store's next id follows the largest.
    func importAlerts(_ alerts: [Alert]) async throws
    func importProbes(_ probes: [Probe]) async throws
}

/// Copies one catalog into another, empty one through the contract's reads and the target's
/// ``CatalogImporter``: the records, the UIDLs (with what was deleted on the server), the site
/// states, the outbox, the delivery history, the audit trail, the alerts and the probes. Nodes
/// and leases are not copied: they belong to running processes.
public struct CatalogCopy: Sendable {
    public struct Counts: Sendable, Hashable, CustomStringConvertible {
        public var transfers = 0
        public var uidls = 0
        public var sites = 0
        public var outbox = 0
        public var operatorActions = 0
        public var alerts = 0
        public var probes = 0

        public var description: String {
            "\(transfers) transfers, \(uidls) UIDLs, \(sites) site states, \(outbox) outbox entries, "
                + "\(operatorActions) operator actions, \(alerts) alerts, \(probes) probes"
        }
    }

    public enum CopyError: Error, CustomStringConvertible {
        case targetNotEmpty
        case countsDiffer(source: Counts, target: Counts)

        public var description: String {
            switch self {
            case .targetNotEmpty:
                "the target catalog already holds transfers or sites: a migration goes into an empty catalog only"
            case .countsDiffer(let source, let target):
                "the copy does not match: the source has \(source), the target \(target)"
            }
        }
    }

    /// Transfers per transaction.
    public var chunk = 500
    /// Records without a node are given this one (the node whose spool holds their files).
    public var node: String?

    public init(node: String? = nil) {
        self.node = node
    }

    @discardableResult
    public func copy(from source: any Catalog, to target: any Catalog & CatalogImporter) async throws -> Counts {
        guard try await target.transfers(TransferFilter(limit: 1)).isEmpty, try await target.siteStates().isEmpty else {
            throw CopyError.targetNotEmpty
        }
        var counts = Counts()
        var sites = Set<String>()
        var cursor: TransferCursor?
        while true {
            let page = try await source.transfers(TransferFilter(limit: chunk, after: cursor))
            guard let last = page.last else { break }
            var imported: [ImportedTransfer] = []
            for var record in page {
                sites.insert(record.site)
                if record.node == nil { record.node = node }
                let history = try await source.deliveryHistory(id: record.id)
                imported.append(ImportedTransfer(
                    record: record, deliveryTarget: try await source.deliveryTarget(id: record.id), deliveryHistory: history,
                    failedDeliveryAttempts: try await source.deliveryAttempts(id: record.id),
                    nextDeliveryAttempt: history.last(where: { $0.outcome == .retrying }).map { $0.retryAt ?? $0.at }
                ))
            }
            try await target.importTransfers(imported)
            counts.transfers += page.count
            cursor = TransferCursor(after: last)
        }
        let states = try await source.siteStates()
        sites.formUnion(states.keys)
        try await target.importSiteStates(Array(states.values).sorted { $0.site < $1.site })
        counts.sites = states.count
        for site in sites.sorted() {
            let messages = try await source.retrievedMessages(site: site)
            if !messages.isEmpty {
                try await target.importUIDLs(site: site, messages.values.sorted { $0.uidl < $1.uidl })
                counts.uidls += messages.count
            }
            let probes = try await source.probes(site: site, limit: Int.max)
            if !probes.isEmpty {
                try await target.importProbes(probes)
                counts.probes += probes.count
            }
        }
        let outbox = try await source.outboxEntries(state: nil, limit: Int.max)
        try await target.importOutbox(outbox.reversed())
        counts.outbox = outbox.count
        let actions = try await source.operatorActions(site: nil, transferId: nil, limit: Int.max)
        try await target.importOperatorActions(actions.reversed())
        counts.operatorActions = actions.count
        let alerts = try await source.alerts(openOnly: false, limit: Int.max)
        try await target.importAlerts(alerts.reversed())
        counts.alerts = alerts.count

        let copied = try await Self.counts(of: target, sites: sites)
        guard copied == counts else { throw CopyError.countsDiffer(source: counts, target: copied) }
        return counts
    }

    /// What `catalog` holds, counted through the contract's reads.
    static func counts(of catalog: any Catalog, sites: Set<String>) async throws -> Counts {
        var counts = Counts()
        var cursor: TransferCursor?
        while true {
            let page = try await catalog.transfers(TransferFilter(limit: 5000, after: cursor))
            guard let last = page.last else { break }
            counts.transfers += page.count
            cursor = TransferCursor(after: last)
        }
        for site in sites {
            counts.uidls += try await catalog.retrievedMessages(site: site).count
            counts.probes += try await catalog.probes(site: site, limit: Int.max).count
        }
        counts.sites = try await catalog.siteStates().count
        counts.outbox = try await catalog.outboxEntries(state: nil, limit: Int.max).count
        counts.operatorActions = try await catalog.operatorActions(site: nil, transferId: nil, limit: Int.max).count
        counts.alerts = try await catalog.alerts(openOnly: false, limit: Int.max).count
        return counts
    }
}
