import GatepostCatalog
@testable import GatepostCore
import GatepostTestSupport
import Logging
import Testing

/// The round the daemon, `gatepost poll` and the demo share: each poll recorded in its site's
/// state with when the caller wants it again, failures included.
@Suite struct PollRoundTests {
    @Test func aRoundRecordsEachPollAndWhenTheSiteIsDueAgain() async throws {
        let fixture = try await PollFixture()
        defer { let server = fixture.server; Task { await server.stop() } }
        let round = PollRound(
            spool: fixture.spool, catalog: fixture.catalog, local: nil, allSites: [fixture.site], retry: .none, logger: Logger(label: "test")
        )
        let report = await round.run([fixture.site]) { _, _ in .seconds(300) }
        let polled = try #require(report.polls.first)
        #expect(try polled.result.get().records.count == 4)
        #expect(polled.nextDelay == .seconds(300))
        let state = try #require(try await fixture.catalog.siteStates()[fixture.site.name])
        #expect(state.lastError == nil)
        #expect(state.messages == 4)
        let due = try #require(state.nextPoll)
        #expect(due.timeIntervalSince(polled.started) > 290)
        // No smtp: and no local.yaml: nothing to send, nothing to deliver.
        #expect(report.outbox.isEmpty)
        #expect(report.deliveries.map { _ in true } == nil)
    }

    @Test func aFailedPollIsRecordedWithItsCause() async throws {
        var behavior = ScriptedPOP3Server.Behavior()
        behavior.override = { $0.hasPrefix("PASS") || $0.hasPrefix("AUTH") ? "-ERR [AUTH] invalid user name or password" : nil }
        let fixture = try await PollFixture(behavior: behavior)
        defer { let server = fixture.server; Task { await server.stop() } }
        let round = PollRound(
            spool: fixture.spool, catalog: fixture.catalog, local: nil, allSites: [fixture.site], retry: .none, logger: Logger(label: "test")
        )
        let report = await round.run([fixture.site]) { _, result in
            if case .failure = result { .seconds(60) } else { nil }
        }
        let polled = try #require(report.polls.first)
        guard case .failure(let error) = polled.result else {
            Issue.record("a refused login is a failed poll")
            return
        }
        let state = try #require(try await fixture.catalog.siteStates()[fixture.site.name])
        #expect(state.lastError == error.cause)
        #expect(state.lastSuccess == nil)
        #expect(state.nextPoll != nil)
    }
}
