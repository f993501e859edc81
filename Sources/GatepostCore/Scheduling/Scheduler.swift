import Foundation
import GatepostCatalog
import Logging
import ServiceLifecycle

/// `gatepost run`: polls every enabled site on its interval, until a graceful shutdown.
///
/// Once a second it looks at the sites folder (reloading it when a file changed or SIGHUP
/// asked) and at the catalog's site states (so `gatepost site enable|disable` takes effect
/// within a second), and starts the polls that are due, within a global limit and a limit per
/// server host. A failing site waits longer each time (exponential backoff, capped at an hour),
/// a site whose server sent LOGIN-DELAY waits as long as asked, and every interval gets ±10 %
/// jitter so sites configured alike do not poll in lockstep.
///
/// On shutdown no new poll starts and the running ones are cancelled: a message being received
/// is abandoned (nothing of it is committed; it stays on the server), one already committed
/// stays committed.
public struct Scheduler: Service {
    public struct Limits: Sendable {
        public var concurrentPolls: Int
        public var concurrentPollsPerHost: Int
        public init(concurrentPolls: Int = 16, concurrentPollsPerHost: Int = 2) {
            self.concurrentPolls = concurrentPolls
            self.concurrentPollsPerHost = concurrentPollsPerHost
        }
    }

    public var sitesFolder: String
    public var spool: Spool
    public var catalog: any Catalog
    public var limits: Limits
    public var retry: RetryPolicy
    public var logger: Logger
    /// Set (by a SIGHUP handler) to reload the sites folder at the next tick.
    public var reloadRequested: @Sendable () -> Bool
    /// Polls asked for by operators, and the polls under way, for the console.
    public var polls: DaemonPolls?
    /// Told each time the sites folder was (re)loaded: the directory the daemon now runs.
    public var sitesLoaded: (@Sendable (SiteDirectory) -> Void)?
    /// Set when several nodes share the catalog: this node polls its share of the sites, each
    /// under a lease.
    public var cluster: ClusterSettings?

    public init(
        sitesFolder: String, spool: Spool, catalog: any Catalog, limits: Limits = Limits(),
        retry: RetryPolicy = RetryPolicy(), logger: Logger, reloadRequested: @escaping @Sendable () -> Bool = { false }
    ) {
        self.sitesFolder = sitesFolder
        self.spool = spool
        self.catalog = catalog
        self.limits = limits
        self.retry = retry
        self.logger = logger
        self.reloadRequested = reloadRequested
    }

    private struct PollResult: Sendable {
        var site: String
        var host: String
        var failed: Bool
        /// When this site is due again, from the end of this poll.
        var delay: Duration
    }

    public func run() async throws {
        var directory = try SiteLoader().loadDirectory(sitesFolder)
        var fingerprint = Self.fingerprint(sitesFolder)
        var sitesByName = Self.index(directory.sites)
        report(directory)
        await recordConfigurationErrors(SiteReload(previous: SiteDirectory(sites: [], errors: [], local: nil), loaded: directory))
        var states: [String: SiteState] = [:]
        let clock = ContinuousClock()
        sitesLoaded?(directory)
        var machine = SchedulerStateMachine(
            limits: .init(concurrentPolls: limits.concurrentPolls, concurrentPollsPerHost: limits.concurrentPollsPerHost),
            now: clock.now
        )
        // With other nodes: the first heartbeat says whether this node's name is free (a
        // second process under a live name stops here, before polling anything).
        let startedAt = Date()
        var liveNodes: [String] = []
        if let cluster {
            liveNodes = try await catalog.heartbeat(cluster.heartbeat(startedAt: startedAt, at: Date())).map(\.name)
            logger.info("joined the nodes sharing the catalog", metadata: ["node": "\(cluster.node)", "nodes": "\(liveNodes.joined(separator: ","))"])
        }
        var mySites = cluster?.assigned(directory.sites, liveNodes: liveNodes) ?? directory.sites

        enum Finished: Sendable {
            case poll(PollResult)
            case wakeUp
            case outbox
        }

        await withTaskGroup(of: Finished.self) { group in
            while !Task.isShuttingDownGracefully {
                switch machine.nextAction(at: clock.now) {
                case .reloadSites:
                    let current = Self.fingerprint(sitesFolder)
                    if current != fingerprint || reloadRequested() {
                        fingerprint = current
                        if let loaded = try? SiteLoader().loadDirectory(sitesFolder) {
                            let reload = SiteReload(previous: directory, loaded: loaded)
                            directory = reload.directory
                            sitesByName = Self.index(directory.sites)
                            mySites = cluster?.assigned(directory.sites, liveNodes: liveNodes) ?? directory.sites
                            sitesLoaded?(directory)
                            report(reload)
                            await recordConfigurationErrors(reload)
                        }
                    }
                    if let cluster {
                        do {
                            let live = try await catalog.heartbeat(cluster.heartbeat(startedAt: startedAt, at: Date())).map(\.name)
                            if live != liveNodes {
                                logger.info("nodes changed", metadata: ["nodes": "\(live.joined(separator: ","))"])
                                liveNodes = live
                                mySites = cluster.assigned(directory.sites, liveNodes: liveNodes)
                            }
                        } catch {
                            // The last view stands; the leases still keep each site to one node.
                            logger.error("heartbeat failed", metadata: ["error": "\(error)"])
                        }
                    }
                    states = (try? await catalog.siteStates()) ?? states
                    machine.reloaded(sites: mySites, states: states)
                    for name in polls?.takeRequests() ?? [] {
                        guard let site = directory.site(named: name) else {
                            polls?.refuse(name, reason: "no site named `\(name)` in the daemon's sites folder")
                            continue
                        }
                        guard site.isEnabled(states[name]) else {
                            polls?.refuse(name, reason: "site \(name) is disabled: enable it first")
                            continue
                        }
                        if let cluster, let owner = SiteAssignment.owner(of: name, among: liveNodes), owner != cluster.node {
                            polls?.refuse(name, reason: "site \(name) is polled by node \(owner): ask that node")
                            continue
                        }
                        machine.pollRequested(name, at: clock.now)
                    }
                    continue
                case .startPoll(let site, let failures):
                    let local = directory.local
                    let allSites = sitesByName
                    group.addTask { .poll(await poll(site, failuresSoFar: failures, local: local, sitesByName: allSites)) }
                    continue
                case .sendOutbox:
                    var sender = OutboxSender(sitesByName: sitesByName, catalog: catalog, logger: logger)
                    if let cluster { sender.node = OutboxSender.NodeSpool(name: cluster.node, root: spool.root) }
                    group.addTask {
                        _ = try? await sender.sendDue()
                        return .outbox
                    }
                    continue
                case .wait(let wakeUpAt):
                    if let wakeUpAt {
                        group.addTask {
                            try? await Task.sleep(until: wakeUpAt, clock: .continuous)
                            return .wakeUp
                        }
                    }
                }
                switch await group.next() {
                case .wakeUp?: machine.wokeUp()
                case .outbox?: machine.outboxSent(at: clock.now)
                case .poll(let result)?: machine.pollFinished(result.site, failed: result.failed, delay: result.delay, at: clock.now)
                case nil: break
                }
            }
            logger.info("shutting down: cancelling polls in progress", metadata: ["polls": "\(machine.schedule.running.count)"])
            polls?.answerAll(reason: "the daemon is shutting down")
            group.cancelAll()
            for await _ in group {}
        }
        if let cluster {
            // Its sites go to the others now, not when its leases expire.
            try? await catalog.leave(node: cluster.node, instance: cluster.instance)
        }
        logger.info("stopped")
    }

    private func nextDelay(_ site: RemoteSite, failures: Int, retryAfter: Duration?) -> Duration {
        PollSchedule<ContinuousClock.Instant>.nextDelay(
            for: site, failures: failures, retryAfter: retryAfter, jitter: Double.random(in: -0.1...0.1)
        )
    }

    private func poll(_ site: RemoteSite, failuresSoFar: Int, local: LocalSite?, sitesByName: [String: RemoteSite]) async -> PollResult {
        var siteLogger = logger
        siteLogger[metadataKey: "site"] = "\(site.name)"
        var round = PollRound(spool: spool, catalog: catalog, local: local, sitesByName: sitesByName, retry: retry, logger: logger)
        round.node = cluster?.node
        round.leases = cluster.map { SiteLeaseHolder(catalog: catalog, node: $0.node, leaseTime: $0.leaseTime, logger: logger) }
        let startedAt = Date()
        if let polls {
            polls.started(site.name, at: startedAt)
            round.progress = { site, messages, bytes in polls.progress(site, messages: messages, bytes: bytes) }
        }
        let run: @Sendable () async -> PollRound.Report = { [round, self] in
            await round.run([site]) { site, result in
                switch result {
                case .success: nextDelay(site, failures: 0, retryAfter: nil)
                case .failure(let error): nextDelay(site, failures: failuresSoFar + 1, retryAfter: error.retryAfter)
                }
            }
        }
        let report = await run()
        if let cluster, report.heldElsewhere.contains(site.name) {
            // Another node polls it (their views of who is alive differ for a moment).
            polls?.finished(site.name, startedAt: startedAt, outcome: PollNowOutcome(
                site: site.name, messages: 0, bytes: 0, transfers: [], error: "another node is polling site \(site.name) now"
            ))
            return PollResult(site: site.name, host: site.pop3.host, failed: false, delay: cluster.leaseTime)
        }
        var result = PollResult(site: site.name, host: site.pop3.host, failed: false, delay: site.poll.interval)
        polls?.finished(site.name, startedAt: startedAt, outcome: report.polls.first.map { PollNowOutcome(site: site.name, result: $0.result) }
            ?? PollNowOutcome(site: site.name, messages: 0, bytes: 0, transfers: [], error: "the poll did not run"))
        if let polled = report.polls.first {
            result.delay = polled.nextDelay ?? site.poll.interval
            switch polled.result {
            case .success(let summary):
                if !summary.records.isEmpty {
                    siteLogger.info("poll", metadata: ["new": "\(summary.records.count)", "deleted": "\(summary.deleted)"])
                }
            case .failure(let error):
                result.failed = true
                siteLogger.error("poll failed", metadata: ["error": "\(error.cause)", "next": "\(DurationText.describe(result.delay))"])
            }
        }
        for (_, sent) in report.outbox {
            if case .success(let summary) = sent, summary.failed > 0 {
                siteLogger.error("outbox: messages failed", metadata: ["failed": "\(summary.failed)"])
            }
        }
        if case .success(let outcomes) = report.deliveries {
            for outcome in outcomes where outcome.state == .failed {
                siteLogger.error("delivery failed", metadata: ["transfer": "\(outcome.id)", "error": "\(outcome.error ?? "")"])
            }
        }
        return result
    }

    /// What a reload changed, and what keeps running in its last good version.
    private func report(_ reload: SiteReload) {
        logger.info("sites reloaded", metadata: [
            "added": "\(reload.added.joined(separator: ","))", "removed": "\(reload.removed.joined(separator: ","))",
            "changed": "\(reload.changed.joined(separator: ","))",
        ])
        for (site, error) in reload.keptLastGood {
            logger.error("site file broken: running the last good version", metadata: ["site": "\(site)", "error": "\(error.description)"])
        }
        let kept = Set(reload.keptLastGood.map(\.error.file))
        for error in reload.directory.errors where !kept.contains(error.file) {
            logger.error("unusable site file", metadata: ["error": "\(error.description)"])
        }
    }

    /// Keeps in the catalog, for `site list` and `site show`, which sites run a last good
    /// version and since when; clears it for the sites whose files load.
    private func recordConfigurationErrors(_ reload: SiteReload) async {
        let now = Date()
        let states = (try? await catalog.siteStates()) ?? [:]
        for (site, error) in reload.keptLastGood {
            try? await catalog.recordConfigurationError(site: site, error: error.description, at: now)
        }
        for site in reload.loading where states[site]?.configurationError != nil {
            try? await catalog.recordConfigurationError(site: site, error: nil, at: now)
        }
    }

    private func report(_ directory: SiteDirectory) {
        logger.info("sites loaded", metadata: ["sites": "\(directory.sites.map(\.name).joined(separator: ","))"])
        for error in directory.errors {
            logger.error("unusable site file", metadata: ["error": "\(error.description)"])
        }
    }

    /// The sites by name, built once per load: each poll round looks its sites up there.
    static func index(_ sites: [RemoteSite]) -> [String: RemoteSite] {
        Dictionary(sites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Names, sizes, modification times and inodes of the site files: a change means reload.
    /// Looked at every second, so `stat` and one hash rather than Foundation's attribute
    /// dictionaries (at 10,000 sites those were 6 % of the daemon's CPU).
    static func fingerprint(_ folder: String) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var hasher = Hasher()
        for name in names.sorted() {
            var info = stat()
            let found = stat(folder + "/" + name, &info) == 0
            hasher.combine(name)
            hasher.combine(found ? Int64(info.st_size) : -1)
            hasher.combine(found ? Int64(info.st_mtim.tv_sec) : 0)
            hasher.combine(found ? Int64(info.st_mtim.tv_nsec) : 0)
            hasher.combine(found ? UInt64(info.st_ino) : 0)
        }
        return hasher.finalize()
    }
}
