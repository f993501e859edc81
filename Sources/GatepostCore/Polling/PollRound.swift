import Foundation
import GatepostCatalog
import Logging

/// One round of work for some sites: poll each (trying transient failures again), record each
/// poll in its site's state, send what their outboxes owe (acknowledgments this round made, and
/// earlier ones due again), then deliver what waits for an application. The daemon, `gatepost
/// poll` and the demo all run this round; they differ only in what they print and in when a
/// site is due next.
public struct PollRound: Sendable {
    /// What one site's poll came to.
    public struct SitePoll: Sendable {
        public var site: RemoteSite
        public var started: Date
        public var result: Result<PollSummary, SitePollError>
        /// When the site is due again, as the caller decided (nil: not recorded).
        public var nextDelay: Duration?
    }

    public struct Report: Sendable {
        public var polls: [SitePoll] = []
        /// Per site with `smtp:`, in the order polled.
        public var outbox: [(site: String, result: Result<OutboxSender.Summary, any Error>)] = []
        /// Nil when there is no `local.yaml` (nothing to deliver to) or the round was cancelled.
        public var deliveries: Result<[DeliveryOutcome], any Error>?
        /// Sites not polled: another node held their lease (``leases``).
        public var heldElsewhere: [String] = []
    }

    public var spool: Spool
    public var catalog: any Catalog
    /// Our side (applications); nil without `local.yaml`.
    public var local: LocalSite?
    /// Every site, by name: deliveries route what any of them received.
    public var sitesByName: [String: RemoteSite]
    public var retry: RetryPolicy
    public var logger: Logger
    /// Told as each site's poll commits its batches (`gatepost poll` on a terminal).
    public var progress: PollProgress?
    /// The node this round runs on, when several share the catalog (``ClusterSettings``): its
    /// records name it, and it delivers the transfers whose files it holds, and those of a node
    /// that is not alive whose files read here (``NodeTakeOver``), each claimed first.
    public var node: String?
    /// On a shared catalog: each site's poll holds its lease, and a site another node is
    /// polling is left to it.
    public var leases: SiteLeaseHolder?

    public init(spool: Spool, catalog: any Catalog, local: LocalSite?, allSites: [RemoteSite], retry: RetryPolicy, logger: Logger) {
        self.init(
            spool: spool, catalog: catalog, local: local,
            sitesByName: Dictionary(allSites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }), retry: retry, logger: logger
        )
    }

    /// With the sites already by name (the daemon indexes them once per reload, not per poll).
    public init(spool: Spool, catalog: any Catalog, local: LocalSite?, sitesByName: [String: RemoteSite], retry: RetryPolicy, logger: Logger) {
        self.spool = spool
        self.catalog = catalog
        self.local = local
        self.sitesByName = sitesByName
        self.retry = retry
        self.logger = logger
    }

    /// Polls `sites` one after the other, then sends and delivers. `nextDelay` says when a site
    /// is due again after its outcome (the daemon's schedule), recorded as its `nextPoll`.
    public func run(
        _ sites: [RemoteSite],
        nextDelay: (RemoteSite, Result<PollSummary, SitePollError>) -> Duration? = { _, _ in nil }
    ) async -> Report {
        var report = Report()
        for site in sites {
            let started = Date()
            var job = PollJob(site: site, spool: spool, catalog: catalog, logger: logger)
            job.progress = progress
            job.node = node
            let poll: @Sendable () async -> Result<PollSummary, SitePollError> = { [job, retry] in
                do throws(SitePollError) {
                    return .success(try await job.run(retrying: retry))
                } catch {
                    return .failure(error)
                }
            }
            let result: Result<PollSummary, SitePollError>
            if let leases {
                do {
                    guard let polled = try await leases.whileHolding(site.name, poll) else {
                        logger.debug("site held by another node: not polled", metadata: ["site": "\(site.name)"])
                        report.heldElsewhere.append(site.name)
                        continue
                    }
                    result = polled
                } catch {
                    result = .failure(SitePollError(
                        site: site.name, cause: "cannot take the site's lease in the catalog: \(error)", isTransient: true,
                        retryAfter: nil, partial: PollSummary(site: site.name), category: .spool
                    ))
                }
            } else {
                result = await poll()
            }
            let delay = nextDelay(site, result)
            let nextPoll = delay.map { Date().addingTimeInterval($0.timeInterval) }
            // The poll is over either way; a failure to record it must not hide its outcome.
            switch result {
            case .success(let summary):
                try? await catalog.recordPoll(
                    site: site.name, at: started, error: nil, errorCategory: nil, messages: summary.records.count, bytes: summary.bytes, nextPoll: nextPoll,
                    serverCertificateExpires: summary.serverCertificateExpires
                )
            case .failure(let error):
                try? await catalog.recordPoll(
                    site: site.name, at: started, error: error.cause, errorCategory: error.category.rawValue, messages: error.partial.records.count,
                    bytes: error.partial.bytes, nextPoll: nextPoll, serverCertificateExpires: error.partial.serverCertificateExpires
                )
            }
            EngineMetrics.poll(site: site.name, result: result)
            report.polls.append(SitePoll(site: site, started: started, result: result, nextDelay: delay))
        }
        guard !Task.isCancelled else { return report }
        var sender = OutboxSender(sitesByName: sitesByName, catalog: catalog, logger: logger)
        if let node { sender.node = OutboxSender.NodeSpool(name: node, root: spool.root) }
        for site in sites where site.smtp != nil {
            do {
                report.outbox.append((site.name, .success(try await sender.sendDue(site: site.name))))
            } catch {
                report.outbox.append((site.name, .failure(error)))
            }
        }
        if let local, !Task.isCancelled {
            var deliverer = Deliverer(local: local, catalog: catalog, logger: logger)
            deliverer.claimsDeliveries = node != nil
            do {
                var takeOver = NodeTakeOver(catalog: catalog, node: node)
                report.deliveries = .success(try await deliverer.deliverPending(sitesByName: sitesByName) { record in
                    await takeOver.includes(record.node, file: record.path)
                })
            } catch {
                report.deliveries = .failure(error)
            }
        }
        return report
    }
}
