import GatepostCatalog

/// The daemon's scheduling decisions as a value: which sites are due at an instant (enabled,
/// not running, within the global and per-host limits), and when a site is due again after a
/// poll (its interval with jitter, doubled per failure up to an hour, or a server's
/// LOGIN-DELAY). Time comes in as instants and random numbers as a parameter, so every rule is
/// tested in virtual time without sleeping; ``Scheduler`` performs what it decides.
struct PollSchedule<Instant: InstantProtocol> where Instant.Duration == Duration {
    struct Limits: Sendable {
        var concurrentPolls: Int
        var concurrentPollsPerHost: Int
    }

    private struct Entry {
        var due: Instant
        var failures = 0
    }

    let limits: Limits
    private var entries: [String: Entry] = [:]
    /// Running polls: site name to host.
    private(set) var running: [String: String] = [:]
    private var pollsPerHost: [String: Int] = [:]
    /// Sites an operator asked to poll while they were being polled: due again at once.
    private var requestedWhileRunning: Set<String> = []
    /// Where the next look for due sites starts: just after the last site started. When more
    /// sites are due than there are slots (a node that cannot keep up with its intervals),
    /// every one gets its turn; starting from the top each time, the first sites in the list
    /// would be polled again and again and the last ones never.
    private var nextIndex = 0

    init(limits: Limits) {
        self.limits = limits
    }

    /// The sites to poll now, in the order given (round robin: from just after the last one
    /// started), marked running; `failuresSoFar` of each for its backoff. A site seen for the
    /// first time is due at once.
    ///
    /// Called after every poll that ends, so at thousands of sites it must be cheap: it stops
    /// once every slot is taken, and reads the fields it needs in place rather than copying
    /// each site (a RemoteSite is large; copying 10,000 of them per event was most of a busy
    /// daemon's CPU).
    mutating func due(at now: Instant, sites: [RemoteSite], states: [String: SiteState]) -> [(site: RemoteSite, failuresSoFar: Int)] {
        var starting: [(RemoteSite, Int)] = []
        let count = sites.count
        let first = count == 0 ? 0 : nextIndex % count
        for offset in 0 ..< count {
            guard running.count < limits.concurrentPolls else { break }
            let index = (first + offset) % count
            let name = sites[index].name
            guard running[name] == nil, sites[index].isEnabled(states[name]) else { continue }
            let entry = entries[name] ?? Entry(due: now)
            if entries[name] == nil { entries[name] = entry }
            guard entry.due <= now else { continue }
            let host = sites[index].pop3.host
            guard pollsPerHost[host, default: 0] < limits.concurrentPollsPerHost else { continue }
            running[name] = host
            pollsPerHost[host, default: 0] += 1
            starting.append((sites[index], entry.failures))
            nextIndex = index + 1
        }
        return starting
    }

    /// A poll ended at `now`; the site is due `delay` later (from ``nextDelay(for:failures:retryAfter:jitter:)``),
    /// or at once when an operator asked for a poll while this one ran.
    mutating func finished(_ site: String, failed: Bool, delay: Duration, at now: Instant) {
        if let host = running.removeValue(forKey: site) {
            pollsPerHost[host, default: 1] -= 1
        }
        var entry = entries[site] ?? Entry(due: now)
        entry.failures = failed ? entry.failures + 1 : 0
        entry.due = requestedWhileRunning.remove(site) != nil ? now : now.advanced(by: delay)
        entries[site] = entry
    }

    /// An operator asks for a poll of `site`: due now (within the limits, like any due poll),
    /// or right after the one running. Backoff and LOGIN-DELAY are the server's wishes for
    /// the schedule, not for an operator who asks.
    mutating func request(_ site: String, at now: Instant) {
        if running[site] != nil {
            requestedWhileRunning.insert(site)
        } else {
            var entry = entries[site] ?? Entry(due: now)
            entry.due = now
            entries[site] = entry
        }
    }

    /// When the site is due again: a server's LOGIN-DELAY (never earlier than the interval),
    /// else the interval doubled per failure in a row (at most an hour), with `jitter` (a
    /// fraction in -0.1...0.1) so that sites configured alike do not poll in lockstep.
    static func nextDelay(for site: RemoteSite, failures: Int, retryAfter: Duration?, jitter: Double) -> Duration {
        if let retryAfter { return max(retryAfter, site.poll.interval) }
        var delay = site.poll.interval
        if failures > 0 {
            delay = min(.seconds(3600), delay * (1 << min(failures, 10)))
        }
        return delay + delay * jitter
    }
}
