import Foundation
import GatepostCatalog
@testable import GatepostCore
import Testing

/// The daemon's scheduling rules in virtual time: instants are made, never waited for.
@Suite struct PollScheduleTests {
    typealias Schedule = PollSchedule<ContinuousClock.Instant>

    static let start = ContinuousClock.now

    static func at(_ seconds: Int) -> ContinuousClock.Instant {
        start.advanced(by: .seconds(seconds))
    }

    static func site(_ name: String, host: String = "pop.partner.test", interval: String = "60s", enabled: Bool = true) throws -> RemoteSite {
        let text = """
        enabled: \(enabled)
        pop3: {host: \(host), user: u, password: p}
        poll: {interval: \(interval)}
        """
        return try #require(try SiteLoader(environment: [:]).parse(text, file: "/sites/\(name).yaml"))
    }

    static func names(_ due: [(site: RemoteSite, failuresSoFar: Int)]) -> [String] {
        due.map(\.site.name)
    }

    @Test func aSiteIsDueAtOnceThenAfterItsInterval() throws {
        var schedule = Schedule(limits: .init(concurrentPolls: 16, concurrentPollsPerHost: 2))
        let acme = try Self.site("acme")
        #expect(Self.names(schedule.due(at: Self.at(0), sites: [acme], states: [:])) == ["acme"])
        // Running: not started twice.
        #expect(schedule.due(at: Self.at(1), sites: [acme], states: [:]).isEmpty)
        schedule.finished("acme", failed: false, delay: .seconds(60), at: Self.at(2))
        #expect(schedule.due(at: Self.at(61), sites: [acme], states: [:]).isEmpty)
        #expect(Self.names(schedule.due(at: Self.at(62), sites: [acme], states: [:])) == ["acme"])
    }

    /// More sites due than slots (each poll outlasts the interval): every site gets its turn,
    /// round robin; the first in the list do not take every slot again and again.
    @Test func anOverloadedScheduleStillPollsEverySite() throws {
        var schedule = Schedule(limits: .init(concurrentPolls: 2, concurrentPollsPerHost: 2))
        let sites = try (1 ... 5).map { try Self.site("s\($0)", interval: "1s") }
        var polled: [String] = []
        var now = 0
        var running = Self.names(schedule.due(at: Self.at(now), sites: sites, states: [:]))
        for _ in 0 ..< 10 {
            polled += running
            now += 3
            for name in running { schedule.finished(name, failed: false, delay: .seconds(1), at: Self.at(now)) }
            running = Self.names(schedule.due(at: Self.at(now), sites: sites, states: [:]))
        }
        #expect(Array(polled.prefix(5)) == ["s1", "s2", "s3", "s4", "s5"])
        for site in sites {
            #expect(polled.filter { $0 == site.name }.count == 4, "\(site.name): \(polled)")
        }
    }

    @Test func anOperatorsRequestMakesASiteDueNowOrRightAfterItsRunningPoll() throws {
        var schedule = Schedule(limits: .init(concurrentPolls: 16, concurrentPollsPerHost: 1))
        let acme = try Self.site("acme", interval: "1h")
        let bcorp = try Self.site("bcorp", interval: "1h")
        #expect(Self.names(schedule.due(at: Self.at(0), sites: [acme, bcorp], states: [:])) == ["acme"], "one poll per host")
        schedule.finished("acme", failed: true, delay: .seconds(3600), at: Self.at(1))
        #expect(Self.names(schedule.due(at: Self.at(1), sites: [acme, bcorp], states: [:])) == ["bcorp"])
        // Asked for at 10 s: due at once, whatever the interval and backoff said.
        schedule.request("acme", at: Self.at(10))
        #expect(Self.names(schedule.due(at: Self.at(10), sites: [acme, bcorp], states: [:])).isEmpty, "one poll per host: bcorp still runs")
        schedule.finished("bcorp", failed: false, delay: .seconds(3600), at: Self.at(11))
        let due = schedule.due(at: Self.at(11), sites: [acme, bcorp], states: [:])
        #expect(Self.names(due) == ["acme"])
        #expect(due.first?.failuresSoFar == 1, "the backoff's count is kept")
        // Asked for while it runs: polled again right after, not an hour later.
        schedule.request("acme", at: Self.at(12))
        schedule.finished("acme", failed: false, delay: .seconds(3600), at: Self.at(13))
        #expect(Self.names(schedule.due(at: Self.at(13), sites: [acme], states: [:])) == ["acme"])
        schedule.finished("acme", failed: false, delay: .seconds(3600), at: Self.at(14))
        #expect(schedule.due(at: Self.at(15), sites: [acme], states: [:]).isEmpty, "one request, one extra poll")
    }

    @Test func failuresBackOffDoublingUpToAnHourAndAreCounted() throws {
        let acme = try Self.site("acme")
        #expect(Schedule.nextDelay(for: acme, failures: 0, retryAfter: nil, jitter: 0) == .seconds(60))
        #expect(Schedule.nextDelay(for: acme, failures: 1, retryAfter: nil, jitter: 0) == .seconds(120))
        #expect(Schedule.nextDelay(for: acme, failures: 3, retryAfter: nil, jitter: 0) == .seconds(480))
        #expect(Schedule.nextDelay(for: acme, failures: 30, retryAfter: nil, jitter: 0) == .seconds(3600))
        var schedule = Schedule(limits: .init(concurrentPolls: 16, concurrentPollsPerHost: 2))
        _ = schedule.due(at: Self.at(0), sites: [acme], states: [:])
        schedule.finished("acme", failed: true, delay: .seconds(120), at: Self.at(1))
        schedule.finished("acme", failed: true, delay: .seconds(240), at: Self.at(200))
        let due = schedule.due(at: Self.at(500), sites: [acme], states: [:])
        #expect(due.first?.failuresSoFar == 2)
        // A success resets the count.
        schedule.finished("acme", failed: false, delay: .seconds(60), at: Self.at(501))
        #expect(schedule.due(at: Self.at(600), sites: [acme], states: [:]).first?.failuresSoFar == 0)
    }

    @Test func loginDelayIsWaitedOutButNeverShortensTheInterval() throws {
        let acme = try Self.site("acme")
        #expect(Schedule.nextDelay(for: acme, failures: 1, retryAfter: .seconds(600), jitter: 0.1) == .seconds(600))
        #expect(Schedule.nextDelay(for: acme, failures: 1, retryAfter: .seconds(10), jitter: 0.1) == .seconds(60))
    }

    @Test func jitterStaysWithinTenPercent() throws {
        let acme = try Self.site("acme")
        #expect(Schedule.nextDelay(for: acme, failures: 0, retryAfter: nil, jitter: -0.1) == .seconds(54))
        #expect(Schedule.nextDelay(for: acme, failures: 0, retryAfter: nil, jitter: 0.1) == .seconds(66))
    }

    @Test func anOperatorsDisableAndEnableTakeEffect() throws {
        var schedule = Schedule(limits: .init(concurrentPolls: 16, concurrentPollsPerHost: 2))
        let acme = try Self.site("acme")
        let disabled = ["acme": SiteState(site: "acme", enabled: false)]
        #expect(schedule.due(at: Self.at(0), sites: [acme], states: disabled).isEmpty)
        #expect(Self.names(schedule.due(at: Self.at(1), sites: [acme], states: [:])) == ["acme"])
        // A site disabled in its file, enabled by the operator.
        let off = try Self.site("off", enabled: false)
        #expect(schedule.due(at: Self.at(2), sites: [off], states: [:]).isEmpty)
        let enabled = ["off": SiteState(site: "off", enabled: true)]
        #expect(Self.names(schedule.due(at: Self.at(3), sites: [off], states: enabled)) == ["off"])
    }

    @Test func pollsPerHostAndInAllAreLimited() throws {
        var schedule = Schedule(limits: .init(concurrentPolls: 3, concurrentPollsPerHost: 2))
        let shared = try ["a", "b", "c"].map { try Self.site($0, host: "pop.shared.test") }
        let other = try ["x", "y"].map { try Self.site($0, host: "pop.other.test") }
        // Two of the shared host, then one of the other (three in all).
        #expect(Self.names(schedule.due(at: Self.at(0), sites: shared + other, states: [:])) == ["a", "b", "x"])
        // A slot frees: the next waiting site after the last one started (y, round robin).
        schedule.finished("a", failed: false, delay: .seconds(60), at: Self.at(5))
        #expect(Self.names(schedule.due(at: Self.at(6), sites: shared + other, states: [:])) == ["y"])
        schedule.finished("x", failed: false, delay: .seconds(60), at: Self.at(7))
        #expect(Self.names(schedule.due(at: Self.at(8), sites: shared + other, states: [:])) == ["c"])
        #expect(schedule.running.count == 3)
    }
}

/// The daemon loop's timers in virtual time: each step collects the actions up to the wait.
@Suite struct SchedulerStateMachineTests {
    typealias Machine = SchedulerStateMachine<ContinuousClock.Instant>

    enum Step: Equatable {
        case reload, poll(String), outbox, wait(Int?)
    }

    /// The actions at `seconds`, with each reload answered by `sites`.
    static func step(_ machine: inout Machine, at seconds: Int, sites: [RemoteSite]) -> [Step] {
        var steps: [Step] = []
        while true {
            switch machine.nextAction(at: PollScheduleTests.at(seconds)) {
            case .reloadSites:
                steps.append(.reload)
                machine.reloaded(sites: sites, states: [:])
            case .startPoll(let site, _):
                steps.append(.poll(site.name))
            case .sendOutbox:
                steps.append(.outbox)
            case .wait(let wakeUpAt):
                steps.append(.wait(wakeUpAt.map { Int((PollScheduleTests.start.duration(to: $0)).components.seconds) }))
                return steps
            }
        }
    }

    static func machine() -> Machine {
        Machine(limits: .init(concurrentPolls: 16, concurrentPollsPerHost: 2), now: PollScheduleTests.at(0))
    }

    @Test func sitesAreLoadedFirstThenPolledThenTheLoopWaitsForTheNextLook() throws {
        var machine = Self.machine()
        let sites = [try PollScheduleTests.site("acme"), try PollScheduleTests.site("globex", host: "pop.globex.test")]
        #expect(Self.step(&machine, at: 0, sites: sites) == [.reload, .poll("acme"), .poll("globex"), .wait(1)])
        // Woken or not, one wake-up stays pending until it fires.
        #expect(Self.step(&machine, at: 0, sites: sites) == [.wait(nil)])
        machine.wokeUp()
        #expect(Self.step(&machine, at: 1, sites: sites) == [.reload, .wait(2)])
    }

    @Test func aPollThatEndsIsDueAgainAfterItsDelay() throws {
        var machine = Self.machine()
        let sites = [try PollScheduleTests.site("acme", interval: "10s")]
        _ = Self.step(&machine, at: 0, sites: sites)
        machine.pollFinished("acme", failed: false, delay: .seconds(10), at: PollScheduleTests.at(0))
        machine.wokeUp()
        #expect(Self.step(&machine, at: 9, sites: sites) == [.reload, .wait(10)])
        machine.wokeUp()
        #expect(Self.step(&machine, at: 10, sites: sites) == [.reload, .poll("acme"), .wait(11)])
    }

    @Test func theOutboxGoesOutEveryIntervalAfterItsPreviousRunOneAtATime() throws {
        var machine = Self.machine()
        #expect(Self.step(&machine, at: 0, sites: []) == [.reload, .wait(1)])
        machine.wokeUp()
        #expect(Self.step(&machine, at: 15, sites: []) == [.reload, .outbox, .wait(16)])
        machine.wokeUp()
        // Still sending at 31 s: no second run beside it.
        #expect(Self.step(&machine, at: 31, sites: []) == [.reload, .wait(32)])
        machine.outboxSent(at: PollScheduleTests.at(31))
        machine.wokeUp()
        #expect(Self.step(&machine, at: 45, sites: []) == [.reload, .wait(46)])
        machine.wokeUp()
        #expect(Self.step(&machine, at: 46, sites: []) == [.reload, .outbox, .wait(47)])
    }

    @Test func aReloadThatDropsASiteStopsItsPolls() throws {
        var machine = Self.machine()
        let acme = try PollScheduleTests.site("acme", interval: "1s")
        _ = Self.step(&machine, at: 0, sites: [acme])
        machine.pollFinished("acme", failed: false, delay: .seconds(1), at: PollScheduleTests.at(0))
        machine.wokeUp()
        #expect(Self.step(&machine, at: 1, sites: []) == [.reload, .wait(2)])
    }
}

@Suite struct SiteReloadTests {
    @Test func aBrokenFileKeepsItsLastGoodSites() throws {
        let acme = try PollScheduleTests.site("acme")
        let globex = try PollScheduleTests.site("globex", host: "pop.globex.test")
        var faster = globex
        faster.poll.interval = .seconds(10)
        let previous = SiteDirectory(sites: [acme, globex], errors: [], local: nil)
        let broken = SiteConfigurationError(file: acme.sourceFile, line: 3, field: "pop3.port", message: "must be a number")
        let reload = SiteReload(previous: previous, loaded: SiteDirectory(sites: [faster], errors: [broken], local: nil))
        #expect(reload.directory.sites.map(\.name).sorted() == ["acme", "globex"])
        #expect(reload.directory.site(named: "acme") == acme, "the last good version")
        #expect(reload.keptLastGood.map(\.site) == ["acme"])
        #expect(reload.loading == ["globex"])
        #expect(reload.changed == ["globex"] && reload.added.isEmpty && reload.removed.isEmpty)

        // A file removed takes its site; a new one adds one.
        let next = SiteReload(previous: reload.directory, loaded: SiteDirectory(sites: [acme, try PollScheduleTests.site("initech")], errors: [], local: nil))
        #expect(next.removed == ["globex"] && next.added == ["initech"] && next.keptLastGood.isEmpty)
    }
}

/// Requests to the daemon: answered by the first poll that started after them.
@Suite(.timeLimit(.minutes(1))) struct DaemonPollsTests {
    @Test func aRequestIsAnsweredByThePollThatStartedAfterIt() async throws {
        let polls = DaemonPolls()
        let acme = try PollScheduleTests.site("acme")
        let before = Date()
        // A poll already running when the request comes does not answer it.
        polls.started("acme", at: before.addingTimeInterval(-5))
        async let answer = polls.pollNow(acme)
        while polls.pendingRequests().isEmpty { await Task.yield() }
        #expect(polls.takeRequests() == ["acme"])
        #expect(polls.takeRequests().isEmpty, "taken once")
        polls.progress("acme", messages: 2, bytes: 20)
        #expect(polls.running() == [RunningPoll(site: "acme", started: before.addingTimeInterval(-5), messages: 2, bytes: 20)])
        polls.finished("acme", startedAt: before.addingTimeInterval(-5), outcome: PollNowOutcome(site: "acme", messages: 9, bytes: 9, transfers: [], error: nil))
        #expect(polls.running().isEmpty)
        let startedAfter = Date().addingTimeInterval(1)
        polls.started("acme", at: startedAfter)
        polls.finished("acme", startedAt: startedAfter, outcome: PollNowOutcome(site: "acme", messages: 1, bytes: 5, transfers: ["T1"], error: nil))
        #expect(await answer == PollNowOutcome(site: "acme", messages: 1, bytes: 5, transfers: ["T1"], error: nil))
    }

    @Test func aRefusalAndAShutdownAnswerAtOnce() async throws {
        let polls = DaemonPolls()
        let acme = try PollScheduleTests.site("acme")
        async let refused = polls.pollNow(acme)
        while polls.pendingRequests().isEmpty { await Task.yield() }
        #expect(polls.takeRequests() == ["acme"], "as the scheduler takes them")
        polls.refuse("acme", reason: "site acme is disabled: enable it first")
        #expect(await refused.error == "site acme is disabled: enable it first")
        async let stopped = polls.pollNow(acme)
        while polls.pendingRequests().isEmpty { await Task.yield() }
        polls.answerAll(reason: "the daemon is shutting down")
        #expect(await stopped.error == "the daemon is shutting down")
    }
}
