import Foundation
import GatepostCatalog
import Logging
import Synchronization

/// A poll in progress, as the console's dashboard and `gatepost status` show it.
public struct RunningPoll: Codable, Sendable, Hashable {
    public var site: String
    public var started: Date
    public var messages: Int
    public var bytes: Int64

    public init(site: String, started: Date, messages: Int = 0, bytes: Int64 = 0) {
        self.site = site
        self.started = started
        self.messages = messages
        self.bytes = bytes
    }
}

/// What a poll asked for by an operator came to.
public struct PollNowOutcome: Codable, Sendable, Hashable {
    public var site: String
    public var messages: Int
    public var bytes: Int64
    /// The transfers it recorded.
    public var transfers: [String]
    /// Why it failed (or was not run), when it did.
    public var error: String?

    public init(site: String, messages: Int, bytes: Int64, transfers: [String], error: String?) {
        self.site = site
        self.messages = messages
        self.bytes = bytes
        self.transfers = transfers
        self.error = error
    }

    init(site: String, result: Result<PollSummary, SitePollError>) {
        switch result {
        case .success(let summary):
            self.init(site: site, messages: summary.records.count, bytes: summary.records.reduce(0) { $0 + $1.size },
                      transfers: summary.records.map(\.id), error: nil)
        case .failure(let error):
            self.init(site: site, messages: error.partial.records.count, bytes: error.partial.records.reduce(0) { $0 + $1.size },
                      transfers: error.partial.records.map(\.id),
                      error: error.cause + (error.attempts > 1 ? " (after \(error.attempts) attempts)" : ""))
        }
    }
}

/// Polls on an operator's request (the console's "poll now", `gatepost poll` while the daemon
/// runs), and the polls under way.
public protocol PollControl: Sendable {
    /// Polls `site` as soon as it may (now, or when its running poll ends) and says what came
    /// of it.
    func pollNow(_ site: RemoteSite) async -> PollNowOutcome
    func running() -> [RunningPoll]
}

/// The daemon's side of ``PollControl``: requests wait here until the scheduler, at its next
/// tick (within a second), takes them, polls the site and hands back the outcome; the scheduler
/// also tells it which polls run and how far they are.
public final class DaemonPolls: PollControl, Sendable {
    private struct Waiter {
        var requestedAt: Date
        var continuation: CheckedContinuation<PollNowOutcome, Never>
    }

    private struct State {
        var requested: [String] = []
        var waiters: [String: [Waiter]] = [:]
        var running: [String: RunningPoll] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func pollNow(_ site: RemoteSite) async -> PollNowOutcome {
        let requestedAt = Date()
        return await withCheckedContinuation { continuation in
            state.withLock { state in
                state.waiters[site.name, default: []].append(Waiter(requestedAt: requestedAt, continuation: continuation))
                if !state.requested.contains(site.name) { state.requested.append(site.name) }
            }
        }
    }

    public func running() -> [RunningPoll] {
        state.withLock { Array($0.running.values).sorted { $0.site < $1.site } }
    }

    /// The sites asked for since the last call (the scheduler's tick).
    func takeRequests() -> [String] {
        state.withLock { state in
            defer { state.requested = [] }
            return state.requested
        }
    }

    /// The sites asked for and not taken yet, left in place (tests wait on it).
    func pendingRequests() -> [String] {
        state.withLock { $0.requested }
    }

    /// A request the scheduler will not serve (no such site, or disabled) is answered at once.
    func refuse(_ site: String, reason: String) {
        answer(site, startedAt: .distantFuture, PollNowOutcome(site: site, messages: 0, bytes: 0, transfers: [], error: reason))
    }

    func started(_ site: String, at date: Date) {
        state.withLock { $0.running[site] = RunningPoll(site: site, started: date) }
    }

    func progress(_ site: String, messages: Int, bytes: Int64) {
        state.withLock { state in
            state.running[site]?.messages = messages
            state.running[site]?.bytes = bytes
        }
    }

    /// The poll of `site` that started at `startedAt` ended: it answers the requests made
    /// before it started (a request made during a poll waits for the next one, which the
    /// scheduler starts at once).
    func finished(_ site: String, startedAt: Date, outcome: PollNowOutcome) {
        state.withLock { _ = $0.running.removeValue(forKey: site) }
        answer(site, startedAt: startedAt, outcome)
    }

    private func answer(_ site: String, startedAt: Date, _ outcome: PollNowOutcome) {
        let answered = state.withLock { state -> [Waiter] in
            let waiting = state.waiters[site] ?? []
            let served = waiting.filter { $0.requestedAt <= startedAt }
            state.waiters[site] = waiting.filter { $0.requestedAt > startedAt }
            return served
        }
        for waiter in answered { waiter.continuation.resume(returning: outcome) }
    }

    /// Shutdown: nobody waits for a poll that will not come.
    func answerAll(reason: String) {
        let waiting = state.withLock { state -> [(String, Waiter)] in
            defer { state.waiters = [:] }
            return state.waiters.flatMap { site, waiters in waiters.map { (site, $0) } }
        }
        for (site, waiter) in waiting {
            waiter.continuation.resume(returning: PollNowOutcome(site: site, messages: 0, bytes: 0, transfers: [], error: reason))
        }
    }
}

/// `gatepost serve`'s side of ``PollControl``, with no daemon: a poll asked for runs at once,
/// as `gatepost poll SITE` would, under the spool's lock (refused while another process holds
/// it: the daemon, or a `gatepost poll`).
public final class PollsWithoutDaemon: PollControl, Sendable {
    private let spool: Spool
    private let catalog: any Catalog
    private let sites: @Sendable () async -> SiteDirectory
    private let logger: Logger
    private let active = Mutex<[String: RunningPoll]>([:])

    public init(spool: Spool, catalog: any Catalog, sites: @escaping @Sendable () async -> SiteDirectory, logger: Logger) {
        self.spool = spool
        self.catalog = catalog
        self.sites = sites
        self.logger = logger
    }

    public func pollNow(_ site: RemoteSite) async -> PollNowOutcome {
        let lock: SpoolLock
        do {
            lock = try SpoolLock(spool: spool)
        } catch {
            return PollNowOutcome(site: site.name, messages: 0, bytes: 0, transfers: [], error: "\(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        let directory = await sites()
        active.withLock { $0[site.name] = RunningPoll(site: site.name, started: Date()) }
        defer { active.withLock { _ = $0.removeValue(forKey: site.name) } }
        var round = PollRound(spool: spool, catalog: catalog, local: directory.local, allSites: directory.sites, retry: RetryPolicy(), logger: logger)
        round.progress = { [self] site, messages, bytes in
            self.active.withLock { state in
                state[site]?.messages = messages
                state[site]?.bytes = bytes
            }
        }
        let report = await round.run([site]) { _, result in
            if case .failure(let error) = result { error.retryAfter } else { nil }
        }
        guard let polled = report.polls.first else {
            return PollNowOutcome(site: site.name, messages: 0, bytes: 0, transfers: [], error: "the poll did not run")
        }
        return PollNowOutcome(site: site.name, result: polled.result)
    }

    public func running() -> [RunningPoll] {
        active.withLock { Array($0.values).sorted { $0.site < $1.site } }
    }
}
