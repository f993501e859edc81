import Foundation
import GatepostCatalog
@testable import GatepostCore
import GatepostTestSupport
import Logging
import Testing

/// Alerts in virtual time: each condition opens once at the instant it holds and resolves at
/// the instant it clears; instants are given, never waited for.
@Suite struct AlertTests {
    /// Monday 30 November 2026, 12:00 UTC.
    static let monday = Date(timeIntervalSince1970: 1_796_040_000)

    static func at(_ seconds: TimeInterval) -> Date { monday.addingTimeInterval(seconds) }

    static func site(_ name: String, _ extra: String = "") throws -> RemoteSite {
        try #require(try SiteLoader(environment: [:]).parse("pop3: {host: pop.\(name).test, user: u, password: p}\n" + extra, file: "/sites/\(name).yaml"))
    }

    static func local(_ text: String) throws -> LocalSite {
        guard case .local(let local) = try SiteLoader(environment: ["HOOK_SECRET": "s3cret"]).parseDocument("kind: local-site\n" + text, file: "/sites/local.yaml") else {
            throw LocalSiteMissing()
        }
        return local
    }

    struct LocalSiteMissing: Error {}

    static func monitor(_ catalog: InMemoryCatalog, sites: [RemoteSite], local: LocalSite? = nil) -> AlertMonitor {
        let directory = SiteDirectory(sites: sites, errors: [], local: local)
        return AlertMonitor(catalog: catalog, sites: { directory }, logger: Logger(label: "test"))
    }

    static func keys(_ alerts: [Alert]) -> [String] { alerts.map(\.key) }

    @Test func aSiteFailsAfterThreePollsOrAtOnceForItsPassword() async throws {
        let catalog = InMemoryCatalog()
        let monitor = Self.monitor(catalog, sites: [try Self.site("acme"), try Self.site("bcorp")])
        for n in 1...2 {
            try await catalog.recordPoll(site: "acme", at: Self.at(Double(n)), error: "connection refused", errorCategory: "connection", messages: 0, bytes: 0, nextPoll: nil)
        }
        #expect(try await monitor.check(at: Self.at(10)).isEmpty, "two connection failures are not yet a failing site")
        try await catalog.recordPoll(site: "acme", at: Self.at(20), error: "connection refused", errorCategory: "connection", messages: 0, bytes: 0, nextPoll: nil)
        try await catalog.recordPoll(site: "bcorp", at: Self.at(20), error: "-ERR wrong password", errorCategory: "authentication", messages: 0, bytes: 0, nextPoll: nil)
        let opened = try await monitor.check(at: Self.at(30)).opened
        #expect(Self.keys(opened) == ["site-failing:acme:polls", "site-failing:bcorp:polls"])
        #expect(opened.last?.summary.contains("authentication") == true && opened.last?.summary.contains("wrong password") == true)
        #expect(try await monitor.check(at: Self.at(40)).isEmpty, "opened once")
        try await catalog.recordPoll(site: "acme", at: Self.at(50), error: nil, errorCategory: nil, messages: 1, bytes: 10, nextPoll: nil)
        let changes = try await monitor.check(at: Self.at(60))
        #expect(Self.keys(changes.resolved) == ["site-failing:acme:polls"] && changes.opened.isEmpty)
        #expect(changes.resolved.first?.resolvedAt == Self.at(60))
    }

    @Test func aNodeWhoseHeartbeatRanOutIsGoneUntilItBeatsAgainAndOneThatLeftIsNot() async throws {
        let catalog = InMemoryCatalog()
        let monitor = Self.monitor(catalog, sites: [try Self.site("acme")])
        func beat(_ name: String, at seconds: TimeInterval) async throws {
            _ = try await catalog.heartbeat(ClusterNode(
                name: name, instance: name + "-1", startedAt: Self.at(0), heartbeatAt: Self.at(seconds), expiresAt: Self.at(seconds + 60)
            ))
        }
        try await beat("gw1", at: 0)
        try await beat("gw2", at: 0)
        #expect(try await monitor.check(at: Self.at(30)).isEmpty)
        try await beat("gw1", at: 50)
        // gw2 was killed: its heartbeat ends at 60. gw1 beats on.
        let opened = try await monitor.check(at: Self.at(61)).opened
        #expect(Self.keys(opened) == ["node-gone:-:gw2"])
        #expect(opened.first?.site == nil)
        #expect(opened.first?.summary.hasPrefix("node gw2 gone: no heartbeat since ") == true, "\(opened)")
        // Restarted, it beats again: resolved.
        try await beat("gw2", at: 70)
        try await beat("gw1", at: 70)
        #expect(Self.keys(try await monitor.check(at: Self.at(80)).resolved) == ["node-gone:-:gw2"])
        // Stopped on purpose: it leaves, nothing opens.
        try await catalog.leave(node: "gw2", instance: "gw2-1")
        #expect(try await monitor.check(at: Self.at(200)).opened.map(\.key) == ["node-gone:-:gw1"], "gw1 stopped beating at 70 without leaving")
        // Gone for good: the operator forgets it, and the alert resolves. A live node is refused.
        let commands = OperatorCommands(directory: SiteDirectory(sites: [], errors: [], local: nil), catalog: catalog, logger: Logger(label: "test"))
        try await beat("gw3", at: 190)
        await #expect(throws: OperatorCommands.Failure.self) { try await commands.forgetNode("gw3", actor: "olivia", at: Self.at(200)) }
        await #expect(throws: OperatorCommands.Failure.noSuchNode("gw9")) { try await commands.forgetNode("gw9", actor: "olivia", at: Self.at(200)) }
        try await commands.forgetNode("gw1", actor: "olivia", at: Self.at(200))
        #expect(Self.keys(try await monitor.check(at: Self.at(210)).resolved) == ["node-gone:-:gw1"])
        #expect(try await catalog.clusterNodes().map(\.name) == ["gw3"])
        #expect(try await catalog.operatorActions(site: nil, transferId: nil, limit: 5).first?.action == "node.forget")
    }

    @Test func aDisabledSiteIsNotAlertedAbout() async throws {
        let catalog = InMemoryCatalog()
        let monitor = Self.monitor(catalog, sites: [try Self.site("acme")])
        try await catalog.recordPoll(site: "acme", at: Self.at(1), error: "bad", errorCategory: "authentication", messages: 0, bytes: 0, nextPoll: nil)
        #expect(try await monitor.check(at: Self.at(2)).opened.count == 1)
        try await catalog.setSiteEnabled("acme", enabled: false)
        #expect(Self.keys(try await monitor.check(at: Self.at(3)).resolved) == ["site-failing:acme:polls"], "the operator stopped it")
    }

    @Test func aMessageIsStuckAfterThreePollsThatCouldNotRetrieveIt() async throws {
        let catalog = InMemoryCatalog()
        let monitor = Self.monitor(catalog, sites: [try Self.site("acme")])
        try await catalog.recordPoll(site: "acme", at: Self.at(0), error: nil, errorCategory: nil, messages: 0, bytes: 0, nextPoll: nil)
        for poll in 1...3 {
            try await catalog.recordSkips(site: "acme", skipped: [SkippedMessage(uidl: "u7", number: 7, reason: "-ERR message locked", at: Self.at(Double(poll)))], complete: true)
            let opened = try await monitor.check(at: Self.at(Double(poll) + 0.5)).opened
            #expect(Self.keys(opened) == (poll == 3 ? ["message-stuck:acme:u7"] : []), "poll \(poll)")
        }
        try await catalog.recordSkips(site: "acme", skipped: [], complete: true)
        #expect(Self.keys(try await monitor.check(at: Self.at(10)).resolved) == ["message-stuck:acme:u7"])
    }

    @Test func transfersOpenAlertsWhileTheyNeedSomeoneAndForTheLookbackAtMost() async throws {
        let catalog = InMemoryCatalog()
        let monitor = Self.monitor(catalog, sites: [try Self.site("acme")])
        var recover = TransferRecord(id: "T1", type: .xfer, fileName: TransferRecord.recoverFileName, site: "acme", state: .received,
                                     recipients: [], size: 10, receivedAt: Self.at(0))
        recover.classification = "two attached files"
        let failed = TransferRecord(id: "T2", type: .xfer, fileName: "INV.csv", site: "acme", application: "billing", state: .failed,
                                    recipients: [], size: 10, receivedAt: Self.at(0), error: "exit 3")
        try await catalog.commitReceived([ReceivedTransfer(record: recover, uidl: "u1"), ReceivedTransfer(record: failed, uidl: "u2")])
        let outbound = TransferRecord(id: "T3", direction: .outbound, type: .xfer, fileName: "ORD.csv", site: "acme", state: .queued,
                                      recipients: ["edi@acme.example"], size: 5, receivedAt: Self.at(0), ack: .requested)
        let entry = OutboxEntry(id: "T3", kind: .file, transferId: "T3", site: "acme", mailFrom: "g@ours.example", recipients: ["edi@acme.example"],
                                path: "/spool/out/T3.eml", messageId: "T3@ours.example", nextAttempt: Self.at(0), createdAt: Self.at(0))
        try await catalog.commitOutbound(outbound, message: entry)

        let opened = try await monitor.check(at: Self.at(60)).opened
        #expect(Set(Self.keys(opened)) == ["recover-received:acme:T1", "delivery-failed:acme:T2"])
        #expect(opened.first { $0.kind == "recover-received" }?.summary.contains("two attached files") == true)

        // The outbox entry has waited an hour: stale. Then the file is sent and goes overdue.
        #expect(Self.keys(try await monitor.check(at: Self.at(3601)).opened) == ["outbox-stale:acme:outbox"])
        try await catalog.outboxSent(entry, at: Self.at(3602), refused: [], followUp: nil)
        _ = try await catalog.markOverdue(site: "acme", sentBefore: Self.at(3700))
        let sent = try await monitor.check(at: Self.at(3700))
        #expect(Self.keys(sent.opened) == ["acknowledgment-overdue:acme:T3"] && Self.keys(sent.resolved) == ["outbox-stale:acme:outbox"])

        // An operator delivers the RECOVER by hand: its alert resolves.
        try await catalog.updateDelivery(id: "T1", state: .delivered, application: "billing", error: nil, deliveredPath: "/apps/x")
        #expect(Self.keys(try await monitor.check(at: Self.at(3800)).resolved) == ["recover-received:acme:T1"])

        // A failed delivery retried and delivered resolves.
        try await catalog.recordDeliveryAttempt(id: "T2", .delivered(at: Self.at(3900), application: "billing", path: "/apps/INV.csv"))
        #expect(Self.keys(try await monitor.check(at: Self.at(3950)).resolved) == ["delivery-failed:acme:T2"])
        try await catalog.recordDeliveryAttempt(id: "T2", .failed(at: Self.at(4000), application: "billing", error: "exit 3"))
        #expect(Self.keys(try await monitor.check(at: Self.at(4050)).opened) == ["delivery-failed:acme:T2"], "failed again: a new alert")

        // Past the lookback (7 days) what is left resolves.
        let later = try await monitor.check(at: Self.at(7 * 86400 + 1))
        #expect(Set(Self.keys(later.resolved)) == ["delivery-failed:acme:T2", "acknowledgment-overdue:acme:T3"])
    }

    @Test func aRefusedOutboundFileOpensAnAlert() async throws {
        let catalog = InMemoryCatalog()
        let monitor = Self.monitor(catalog, sites: [try Self.site("acme")])
        let outbound = TransferRecord(id: "T3", direction: .outbound, type: .xfer, fileName: "ORD.csv", site: "acme", state: .queued,
                                      recipients: ["edi@acme.example"], size: 5, receivedAt: Self.at(0), ack: .requested)
        let entry = OutboxEntry(id: "T3", kind: .file, transferId: "T3", site: "acme", mailFrom: "g@ours.example", recipients: ["edi@acme.example"],
                                path: "/spool/out/T3.eml", messageId: "T3@ours.example", nextAttempt: Self.at(0), createdAt: Self.at(0))
        try await catalog.commitOutbound(outbound, message: entry)
        try await catalog.outboxFailed(entry, error: "550 no such user", retryAt: nil)
        let opened = try await monitor.check(at: Self.at(10)).opened
        #expect(Self.keys(opened) == ["acknowledgment-failed:acme:T3"])
        #expect(opened.first?.summary.contains("550") == true)
        // An operator retries it: queued again, the alert resolves.
        #expect(try await catalog.requeueOutbox(transferId: "T3", at: Self.at(20)) == 1)
        #expect(Self.keys(try await monitor.check(at: Self.at(30)).resolved) == ["acknowledgment-failed:acme:T3"])
    }

    // MARK: Expiry

    @Test func whatASiteNeedsIsToldBeforeItExpiresAndResolvedWhenRenewed() async throws {
        let catalog = InMemoryCatalog()
        let pki = try TestPKI()
        defer { pki.remove() }
        // Its secret's known expiry is in 20 days; the client certificate (the test CA's) in an hour.
        let expires = OperatorText.timestamp(Date().addingTimeInterval(20 * 86400)).prefix(10)
        let site = try Self.site("acme", """
            smtp: {host: smtp.acme.test, from: g@ours.example, user: u, password: p, password_expires: "\(expires)"}
            """)
        var tls = site
        tls.pop3.tls.clientCertificate = pki.clientCertificateFile
        tls.pop3.tls.clientKey = pki.clientKeyFile
        let monitor = Self.monitor(catalog, sites: [tls])
        let now = Date()
        try await catalog.recordPoll(site: "acme", at: now, error: nil, errorCategory: nil, messages: 0, bytes: 0, nextPoll: nil,
                                     serverCertificateExpires: now.addingTimeInterval(3 * 86400 + 60))
        let opened = try await monitor.check(at: now).opened
        #expect(Set(Self.keys(opened)) == ["expiring:acme:pop3 server certificate", "expiring:acme:pop3.tls.client_certificate"],
                "the password's 20 days are beyond the 14 told before")
        #expect(opened.contains { $0.summary.contains("pop3 server certificate expires in 3 days") }, "\(opened.map(\.summary))")
        #expect(opened.contains { $0.summary.contains("client_certificate expires today") })

        // Six days later the password is within 14 days; the server's certificate was renewed.
        let later = now.addingTimeInterval(7 * 86400)
        try await catalog.recordPoll(site: "acme", at: later, error: nil, errorCategory: nil, messages: 0, bytes: 0, nextPoll: nil,
                                     serverCertificateExpires: later.addingTimeInterval(90 * 86400))
        let changes = try await monitor.check(at: later)
        #expect(Self.keys(changes.opened) == ["expiring:acme:smtp.password"])
        #expect(Self.keys(changes.resolved) == ["expiring:acme:pop3 server certificate"])
        #expect(changes.opened.first?.summary.contains("expires in 1") == true, "\(changes.opened.map(\.summary))")
        // A failed poll does not forget the certificate it saw last.
        try await catalog.recordPoll(site: "acme", at: later, error: "refused", errorCategory: "connection", messages: 0, bytes: 0, nextPoll: nil)
        #expect(try await catalog.siteStates()["acme"]?.serverCertificateExpires == later.addingTimeInterval(90 * 86400))
    }

    @Test func anExpiryIsADateAndNeedsItsSecret() throws {
        for (text, field) in [
            ("smtp: {host: h, from: g@o.example, password: p, password_expires: soon}", "smtp.password_expires"),
            ("smtp: {host: h, from: g@o.example, password_expires: 2027-01-01}", "smtp.password_expires"),
        ] {
            do {
                _ = try Self.site("acme", text)
                Issue.record("accepted: \(text)")
            } catch let error as SiteConfigurationError {
                #expect(error.field == field, "\(error)")
            }
        }
        let site = try Self.site("acme", "smtp: {host: h, from: g@o.example, password: p, password_expires: 2027-01-31}")
        #expect(site.secretExpiries.map(\.field) == ["smtp.password"])
        #expect(site.secretExpiries.first?.expires == StrictDate.parse("2027-01-31"))
    }

    // MARK: Probes

    @Test func aProbeIsMissingWhenTheNewestPastItsDeadlineDidNotComeBackAndNoLaterOneDid() {
        let deadline = Duration.seconds(900)
        func probe(_ sent: TimeInterval, returned: TimeInterval? = nil) -> Probe {
            Probe(site: "acme", messageId: "p\(sent)", sentAt: Self.at(sent), returnedAt: returned.map(Self.at))
        }
        #expect(Probes.missing([], deadline: deadline, at: Self.at(0)) == nil)
        #expect(Probes.missing([probe(0)], deadline: deadline, at: Self.at(900)) == nil, "within its deadline")
        #expect(Probes.missing([probe(0)], deadline: deadline, at: Self.at(901))?.messageId == "p0.0")
        #expect(Probes.missing([probe(0, returned: 60)], deadline: deadline, at: Self.at(5000)) == nil)
        // The next probe is out, within its deadline: the missing one is still missing.
        #expect(Probes.missing([probe(0), probe(3600)], deadline: deadline, at: Self.at(3700))?.messageId == "p0.0")
        // A later one came back: the path works again, whatever happened to the first.
        #expect(Probes.missing([probe(0), probe(3600, returned: 3660)], deadline: deadline, at: Self.at(3700)) == nil)
        #expect(Probes.missing([probe(0, returned: 30), probe(3600)], deadline: deadline, at: Self.at(4501))?.messageId == "p3600.0")
    }

    /// A probe the SMTP server will not take is recorded all the same: it does not come back,
    /// and that is the alert.
    @Test func aProbeThatCannotBeSentIsMissingAtItsDeadline() async throws {
        let catalog = InMemoryCatalog()
        // Port 1 on loopback: nobody listens, the connection is refused at once.
        let site = try Self.site("acme", """
            smtp: {host: 127.0.0.1, port: 1, security: none, from: gateway@ours.example}
            probe: {every: 1h, deadline: 10m, to: orders@acme.example}
            """)
        let monitor = Self.monitor(catalog, sites: [site])
        try await catalog.recordPoll(site: "acme", at: Self.at(0), error: nil, errorCategory: nil, messages: 0, bytes: 0, nextPoll: nil)
        #expect(try await monitor.check(at: Self.at(1)).isEmpty)
        #expect(try await catalog.probes(site: "acme", limit: 5).map(\.sentAt) == [Self.at(1)], "recorded though refused")
        #expect(try await monitor.check(at: Self.at(2)).isEmpty, "not due again before its hour")
        #expect(try await catalog.probes(site: "acme", limit: 5).count == 1)
        #expect(Self.keys(try await monitor.check(at: Self.at(602)).opened) == ["probe-missing:acme:probe"])
    }

    @Test func aProbeIsDueEveryIntervalAndNeedsTheSitesSMTP() throws {
        let site = try Self.site("acme", """
            smtp: {host: smtp.acme.test, from: gateway@ours.example}
            probe: {every: 1h, deadline: 10m, to: orders@acme.example}
            """)
        #expect(site.probe == RemoteSite.ProbeSettings(every: .seconds(3600), deadline: .seconds(600), to: "orders@acme.example"))
        #expect(Probes.isDue(site, lastSent: nil, at: Self.monday))
        #expect(!Probes.isDue(site, lastSent: Self.at(-3599), at: Self.monday))
        #expect(Probes.isDue(site, lastSent: Self.at(-3600), at: Self.monday))
        #expect(!Probes.isDue(try Self.site("bcorp"), lastSent: nil, at: Self.monday), "no probe: configured")
        for (text, field) in [
            ("probe: {to: a@b.example}", "probe"),
            ("smtp: {host: h, from: g@o.example}\nprobe: {every: 10m, deadline: 10m, to: a@b.example}", "probe.deadline"),
            ("smtp: {host: h, from: g@o.example}\nprobe: {every: 1h}", "probe"),
            ("smtp: {host: h, from: g@o.example}\nprobe: {to: nobody}", "probe.to"),
        ] {
            do {
                _ = try Self.site("acme", text)
                Issue.record("accepted: \(text)")
            } catch let error as SiteConfigurationError {
                #expect(error.field == field, "\(error)")
            }
        }
    }

    // MARK: Search index

    @Test func theSearchIndexerCatchesUpInBatches() async throws {
        let catalog = try SQLiteCatalog(path: FileManager.default.temporaryDirectory.appendingPathComponent("gatepost-index-\(UUID().uuidString).sqlite").path)
        defer { try? FileManager.default.removeItem(atPath: catalog.path) }
        let batch = (0..<25).map { index in
            ReceivedTransfer(record: TransferRecord(id: "T\(index)", type: .xfer, fileName: "INV-\(index).csv", site: "acme", state: .received,
                                                    recipients: [], size: 1, receivedAt: Self.at(Double(index))), uidl: "u\(index)")
        }
        try await catalog.commitReceived(batch)
        let indexer = SearchIndexer(catalog: catalog, batch: 10, logger: Logger(label: "test"))
        #expect(try await indexer.catchUp() == 25, "three batches: 10, 10, 5")
        #expect(try await indexer.catchUp() == 0)
        #expect(try await catalog.indexForSearch(limit: 10) == 0)
    }

    // MARK: Expected arrivals

    @Test func aRulesWindowRunsFromTheDeadlineBeforeToTheLastOneInItsTimeZone() throws {
        let paris = try #require(TimeZone(identifier: "Europe/Paris"))
        let rule = ExpectedArrival(fileName: "INV*.csv", weekdays: Set(2...6), hour: 9, minute: 30, timeZone: paris)
        // Monday 30 November 12:00 UTC is 13:00 in Paris: Monday's 09:30 has passed.
        var window = try #require(rule.lastWindow(at: Self.monday))
        #expect(window.deadline == Date(timeIntervalSince1970: 1_796_027_400), "Monday 08:30 UTC")
        #expect(window.start == Date(timeIntervalSince1970: 1_796_027_400 - 3 * 86400), "Friday 09:30 Paris")
        // Monday 08:00 UTC (09:00 Paris): the last deadline is Friday's.
        window = try #require(rule.lastWindow(at: Self.at(-4 * 3600)))
        #expect(window.deadline == Date(timeIntervalSince1970: 1_796_027_400 - 3 * 86400))
        #expect(window.start == Date(timeIntervalSince1970: 1_796_027_400 - 4 * 86400), "Thursday")
        #expect(ExpectedArrival(fileName: "x", weekdays: [], hour: 9, minute: 0, timeZone: paris).lastWindow(at: Self.monday) == nil)
    }

    @Test func aDeadlineInTheSpringGapComesAtTheFirstTimeThatExists() throws {
        let paris = try #require(TimeZone(identifier: "Europe/Paris"))
        let rule = ExpectedArrival(fileName: "x", weekdays: Set(1...7), hour: 2, minute: 30, timeZone: paris)
        // 29 March 2026, 02:00 Paris becomes 03:00: 02:30 does not exist that day.
        let window = try #require(rule.lastWindow(at: Date(timeIntervalSince1970: 1_774_749_600)))  // 29 March 02:00 UTC
        #expect(window.deadline == Date(timeIntervalSince1970: 1_774_746_000), "03:00 Paris, 01:00 UTC")
        #expect(window.start == Date(timeIntervalSince1970: 1_774_746_000 - 86400 + 1800), "28 March 02:30 Paris, 01:30 UTC")
    }

    @Test func everyNamesDays() {
        #expect(ExpectedArrival.weekdays("weekdays") == Set(2...6))
        #expect(ExpectedArrival.weekdays("daily") == Set(1...7))
        #expect(ExpectedArrival.weekdays("mon, Wednesday,fri") == [2, 4, 6])
        #expect(ExpectedArrival.weekdays("someday") == nil)
        #expect(ExpectedArrival.weekdays("") == nil)
    }

    @Test func aSiteFileSaysWhichFileIsExpectedAndAMistakeIsNamed() throws {
        let site = try Self.site("acme", "expect: [{file_name: \"INV*.csv\", every: weekdays, by: \"09:30\", timezone: Europe/Paris}]\n")
        #expect(site.expectations.first?.weekdays == Set(2...6))
        #expect(site.expectations.first?.timeZone.identifier == "Europe/Paris")
        for (bad, field) in [("by: \"9h30\"", "expect[0].by"), ("by: \"09:30\", timezone: Mars/Olympus", "expect[0].timezone"), ("by: \"09:30\", every: someday", "expect[0].every")] {
            let text = "expect: [{file_name: x, \(bad.contains("every") ? "" : "every: daily, ")\(bad)}]\n"
            #expect(throws: SiteConfigurationError.self) { try Self.site("acme", text) }
            do {
                _ = try Self.site("acme", text)
            } catch let error as SiteConfigurationError {
                #expect(error.field == field && error.line == 2 && error.file == "/sites/acme.yaml", "\(error)")
            }
        }
    }

    @Test func aFileThatDidNotComeByItsDeadlineOpensAnAlertUntilOneComes() async throws {
        let catalog = InMemoryCatalog()
        let site = try Self.site("acme", "expect: [{file_name: \"INV*.csv\", every: daily, by: \"11:00\"}]\n")
        let monitor = Self.monitor(catalog, sites: [site])
        #expect(try await monitor.check(at: Self.at(0)).isEmpty, "never polled: not watched yet")
        try await catalog.recordPoll(site: "acme", at: Self.at(-86400), error: nil, errorCategory: nil, messages: 0, bytes: 0, nextPoll: nil)
        // Sunday's file came Sunday 12:00 (after Sunday's 11:00): it counts for Monday 11:00.
        let sunday = TransferRecord(id: "T1", type: .xfer, fileName: "INV-1.csv", site: "acme", state: .received, recipients: [], size: 1, receivedAt: Self.at(-86400))
        try await catalog.commitReceived(sunday, uidl: "u1")
        #expect(try await monitor.check(at: Self.at(0)).isEmpty)
        // Tuesday 11:00 passes with nothing since Monday 11:00.
        let opened = try await monitor.check(at: Self.at(86400 - 3600 + 1)).opened
        #expect(Self.keys(opened) == ["arrival-missed:acme:expect[0]"])
        #expect(opened.first?.summary.contains("INV*.csv") == true)
        // Another file, not matching, changes nothing; the right one resolves it.
        try await catalog.commitReceived(TransferRecord(id: "T2", type: .xfer, fileName: "ORD-1.csv", site: "acme", state: .received, recipients: [], size: 1, receivedAt: Self.at(86400)), uidl: "u2")
        #expect(try await monitor.check(at: Self.at(86400 + 1)).isEmpty)
        try await catalog.commitReceived(TransferRecord(id: "T3", type: .xfer, fileName: "inv-2.CSV", site: "acme", state: .received, recipients: [], size: 1, receivedAt: Self.at(86400 + 2)), uidl: "u3")
        #expect(Self.keys(try await monitor.check(at: Self.at(86400 + 3)).resolved) == ["arrival-missed:acme:expect[0]"])
    }

    // MARK: Channels

    @Test func aChannelSendsAtMostItsBudgetPerMinuteAndCountsTheRest() {
        var budget = NotificationBudget(perMinute: 3)
        let taken = (0..<5).map { budget.take(at: Self.at(Double($0))).allowed }
        #expect(taken == [true, true, true, false, false])
        #expect(budget.take(at: Self.at(30)).allowed == false)
        let next = budget.take(at: Self.at(60))
        #expect(next.allowed && next.heldBack == 3, "the first of the next minute says how many were held back")
        #expect(budget.take(at: Self.at(61)).heldBack == 0)
    }

    @Test func aSignatureIsTheBodysWithTheSecretAndFresh() throws {
        let body = Data(#"{"event":"opened"}"#.utf8)
        let signature = WebhookSignature.sign(body: body, secret: "s3cret", at: Self.monday)
        #expect(signature.hasPrefix("t=1796040000,sha256="))
        #expect(WebhookSignature.verify(signature, body: body, secret: "s3cret", now: Self.at(10)))
        #expect(!WebhookSignature.verify(signature, body: Data(#"{"event":"resolved"}"#.utf8), secret: "s3cret", now: Self.at(10)))
        #expect(!WebhookSignature.verify(signature, body: body, secret: "other", now: Self.at(10)))
        #expect(!WebhookSignature.verify(signature, body: body, secret: "s3cret", now: Self.at(3600)), "an old signature is a replay")
        #expect(!WebhookSignature.verify("t=1,sha256=zz", body: body, secret: "s3cret", now: Self.at(0)))
        // What a receiver computes (Python: hmac.new(b"Jefe", b"what do ya. want for nothing?",
        // hashlib.sha256)): the time, a dot, the body.
        #expect(WebhookSignature.hex(body: Data(" want for nothing?".utf8), secret: "Jefe", stamp: "what do ya")
            == "038a170d761537b9fa0d1b8f2aea085da792e178f1f77f147de3f54670528a49")
    }

    @Test func aWebhookIsTriedAgainWhileTheReceiverIsDown() {
        #expect((1...5).map { WebhookRetry.delay(afterAttempt: $0) } == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), nil])
        #expect(WebhookRetry.isTransient(status: 503) && WebhookRetry.isTransient(status: 429))
        #expect(!WebhookRetry.isTransient(status: 400) && !WebhookRetry.isTransient(status: 401))
    }

    @Test func channelsAndRoutesAreReadFromTheLocalSite() throws {
        let local = try Self.local("""
            alerts:
              failing_after: 5
              channels:
                ops: {webhook: "https://hooks.example/gatepost", secret: "${HOOK_SECRET}"}
              routes:
                - {kinds: [site-failing, arrival-missed], sites: ["acme*"], channels: [ops, log]}
                - {channels: [log]}
            """)
        let settings = local.alerts
        #expect(settings.failingAfter == 5)
        #expect(settings.channels.map(\.name) == ["log", "ops"])
        let failing = Alert(key: "k", kind: "site-failing", site: "acme-eu", summary: "", openedAt: Self.monday)
        let other = Alert(key: "k", kind: "site-failing", site: "bcorp", summary: "", openedAt: Self.monday)
        #expect(settings.channels(for: failing).map(\.name) == ["log", "ops"])
        #expect(settings.channels(for: other).map(\.name) == ["log"])
        let mail = try Self.local("alerts: {channels: {m: {email: {to: [ops@ours.example], smtp: {host: smtp.ours.example, from: gateway@ours.example}}}}}")
        guard case .email(let to, let smtp) = mail.alerts.channels.last?.destination else { Issue.record("not an e-mail channel"); return }
        #expect(to == ["ops@ours.example"] && smtp.host == "smtp.ours.example" && smtp.port == 465)
        guard case .webhook(_, let secret) = settings.channels[1].destination else { Issue.record("not a webhook"); return }
        #expect(try secret?.resolve() == "s3cret")
        #expect(!"\(settings)".contains("s3cret"), "a secret never shows")

        for (text, field) in [
            ("alerts: {routes: [{kinds: [site-down], channels: [log]}]}", "alerts.routes[0].kinds"),
            ("alerts: {routes: [{channels: [pager]}]}", "alerts.routes[0].channels"),
            ("alerts: {channels: {ops: {webhook: \"ftp://x\"}}}", "alerts.channels.ops.webhook"),
            ("alerts: {failing_after: 0}", "alerts.failing_after"),
            ("alerts: {channels: {m: {email: {to: [not-an-address], smtp: {host: h, from: a@b.example}}}}}", "alerts.channels.m.email.to"),
            ("alerts: {channels: {m: {email: {to: [ops@x.example], smtp: {host: h}}}}}", "alerts.channels.m.email.smtp"),
            ("alerts: {channels: {m: {pager: 1}}}", "alerts.channels.m.pager"),
            ("alerts: {channels: {m: {secret: x}}}", "alerts.channels.m"),
        ] {
            do {
                _ = try Self.local(text)
                Issue.record("accepted: \(text)")
            } catch let error as SiteConfigurationError {
                #expect(error.field == field && error.file == "/sites/local.yaml", "\(error)")
            }
        }
    }

    @Test func aSignedWebhookReachesItsReceiverAfterItCameBack() async throws {
        let sink = WebhookSink(statuses: [503])
        let port = try await sink.start()
        do {
            try await signedWebhook(port: port, sink: sink)
        } catch {
            await sink.stop()
            throw error
        }
        await sink.stop()
    }

    func signedWebhook(port: Int, sink: WebhookSink) async throws {
        let catalog = InMemoryCatalog()
        let local = try Self.local("""
            alerts:
              channels:
                ops: {webhook: "http://127.0.0.1:\(port)/hooks", secret: "${HOOK_SECRET}"}
            """)
        let monitor = Self.monitor(catalog, sites: [try Self.site("acme")], local: local)
        try await catalog.recordPoll(site: "acme", at: Self.at(0), error: "-ERR [AUTH] bad", errorCategory: "authentication", messages: 0, bytes: 0, nextPoll: nil)
        try await monitor.check(at: Date())
        #expect(await sink.waitForAccepted(1), "no notification came")
        #expect(sink.requestsReceived == 2, "the first answer was 503: tried again")
        let request = try #require(sink.accepted.first)
        #expect(request.path == "/hooks")
        let signature = try #require(request.headers["x-gatepost-signature"])
        #expect(WebhookSignature.verify(signature, body: request.body, secret: "s3cret", now: Date()))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let notification = try decoder.decode(AlertNotification.self, from: request.body)
        #expect(notification.event == .opened && notification.alert.kind == "site-failing" && notification.alert.site == "acme")
    }
}
