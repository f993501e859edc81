import Foundation
import Synchronization

/// The catalog contract kept in memory: a store for tests that need no database file, and the
/// twin the contract tests hold SQLite and PostgreSQL to. Nothing outlives the process.
///
/// One lock over all tables makes each method one transaction. A method that can throw works on
/// a copy of the tables and keeps it only when it succeeds, so a failed batch leaves nothing
/// behind; the copy costs time in proportion to the catalog, which a test's catalog can afford.
public final class InMemoryCatalog: Catalog {
    /// A write the contract forbids; SQLite reports the same writes as constraint errors.
    public enum ConstraintViolation: Error, Equatable, CustomStringConvertible {
        case transferExists(id: String)
        case uidlExists(site: String, uidl: String)
        case outboxEntryExists(id: String)
        case noSuchTransfer(id: String)
        case probeExists(site: String, messageId: String)

        public var description: String {
            switch self {
            case .transferExists(let id): "the catalog already has a transfer \(id)"
            case .uidlExists(let site, let uidl): "the catalog already has UIDL \(uidl) of site \(site)"
            case .outboxEntryExists(let id): "the catalog already has an outbox entry \(id)"
            case .noSuchTransfer(let id): "the catalog has no transfer \(id)"
            case .probeExists(let site, let messageId): "the catalog already has probe \(messageId) of site \(site)"
            }
        }
    }

    private struct DeliveryRetry {
        var attempts: Int
        var nextAttempt: Date
    }

    private struct Tables {
        var transfers: [String: TransferRecord] = [:]
        /// Per site, each Message-ID's first inbound transfer (``ReceivedBatchPlan``).
        var claims: [MessageClaimKey: String] = [:]
        /// By site, then UIDL.
        var retrieved: [String: [String: RetrievedMessage]] = [:]
        var outbox: [String: OutboxEntry] = [:]
        var deliveryTargets: [String: String] = [:]
        var deliveryRetries: [String: DeliveryRetry] = [:]
        var deliveryHistory: [String: [DeliveryAttempt]] = [:]
        var alerts: [Alert] = []
        var probes: [Probe] = []
        var sites: [String: SiteState] = [:]
        var operatorActions: [OperatorAction] = []

        mutating func insert(_ record: TransferRecord) throws(ConstraintViolation) {
            guard transfers[record.id] == nil else { throw .transferExists(id: record.id) }
            transfers[record.id] = record
        }

        mutating func insert(_ entry: OutboxEntry) throws(ConstraintViolation) {
            guard outbox[entry.id] == nil else { throw .outboxEntryExists(id: entry.id) }
            try requireTransfer(entry.transferId)
            outbox[entry.id] = entry
        }

        func requireTransfer(_ id: String) throws(ConstraintViolation) {
            guard transfers[id] != nil else { throw .noSuchTransfer(id: id) }
        }

        mutating func updateTransfer(id: String, by rule: (TransferRecord) -> TransferRecord) {
            if let record = transfers[id] { transfers[id] = rule(record) }
        }

        /// The outbound transfer `report` answers: the one whose id is its envelope id, else the
        /// first with its Message-ID.
        func answered(by report: TransferRecord) -> TransferRecord? {
            guard AcknowledgmentRules.reference(of: report) != nil else { return nil }
            if let envelopeId = report.originalEnvelopeId, let outbound = transfers[envelopeId],
               AcknowledgmentRules.answers(report, outbound: outbound) {
                return outbound
            }
            return sortedTransfers { AcknowledgmentRules.answers(report, outbound: $0) }.first
        }

        func sortedTransfers(where include: (TransferRecord) -> Bool) -> [TransferRecord] {
            transfers.values.filter(include).sorted { ($0.receivedAt, $0.id) < ($1.receivedAt, $1.id) }
        }

        func sortedOutbox(where include: (OutboxEntry) -> Bool) -> [OutboxEntry] {
            outbox.values.filter(include).sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }

        func firstInbound(site: String, where matches: (TransferRecord) -> Bool) -> String? {
            sortedTransfers { $0.site == site && $0.direction == .inbound && matches($0) }.first?.id
        }
    }

    private let tables = Mutex(Tables())
    private let leases = InMemoryLeases()

    /// - Parameter lookupsAreRemote: what ``lookupsAreRemote`` says: true makes a poll take
    ///   this store for PostgreSQL's kind (its duplicates found by the batch's commit).
    public init(lookupsAreRemote: Bool = false) {
        self.lookupsAreRemote = lookupsAreRemote
    }

    public let lookupsAreRemote: Bool

    private func read<T: Sendable>(_ body: (Tables) -> T) -> T {
        tables.withLock { body($0) }
    }

    private func write<T: Sendable>(_ body: (inout Tables) throws(ConstraintViolation) -> T) throws(ConstraintViolation) -> T {
        try tables.withLock { (tables: inout Tables) throws(ConstraintViolation) -> T in
            var draft = tables
            let result = try body(&draft)
            tables = draft
            return result
        }
    }

    // MARK: TransferStore

    @discardableResult
    public func commitReceived(_ batch: [ReceivedTransfer]) async throws -> [RecordedBefore] {
        try write { tables throws(ConstraintViolation) in
            let claimed = ReceivedBatchPlan.keys(of: batch).compactMap { key in tables.claims[key].map { (key, $0) } }
            var plan = ReceivedBatchPlan(batch, claimed: Dictionary(claimed) { first, _ in first })
            let rows = plan.leftOutUIDLs.compactMap { key in tables.retrieved[key.site]?[key.uidl].map { (key, $0.transferID) } }
            plan.noteRecordedUIDLs(Dictionary(rows) { first, _ in first })
            for item in plan.stored {
                let record = item.record
                try tables.insert(record)
                if let uidl = item.uidl {
                    guard tables.retrieved[record.site]?[uidl]?.transferID == item.replacing else {
                        throw .uidlExists(site: record.site, uidl: uidl)
                    }
                    tables.retrieved[record.site, default: [:]][uidl] = RetrievedMessage(
                        uidl: uidl, transferID: record.id, deleted: false, messageId: record.messageId, listedSize: item.listedSize
                    )
                }
                if let acknowledgment = item.acknowledgment {
                    try tables.insert(acknowledgment)
                }
                if let outbound = tables.answered(by: record),
                   let closed = AcknowledgmentRules.close(outbound: outbound, report: record) {
                    tables.transfers[closed.id] = closed
                }
                if record.type == .probe, let index = tables.probes.firstIndex(where: {
                    $0.site == record.site && $0.messageId == record.messageId && $0.returnedAt == nil
                }) {
                    tables.probes[index].returnedAt = record.receivedAt
                    tables.probes[index].transferId = record.id
                }
            }
            for (key, transferId) in plan.claims { tables.claims[key] = transferId }
            return plan.leftOut
        }
    }

    public func commitOutbound(_ record: TransferRecord, message: OutboxEntry) async throws {
        try write { tables throws(ConstraintViolation) in
            try tables.insert(record)
            try tables.insert(message)
        }
    }

    public func transfers(_ filter: TransferFilter) async throws -> [TransferRecord] {
        var matching = read { $0.sortedTransfers(where: filter.matches) }
        if filter.newestFirst { matching.reverse() }
        // As SQL's LIMIT: a negative one is no limit.
        guard let limit = filter.limit, limit >= 0 else { return matching }
        return Array(matching.prefix(limit))
    }

    public func inboundCounts(since: Date) async throws -> [String: Int] {
        read { tables in
            tables.transfers.values.filter { $0.direction == .inbound && $0.receivedAt >= since }
                .reduce(into: [:]) { counts, record in counts[record.site, default: 0] += 1 }
        }
    }

    public func transfer(id: String) async throws -> TransferRecord? {
        read { $0.transfers[id] }
    }

    public func transferID(site: String, messageId: String) async throws -> String? {
        read { $0.claims[MessageClaimKey(site: site, messageId: messageId)] }
    }

    public func transferID(site: String, messageSha256: String) async throws -> String? {
        read { $0.firstInbound(site: site) { $0.messageSha256 == messageSha256 } }
    }

    public func transfersToDeliver(at now: Date) async throws -> [TransferRecord] {
        read { tables in
            tables.sortedTransfers { record in
                record.direction == .inbound && TransferRecord.State.awaitingDelivery.contains(record.state)
                    && (tables.deliveryRetries[record.id].map { $0.nextAttempt <= now } ?? true)
            }
        }
    }

    public func claimDelivery(id: String, due: Date, until: Date) async throws -> Bool {
        tables.withLock { tables in
            guard let record = tables.transfers[id], record.direction == .inbound,
                  TransferRecord.State.awaitingDelivery.contains(record.state),
                  tables.deliveryRetries[id].map({ $0.nextAttempt <= due }) ?? true
            else { return false }
            tables.deliveryRetries[id] = DeliveryRetry(attempts: tables.deliveryRetries[id]?.attempts ?? 0, nextAttempt: until)
            return true
        }
    }

    public func deliveryAttempts(id: String) async throws -> Int {
        read { $0.deliveryRetries[id]?.attempts ?? 0 }
    }

    public func recordDeliveryAttempt(id: String, _ attempt: DeliveryAttempt) async throws {
        try write { tables throws(ConstraintViolation) in
            try tables.requireTransfer(id)
            tables.deliveryHistory[id, default: []].append(attempt)
            tables.transfers[id]?.application = attempt.application
            tables.transfers[id]?.error = attempt.error
            switch attempt.outcome {
            case .delivered:
                tables.transfers[id]?.state = .delivered
                tables.transfers[id]?.deliveredPath = attempt.deliveredPath
            case .failed:
                tables.transfers[id]?.state = .failed
                tables.transfers[id]?.deliveredPath = nil
            case .retrying:
                let attempts = (tables.deliveryRetries[id]?.attempts ?? 0) + 1
                tables.deliveryRetries[id] = DeliveryRetry(attempts: attempts, nextAttempt: attempt.retryAt ?? attempt.at)
                tables.transfers[id]?.state = .routed
            }
        }
    }

    public func deliveryHistory(id: String) async throws -> [DeliveryAttempt] {
        read { $0.deliveryHistory[id] ?? [] }
    }

    public func updateDelivery(id: String, state: TransferRecord.State, application: String?, error: String?, deliveredPath: String?) async throws {
        tables.withLock { tables in
            tables.transfers[id]?.state = state
            tables.transfers[id]?.application = application
            tables.transfers[id]?.error = error
            tables.transfers[id]?.deliveredPath = deliveredPath
        }
    }

    public func deliveryTarget(id: String) async throws -> String? {
        read { $0.deliveryTargets[id] }
    }

    public func recordDeliveryTarget(id: String, application: String, target: String) async throws {
        try write { tables throws(ConstraintViolation) in
            try tables.requireTransfer(id)
            tables.deliveryTargets[id] = target
        }
    }

    public func markOverdue(site: String, sentBefore: Date) async throws -> [TransferRecord] {
        tables.withLock { tables in
            var lastSent: [String: Date] = [:]
            for entry in tables.outbox.values where entry.kind == .file && entry.site == site && entry.state == .sent {
                guard let sentAt = entry.sentAt else { continue }
                lastSent[entry.transferId] = max(lastSent[entry.transferId] ?? sentAt, sentAt)
            }
            let due = tables.sortedTransfers { record in
                record.site == site && lastSent[record.id].map { $0 < sentBefore } == true
            }
            return due.compactMap { record in
                guard let overdue = AcknowledgmentRules.overdue(record) else { return nil }
                tables.transfers[overdue.id] = overdue
                return overdue
            }
        }
    }

    public func markPurged(id: String, at date: Date) async throws {
        tables.withLock { tables in
            tables.transfers[id]?.path = nil
            tables.transfers[id]?.messageText = nil
            tables.transfers[id]?.purgedAt = date
        }
    }

    // MARK: UIDLStore

    public func retrievedMessages(site: String) async throws -> [String: RetrievedMessage] {
        read { $0.retrieved[site] ?? [:] }
    }

    public func markDeleted(site: String, uidls: [String]) async throws {
        tables.withLock { tables in
            for uidl in uidls {
                tables.retrieved[site]?[uidl]?.deleted = true
            }
        }
    }

    // MARK: SiteStateStore

    // MARK: AuditStore

    public func recordOperatorAction(_ action: OperatorAction) async throws {
        tables.withLock { tables in
            var recorded = action
            recorded.id = (tables.operatorActions.last?.id ?? 0) + 1
            tables.operatorActions.append(recorded)
        }
    }

    public func operatorActions(site: String?, transferId: String?, limit: Int) async throws -> [OperatorAction] {
        read { tables in
            Array(tables.operatorActions.reversed().filter { $0.concerns(site: site, transferId: transferId) }.prefix(max(0, limit)))
        }
    }

    // MARK: SiteStateStore

    public func siteStates() async throws -> [String: SiteState] {
        read { $0.sites }
    }

    public func recordConfigurationError(site: String, error: String?, at: Date) async throws {
        tables.withLock { tables in
            var state = tables.sites[site] ?? SiteState(site: site)
            if error == nil {
                state.configurationErrorSince = nil
            } else if state.configurationError == nil {
                state.configurationErrorSince = at
            }
            state.configurationError = error
            tables.sites[site] = state
        }
    }

    public func setSiteEnabled(_ site: String, enabled: Bool) async throws {
        tables.withLock { tables in
            tables.sites[site, default: SiteState(site: site)].enabled = enabled
        }
    }

    public func recordPoll(
        site: String, at: Date, error: String?, errorCategory: String?, messages: Int, bytes: Int64, nextPoll: Date?,
        serverCertificateExpires: Date?
    ) async throws {
        tables.withLock { tables in
            var state = tables.sites[site] ?? SiteState(site: site)
            state.serverCertificateExpires = serverCertificateExpires ?? state.serverCertificateExpires
            state.lastPoll = at
            state.lastError = error
            state.lastErrorCategory = errorCategory
            state.nextPoll = nextPoll
            state.messages += Int64(messages)
            state.bytes += bytes
            state.firstPoll = state.firstPoll ?? at
            if error == nil {
                state.lastSuccess = at
                state.failuresInARow = 0
            } else {
                state.failuresInARow += 1
            }
            tables.sites[site] = state
        }
    }

    public func recordSkips(site: String, skipped: [SkippedMessage], complete: Bool) async throws {
        tables.withLock { tables in
            var state = tables.sites[site] ?? SiteState(site: site)
            state.skipped = SkippedMessage.merge(state.skipped, with: skipped, complete: complete)
            tables.sites[site] = state
        }
    }

    // MARK: OutboxStore

    public func dueOutbox(site: String?, at date: Date) async throws -> [OutboxEntry] {
        read { tables in
            tables.sortedOutbox { $0.state == .pending && $0.nextAttempt <= date && (site == nil || $0.site == site) }
        }
    }

    public func outboxEntries(state: OutboxEntry.State?, limit: Int) async throws -> [OutboxEntry] {
        read { tables in
            Array(tables.sortedOutbox { state == nil || $0.state == state }.reversed().prefix(max(0, limit)))
        }
    }

    public func claimOutbox(_ id: String, due: Date, until: Date) async throws -> Bool {
        tables.withLock { tables in
            guard let entry = tables.outbox[id], entry.state == .pending, entry.nextAttempt <= due else { return false }
            tables.outbox[id]?.nextAttempt = until
            return true
        }
    }

    public func outboxSent(_ entry: OutboxEntry, at date: Date, refused: [String], followUp: OutboxEntry?) async throws {
        try write { tables throws(ConstraintViolation) in
            if var stored = tables.outbox[entry.id] {
                stored.state = .sent
                stored.sentAt = date
                stored.attempts += 1
                stored.lastError = OutboxRules.refusalNote(refused)
                tables.outbox[entry.id] = stored
            }
            if let followUp { try tables.insert(followUp) }
            tables.updateTransfer(id: entry.transferId) { OutboxRules.sent($0, entry: entry, refused: refused, followUp: followUp) }
        }
    }

    public func outboxFailed(_ entry: OutboxEntry, error: String, retryAt: Date?) async throws {
        tables.withLock { tables in
            if var stored = tables.outbox[entry.id] {
                stored.attempts += 1
                stored.lastError = error
                if let retryAt {
                    stored.nextAttempt = retryAt
                } else {
                    stored.state = .failed
                }
                tables.outbox[entry.id] = stored
            }
            if retryAt == nil {
                tables.updateTransfer(id: entry.transferId) { OutboxRules.givenUp($0, entry: entry, error: error) }
            }
        }
    }

    public func requeueOutbox(transferId: String, at date: Date) async throws -> Int {
        tables.withLock { tables in
            let failed = tables.outbox.values.filter { $0.transferId == transferId && $0.state == .failed }
            for var entry in failed {
                entry.state = .pending
                entry.nextAttempt = date
                entry.createdAt = date
                entry.lastError = nil
                tables.outbox[entry.id] = entry
            }
            if !failed.isEmpty { tables.updateTransfer(id: transferId, by: OutboxRules.requeued) }
            return failed.count
        }
    }

    public func outbox(transferId: String) async throws -> [OutboxEntry] {
        read { tables in tables.sortedOutbox { $0.transferId == transferId } }
    }

    public func outboxReferences(path: String) async throws -> Bool {
        read { tables in tables.outbox.values.contains { $0.path == path } }
    }

    public func updateAlerts(opening: [Alert], resolving: [String], at: Date) async throws -> AlertChanges {
        tables.withLock { tables in
            var changes = AlertChanges()
            for alert in opening where !tables.alerts.contains(where: { $0.isOpen && $0.key == alert.key }) {
                var opened = alert
                opened.id = (tables.alerts.last?.id ?? 0) + 1
                opened.openedAt = at
                opened.resolvedAt = nil
                opened.acknowledgedBy = nil
                opened.acknowledgedAt = nil
                tables.alerts.append(opened)
                changes.opened.append(opened)
            }
            for key in resolving {
                guard let index = tables.alerts.firstIndex(where: { $0.isOpen && $0.key == key }) else { continue }
                tables.alerts[index].resolvedAt = at
                changes.resolved.append(tables.alerts[index])
            }
            return changes
        }
    }

    public func alerts(openOnly: Bool, limit: Int) async throws -> [Alert] {
        read { tables in Array(tables.alerts.reversed().filter { !openOnly || $0.isOpen }.prefix(max(limit, 0))) }
    }

    public func acknowledgeAlert(id: Int64, by actor: String, at: Date) async throws -> Alert? {
        tables.withLock { tables in
            guard let index = tables.alerts.firstIndex(where: { $0.id == id }) else { return nil }
            tables.alerts[index].acknowledgedBy = actor
            tables.alerts[index].acknowledgedAt = at
            return tables.alerts[index]
        }
    }

    public func recordProbe(_ probe: Probe) async throws {
        try write { tables throws(ConstraintViolation) in
            guard !tables.probes.contains(where: { $0.site == probe.site && $0.messageId == probe.messageId }) else {
                throw .probeExists(site: probe.site, messageId: probe.messageId)
            }
            tables.probes.append(probe)
        }
    }

    public func probe(site: String, messageId: String) async throws -> Probe? {
        read { tables in tables.probes.first { $0.site == site && $0.messageId == messageId } }
    }

    public func probes(site: String, limit: Int) async throws -> [Probe] {
        read { tables in Array(tables.probes.filter { $0.site == site }.sorted { $0.sentAt > $1.sentAt }.prefix(max(limit, 0))) }
    }
}

extension InMemoryCatalog: LeaseStore {
    public func heartbeat(_ node: ClusterNode) async throws -> [ClusterNode] { try leases.heartbeat(node) }
    public func leave(node name: String, instance: String) async throws { leases.leave(node: name, instance: instance) }
    public func claimSite(_ site: String, node: String, now: Date, until: Date) async throws -> Bool {
        leases.claimSite(site, node: node, now: now, until: until)
    }
    public func releaseSite(_ site: String, node: String) async throws { leases.releaseSite(site, node: node) }
    public func siteLeases() async throws -> [SiteLease] { leases.siteLeases() }
    public func clusterNodes() async throws -> [ClusterNode] { leases.clusterNodes() }
}

extension InMemoryCatalog: CatalogImporter {
    public func importTransfers(_ transfers: [ImportedTransfer]) async throws {
        try write { tables throws(ConstraintViolation) in
            for imported in transfers {
                let id = imported.record.id
                try tables.insert(imported.record)
                // In the order copied (received): the first with a Message-ID claims it.
                if imported.record.direction == .inbound, let messageId = imported.record.messageId {
                    let key = MessageClaimKey(site: imported.record.site, messageId: messageId)
                    if tables.claims[key] == nil { tables.claims[key] = id }
                }
                tables.deliveryTargets[id] = imported.deliveryTarget
                if !imported.deliveryHistory.isEmpty { tables.deliveryHistory[id] = imported.deliveryHistory }
                if imported.failedDeliveryAttempts > 0 || imported.nextDeliveryAttempt != nil {
                    tables.deliveryRetries[id] = DeliveryRetry(
                        attempts: imported.failedDeliveryAttempts, nextAttempt: imported.nextDeliveryAttempt ?? imported.record.receivedAt
                    )
                }
            }
        }
    }

    public func importUIDLs(site: String, _ messages: [RetrievedMessage]) async throws {
        try write { tables throws(ConstraintViolation) in
            for message in messages {
                guard tables.retrieved[site]?[message.uidl] == nil else { throw .uidlExists(site: site, uidl: message.uidl) }
                tables.retrieved[site, default: [:]][message.uidl] = message
            }
        }
    }

    public func importSiteStates(_ states: [SiteState]) async throws {
        tables.withLock { tables in
            for state in states { tables.sites[state.site] = state }
        }
    }

    public func importOutbox(_ entries: [OutboxEntry]) async throws {
        try write { tables throws(ConstraintViolation) in
            for entry in entries { try tables.insert(entry) }
        }
    }

    public func importOperatorActions(_ actions: [OperatorAction]) async throws {
        tables.withLock { tables in
            tables.operatorActions = (tables.operatorActions + actions).sorted { $0.id < $1.id }
        }
    }

    public func importAlerts(_ alerts: [Alert]) async throws {
        tables.withLock { tables in
            tables.alerts = (tables.alerts + alerts).sorted { $0.id < $1.id }
        }
    }

    public func importProbes(_ probes: [Probe]) async throws {
        try write { tables throws(ConstraintViolation) in
            for probe in probes {
                guard !tables.probes.contains(where: { $0.site == probe.site && $0.messageId == probe.messageId }) else {
                    throw .probeExists(site: probe.site, messageId: probe.messageId)
                }
                tables.probes.append(probe)
            }
        }
    }
}
