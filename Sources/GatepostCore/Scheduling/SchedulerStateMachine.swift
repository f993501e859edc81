import GatepostCatalog

/// The daemon's loop as a state machine: events in (a wake-up fired, a poll or an outbox run
/// ended, the sites were reloaded), one action out at a time (reload the sites, start a poll,
/// send the outbox, wait). Time comes in as instants, so the loop's timers (a reload look each
/// second, the outbox every ``outboxInterval`` after its previous run, one wake-up pending at a
/// time) are tested in virtual time like the poll decisions of ``PollSchedule`` they wrap;
/// ``Scheduler`` performs the actions and feeds the events.
struct SchedulerStateMachine<Instant: InstantProtocol> where Instant.Duration == Duration {
    enum Action {
        /// Look at the sites folder and the operators' enable/disable, then call
        /// ``reloaded(sites:states:)``.
        case reloadSites
        case startPoll(RemoteSite, failuresSoFar: Int)
        /// Send what the outboxes owe, then call ``outboxSent(at:)``.
        case sendOutbox
        /// Nothing to do until an event: a poll or the outbox ending, or the wake-up at the
        /// instant given (nil: one is already pending), which is reported with ``wokeUp()``.
        case wait(wakeUpAt: Instant?)
    }

    /// How often the sites folder and the site states are looked at.
    static var reloadInterval: Duration { .seconds(1) }
    /// How often the outbox goes out on its own, so a retry does not wait for its site's next
    /// poll (claims keep this and a poll's own sending from doubling a message).
    static var outboxInterval: Duration { .seconds(15) }

    private(set) var schedule: PollSchedule<Instant>
    private(set) var sites: [RemoteSite] = []
    private var states: [String: SiteState] = [:]
    private var nextReload: Instant
    private var nextOutbox: Instant
    private var outboxRunning = false
    private var wakeUpPending = false
    private var starting: [(site: RemoteSite, failuresSoFar: Int)] = []

    /// `now`: when the daemon started. The sites are reloaded at once; the outbox waits its
    /// interval, since the first polls send it anyway.
    init(limits: PollSchedule<Instant>.Limits, now: Instant) {
        schedule = PollSchedule(limits: limits)
        nextReload = now
        nextOutbox = now.advanced(by: Self.outboxInterval)
    }

    /// The next thing to do at `now`; call again after performing it, until ``Action/wait(wakeUpAt:)``.
    mutating func nextAction(at now: Instant) -> Action {
        if now >= nextReload {
            nextReload = now.advanced(by: Self.reloadInterval)
            return .reloadSites
        }
        if starting.isEmpty {
            starting = Array(schedule.due(at: now, sites: sites, states: states).reversed())
        }
        if let next = starting.popLast() {
            return .startPoll(next.site, failuresSoFar: next.failuresSoFar)
        }
        if !outboxRunning, now >= nextOutbox {
            outboxRunning = true
            return .sendOutbox
        }
        if wakeUpPending { return .wait(wakeUpAt: nil) }
        wakeUpPending = true
        return .wait(wakeUpAt: nextReload)
    }

    /// The sites folder as loaded (the last good one when a reload failed) and the site states.
    mutating func reloaded(sites: [RemoteSite], states: [String: SiteState]) {
        self.sites = sites
        self.states = states
    }

    mutating func wokeUp() {
        wakeUpPending = false
    }

    mutating func outboxSent(at now: Instant) {
        outboxRunning = false
        nextOutbox = now.advanced(by: Self.outboxInterval)
    }

    /// An operator asked for a poll of `site` (``PollSchedule/request(_:at:)``).
    mutating func pollRequested(_ site: String, at now: Instant) {
        schedule.request(site, at: now)
    }

    /// A poll ended at `now`; `delay` from ``PollSchedule/nextDelay(for:failures:retryAfter:jitter:)``.
    mutating func pollFinished(_ site: String, failed: Bool, delay: Duration, at now: Instant) {
        schedule.finished(site, failed: failed, delay: delay, at: now)
    }
}
