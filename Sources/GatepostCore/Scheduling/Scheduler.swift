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
        report(directory)
        var states = (try? await catalog.siteStates()) ?? [:]
        var schedule = PollSchedule<ContinuousClock.Instant>(
            limits: .init(concurrentPolls: limits.concurrentPolls, concurrentPollsPerHost: limits.concurrentPollsPerHost)
        )
        let clock = ContinuousClock()
        var nextRefresh = clock.now + .seconds(1)
        var tickerRunning = false
        // The outbox also goes out on its own clock, so a retry does not wait for its site's
        // next poll (claims keep this and a poll's own sending from doubling a message).
        var nextOutbox = clock.now + Self.outboxInterval
        var outboxRunning = false

        enum Finished: Sendable {
            case poll(PollResult)
            case tick
            case outbox
        }

        await withTaskGroup(of: Finished.self) { group in
            while !Task.isShuttingDownGracefully {
                // Once a second: the sites folder and the operators' enable/disable.
                if clock.now >= nextRefresh {
                    nextRefresh = clock.now + .seconds(1)
                    let current = Self.fingerprint(sitesFolder)
                    if current != fingerprint || reloadRequested() {
                        fingerprint = current
                        if let reloaded = try? SiteLoader().loadDirectory(sitesFolder) {
                            directory = reloaded
                            report(directory)
                        }
                    }
                    states = (try? await catalog.siteStates()) ?? states
                }
                // Start what is due, within the limits.
                let now = clock.now
                for (site, failures) in schedule.due(at: now, sites: directory.sites, states: states) {
                    let local = directory.local
                    let allSites = directory.sites
                    group.addTask { .poll(await poll(site, failuresSoFar: failures, local: local, sites: allSites)) }
                }
                if !outboxRunning, now >= nextOutbox {
                    outboxRunning = true
                    let sender = OutboxSender(sites: directory.sites, catalog: catalog, logger: logger)
                    group.addTask {
                        _ = try? await sender.sendDue()
                        return .outbox
                    }
                }
                // Wait for a poll to end or for the next refresh, whichever comes first. One
                // ticker task at a time marks the refresh (it returns nil).
                if !tickerRunning {
                    tickerRunning = true
                    let until = nextRefresh
                    group.addTask {
                        try? await Task.sleep(until: until, clock: .continuous)
                        return .tick
                    }
                }
                guard let finished = await group.next() else { continue }
                let result: PollResult
                switch finished {
                case .tick:
                    tickerRunning = false
                    continue
                case .outbox:
                    outboxRunning = false
                    nextOutbox = clock.now + Self.outboxInterval
                    continue
                case .poll(let polled):
                    result = polled
                }
                schedule.finished(result.site, failed: result.failed, delay: result.delay, at: clock.now)
            }
            logger.info("shutting down: cancelling polls in progress", metadata: ["polls": "\(schedule.running.count)"])
            group.cancelAll()
            for await _ in group {}
        }
        logger.info("stopped")
    }

    /// How often the daemon sends what is due in the outbox, besides after each poll.
    static let outboxInterval: Duration = .seconds(15)

    private func nextDelay(_ site: RemoteSite, failures: Int, retryAfter: Duration?) -> Duration {
        PollSchedule<ContinuousClock.Instant>.nextDelay(
            for: site, failures: failures, retryAfter: retryAfter, jitter: Double.random(in: -0.1...0.1)
        )
    }

    private func poll(_ site: RemoteSite, failuresSoFar: Int, local: LocalSite?, sites: [RemoteSite]) async -> PollResult {
        var siteLogger = logger
        siteLogger[metadataKey: "site"] = "\(site.name)"
        let round = PollRound(spool: spool, catalog: catalog, local: local, allSites: sites, retry: retry, logger: logger)
        let report = await round.run([site]) { site, result in
            switch result {
            case .success: nextDelay(site, failures: 0, retryAfter: nil)
            case .failure(let error): nextDelay(site, failures: failuresSoFar + 1, retryAfter: error.retryAfter)
            }
        }
        var result = PollResult(site: site.name, host: site.pop3.host, failed: false, delay: site.poll.interval)
        if let polled = report.polls.first {
            result.delay = polled.nextDelay ?? site.poll.interval
            switch polled.result {
            case .success(let summary):
                if !summary.records.isEmpty {
                    siteLogger.info("poll", metadata: ["new": "\(summary.records.count)", "deleted": "\(summary.deleted)"])
                }
            case .failure(let error):
                result.failed = true
                siteLogger.error("poll failed", metadata: ["error": "\(error.cause)", "next": "\(result.delay)"])
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

    private func report(_ directory: SiteDirectory) {
        logger.info("sites loaded", metadata: ["sites": "\(directory.sites.map(\.name).joined(separator: ","))"])
        for error in directory.errors {
            logger.error("unusable site file", metadata: ["error": "\(error.description)"])
        }
    }

    /// Names, sizes and modification times of the site files: a change means reload.
    static func fingerprint(_ folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.sorted().map { name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: folder + "/" + name)
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            let size = (attributes?[.size] as? Int) ?? 0
            return "\(name) \(size) \(modified)"
        }
    }
}
