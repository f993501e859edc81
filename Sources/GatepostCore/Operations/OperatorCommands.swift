import Foundation
import GatepostCatalog
import Logging

/// What an operator can ask of the engine, from the command line, the console or the API: one
/// definition each, recorded in the catalog's audit trail with who asked.
public struct OperatorCommands: Sendable {
    public var directory: SiteDirectory
    public var catalog: any Catalog
    public var logger: Logger

    public init(directory: SiteDirectory, catalog: any Catalog, logger: Logger) {
        self.directory = directory
        self.catalog = catalog
        self.logger = logger
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case noSuchSite(String)
        case noSuchTransfer(String)
        case noSuchAlert(Int64)
        /// The retry has nothing to do; the reason is for the operator.
        case refused(String)
        case noApplications
        case noRoute(transfer: String, site: String)
        case noSuchNode(String)

        public var description: String {
            switch self {
            case .noSuchSite(let name): "no site named `\(name)`"
            case .noSuchTransfer(let id): "no transfer with id \(id)"
            case .noSuchAlert(let id): "no alert with id \(id)"
            case .refused(let reason): reason
            case .noApplications: "nothing to deliver to: local.yaml defines no applications"
            case .noRoute(let id, let site): "transfer \(id): no route of site `\(site)` applies; it stays received"
            case .noSuchNode(let name): "no node named `\(name)` shares this catalog"
            }
        }
    }

    /// Turns polling of `site` on or off (a running daemon picks it up within a second).
    public func setSiteEnabled(_ site: String, _ enabled: Bool, actor: String) async throws {
        guard directory.site(named: site) != nil else { throw Failure.noSuchSite(site) }
        try await catalog.setSiteEnabled(site, enabled: enabled)
        try await catalog.recordOperatorAction(OperatorAction(actor: actor, action: enabled ? "site.enable" : "site.disable", site: site))
        logger.notice("site \(enabled ? "enabled" : "disabled")", metadata: ["site": "\(site)", "by": "\(actor)"])
    }

    /// Removes a node that is gone for good (killed, its machine retired) from the catalog's
    /// nodes, as it would have removed itself had it been stopped: its `node-gone` alert
    /// resolves. A node still beating is refused. Its records keep naming it: their files are
    /// in its spool.
    public func forgetNode(_ name: String, actor: String, at now: Date = Date()) async throws {
        guard let node = try await catalog.clusterNodes().first(where: { $0.name == name }) else { throw Failure.noSuchNode(name) }
        guard !node.isAlive(at: now) else {
            throw Failure.refused("node \(name) is alive (last heartbeat \(OperatorText.timestamp(node.heartbeatAt))): stop it, and it leaves by itself")
        }
        try await catalog.leave(node: node.name, instance: node.instance)
        try await catalog.recordOperatorAction(OperatorAction(actor: actor, action: "node.forget", detail: name))
        logger.notice("node forgotten", metadata: ["node": "\(name)", "by": "\(actor)"])
    }

    /// Says someone is on alert `id`: it stays open until its condition clears, acknowledged
    /// by `actor`.
    public func acknowledgeAlert(_ id: Int64, actor: String) async throws -> Alert {
        guard let alert = try await catalog.acknowledgeAlert(id: id, by: actor, at: Date()) else { throw Failure.noSuchAlert(id) }
        try await catalog.recordOperatorAction(OperatorAction(actor: actor, action: "alert.acknowledge", site: alert.site, detail: alert.summary))
        logger.notice("alert acknowledged", metadata: ["alert": "\(id)", "by": "\(actor)"])
        return alert
    }

    /// What a retry did.
    public enum RetryOutcome: Sendable {
        /// The transfer's failed outgoing messages (a file, an MDN) were sent again; the
        /// transfer as it now is.
        case resent(OutboxSender.Summary, TransferRecord)
        /// Routed and delivered again (or failed again).
        case delivered(DeliveryOutcome)
    }

    /// `gatepost catalog retry`: the transfer's failed outgoing messages are queued and sent
    /// again; an inbound transfer that failed (or waits) is routed and delivered again, to the
    /// site's routes as they are now.
    public func retry(_ id: String, actor: String) async throws -> [RetryOutcome] {
        guard var record = try await catalog.transfer(id: id) else { throw Failure.noSuchTransfer(id) }
        try await Self.requireFilesReachable(record)
        try await catalog.recordOperatorAction(OperatorAction(actor: actor, action: "transfer.retry", site: record.site, transferId: id))
        // Purged: nothing is requeued whose file is gone.
        if record.purgedAt != nil, case .refused(let reason) = RetryRules.decide(record, requeued: 0) { throw Failure.refused(reason) }
        var outcomes: [RetryOutcome] = []
        let requeued = try await catalog.requeueOutbox(transferId: id, at: Date())
        if requeued > 0 {
            let sender = OutboxSender(sites: directory.sites, catalog: catalog, logger: logger)
            let summary = try await sender.sendDue(site: record.site)
            guard let updated = try await catalog.transfer(id: id) else { return outcomes }
            record = updated
            outcomes.append(.resent(summary, record))
        }
        switch RetryRules.decide(record, requeued: requeued) {
        case .resent:
            return outcomes
        case .refused(let reason):
            throw Failure.refused(reason)
        case .deliverAgain(let again):
            outcomes.append(.delivered(try await deliver(again)))
            return outcomes
        }
    }

    /// Delivers `transfer` again to `application` (chosen by the operator, not by the routes).
    public func redeliver(_ id: String, to application: String, actor: String) async throws -> DeliveryOutcome {
        guard let record = try await catalog.transfer(id: id) else { throw Failure.noSuchTransfer(id) }
        guard let local = directory.local else { throw Failure.noApplications }
        guard local.application(named: application) != nil else { throw Failure.refused("no application named `\(application)` in local.yaml") }
        guard record.direction == .inbound else { throw Failure.refused("transfer \(id) is outbound: there is nothing to deliver") }
        try await Self.requireFilesReachable(record)
        try await catalog.recordOperatorAction(OperatorAction(
            actor: actor, action: "transfer.redeliver", site: record.site, transferId: id, detail: application
        ))
        // Routed to the chosen application, the routes are not asked.
        var again = record
        again.state = .routed
        again.application = application
        try await catalog.updateDelivery(id: id, state: .routed, application: application, error: nil, deliveredPath: nil)
        let deliverer = Deliverer(local: local, catalog: catalog, logger: logger)
        guard let outcome = try await deliverer.deliver(again, site: directory.site(named: record.site), retrying: false) else {
            throw Failure.noRoute(transfer: id, site: record.site)
        }
        return outcome
    }

    /// With several nodes, a transfer's files are in the spool of the node that received it
    /// (its `node`): delivered or sent again from another machine only when that spool is
    /// within its reach (one file system shared by the nodes). Else the attempt would only
    /// fail for a missing file, and count against the transfer.
    static func requireFilesReachable(_ record: TransferRecord) async throws(Failure) {
        guard let node = record.node, let path = record.path, record.purgedAt == nil, await !Spool.isReadable(path) else { return }
        throw .refused("transfer \(record.id)'s files are in node \(node)'s spool, out of this machine's reach: run this on node \(node)")
    }

    private func deliver(_ transfer: TransferRecord) async throws -> DeliveryOutcome {
        guard let local = directory.local else { throw Failure.noApplications }
        let deliverer = Deliverer(local: local, catalog: catalog, logger: logger)
        guard let outcome = try await deliverer.deliver(transfer, site: directory.site(named: transfer.site), retrying: false) else {
            throw Failure.noRoute(transfer: transfer.id, site: transfer.site)
        }
        return outcome
    }
}
