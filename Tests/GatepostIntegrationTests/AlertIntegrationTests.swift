import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Logging
import Testing

/// Alerts against the real peers: a daemon polling Dovecot tells a webhook when a partner's
/// password changes and when it works again; an expected file judged at its deadline.
@Suite(.serialized) struct AlertIntegrationTests {
    static func root() throws -> String {
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-alerts-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: root + "/sites", withIntermediateDirectories: true)
        return root
    }

    /// The catalog of `catalogPath` and a monitor over the sites folder as it is, for tests
    /// that give the instants themselves.
    static func monitor(sites: String, catalogPath: String) throws -> (SQLiteCatalog, AlertMonitor, SiteDirectory) {
        let catalog = try SQLiteCatalog(path: catalogPath)
        let directory = try SiteLoader().loadDirectory(sites)
        #expect(directory.errors.isEmpty, "\(directory.errors)")
        return (catalog, AlertMonitor(catalog: catalog, sites: { directory }, logger: Logger(label: "test")), directory)
    }

    static func notifications(_ sink: WebhookSink) throws -> [AlertNotification] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try sink.accepted.map { try decoder.decode(AlertNotification.self, from: $0.body) }
    }

    @Test func aChangedPasswordReachesTheWebhookSignedAndItsFixResolvesIt() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let sink = WebhookSink()
        let port = try await sink.start()
        do {
            try await changedPassword(dovecot: dovecot, sink: sink, port: port)
        } catch {
            await sink.stop()
            throw error
        }
        await sink.stop()
    }

    func changedPassword(dovecot: DovecotPeer, sink: WebhookSink, port: Int) async throws {
        let root = try Self.root()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sites = root + "/sites", spool = root + "/spool"
        try dovecot.pop3Block(user: "alice").appending("\npoll: {interval: 1s}\n").write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        try """
            kind: local-site
            alerts:
              interval: 1s
              channels:
                ops: {webhook: "http://127.0.0.1:\(port)/gatepost", secret_file: hook.secret}
            """.write(toFile: sites + "/local.yaml", atomically: true, encoding: .utf8)
        try "hook-secret\n".write(toFile: sites + "/hook.secret", atomically: true, encoding: .utf8)
        let global = ["--sites", sites, "--spool", spool]
        let daemon = try ChildProcess.start(GatepostProcess.binary, ["run"] + global)
        var stopped = false
        defer { if !stopped { daemon.signal(SIGKILL) } }
        let catalogPath = spool + "/catalog.sqlite"
        let polled = try await DaemonTests.waitUntil(30) {
            guard FileManager.default.fileExists(atPath: catalogPath) else { return false }
            return try await SQLiteCatalog(path: catalogPath).siteStates()["alice"]?.lastSuccess != nil
        }
        #expect(polled)
        #expect(sink.requestsReceived == 0, "a healthy site: nothing to say")
        // The poll kept when Dovecot's certificate expires (825 days away: no alert).
        let certificateExpires = try await SQLiteCatalog(path: catalogPath).siteStates()["alice"]?.serverCertificateExpires
        #expect(certificateExpires.map { $0 > Date() } == true, "\(String(describing: certificateExpires))")

        // The partner's administrator changes the password: the first refused login opens
        // the alert (an authentication failure does not go away by waiting).
        let changed = ContinuousClock.now
        try dovecot.setPassword(user: "alice", to: "changed-by-the-partner")
        #expect(await sink.waitForAccepted(1), "no notification came")
        #expect(ContinuousClock.now - changed < .seconds(30), "within the threshold")
        let opened = try #require(try Self.notifications(sink).first)
        #expect(opened.event == .opened && opened.alert.kind == "site-failing" && opened.alert.site == "alice")
        #expect(opened.alert.summary.contains("authentication"), "\(opened.alert.summary)")
        let request = try #require(sink.accepted.first)
        #expect(WebhookSignature.verify(request.headers["x-gatepost-signature"] ?? "", body: request.body, secret: "hook-secret", now: Date()))
        #expect(!String(decoding: request.body, as: UTF8.self).contains("alice-secret"), "no secret in a notification")

        // The console (through the daemon's API) shows it.
        let status = try await GatepostProcess.run(["status"] + global)
        #expect(status.stdout.contains("alert \(opened.alert.id) site-failing"), "\(status.stdout)")

        // The password is put back: the next successful poll resolves it.
        try dovecot.setPassword(user: "alice", to: "alice-secret")
        #expect(await sink.waitForAccepted(2), "no second notification came")
        let resolved = try #require(try Self.notifications(sink).last)
        #expect(resolved.event == .resolved && resolved.alert.id == opened.alert.id && resolved.alert.resolvedAt != nil)
        #expect(try Self.notifications(sink).count == 2, "opened once, resolved once")

        daemon.signal(SIGTERM)
        let result = try await daemon.finish(timeout: .seconds(30))
        stopped = true
        let log = result.stdout + result.stderr
        #expect(log.contains("alert opened") && log.contains("alert resolved"), "the log channel too")
        #expect(!log.contains("hook-secret"))
    }

    /// The deadline is the test's instant; the files come through Dovecot and real polls.
    @Test func anExpectedFileThatDidNotComeOpensAnAlertAndItsArrivalResolvesIt() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let root = try Self.root()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sites = root + "/sites", spool = root + "/spool"
        try dovecot.pop3Block(user: "alice").appending("\nexpect: [{file_name: \"INV*.csv\", every: daily, by: \"06:00\", timezone: Europe/Paris}]\n")
            .write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        let global = ["--sites", sites, "--spool", spool]
        var poll = try await GatepostProcess.run(["poll", "alice"] + global)
        #expect(poll.status == 0, "\(poll.stderr)")

        let (catalog, monitor, directory) = try Self.monitor(sites: sites, catalogPath: spool + "/catalog.sqlite")
        let rule = try #require(directory.sites.first?.expectations.first)
        // The next deadline after the first poll, and a minute past it: nothing came.
        let firstPoll = try #require(try await catalog.siteStates()["alice"]?.firstPoll)
        var nextDeadline = firstPoll
        while (rule.lastWindow(at: nextDeadline)?.deadline ?? .distantPast) < firstPoll { nextDeadline += 3600 }
        let judged = try #require(rule.lastWindow(at: nextDeadline)).deadline.addingTimeInterval(60)
        let opened = try await monitor.check(at: judged).opened
        #expect(opened.map(\.kind) == ["arrival-missed"], "\(opened)")

        // The partner's file comes (a message with one CSV attachment) and is polled.
        let message = """
            From: edi@alice.example\r
            To: gateway@ours.example\r
            Subject: invoices\r
            Message-ID: <inv-1@alice.example>\r
            MIME-Version: 1.0\r
            Content-Type: multipart/mixed; boundary="b1"\r
            \r
            --b1\r
            Content-Type: text/plain\r
            \r
            Today's invoices.\r
            --b1\r
            Content-Type: text/csv; name="INV-1.csv"\r
            Content-Disposition: attachment; filename="INV-1.csv"\r
            \r
            n;amount\r
            1;10\r
            --b1--\r

            """
        try dovecot.addMessage(user: "alice", Array(message.utf8))
        poll = try await GatepostProcess.run(["poll", "alice"] + global)
        #expect(poll.status == 0, "\(poll.stderr)")
        #expect(try await catalog.transfers(TransferFilter(site: "alice")).map(\.fileName) == ["INV-1.csv"])
        let resolved = try await monitor.check(at: max(judged, Date()).addingTimeInterval(1)).resolved
        #expect(resolved.map(\.kind) == ["arrival-missed"])
    }

    /// The e-mail channel through the test Postfix: the alert arrives in the operators'
    /// mailbox (bob's, on Dovecot), readable and marked as automatic.
    @Test func anAlertIsMailedThroughTheSMTPServerOfTheLocalSite() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let smtp = try await SMTPPeer.start(for: dovecot)
        defer { smtp.stop() }
        let root = try Self.root()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sites = root + "/sites"
        try dovecot.pop3Block(user: "alice").write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        let password = dovecot.info.users["alice"] ?? ""
        try """
            kind: local-site
            alerts:
              channels:
                ops-mail:
                  email:
                    to: [bob@\(smtp.info.domain)]
                    smtp: \(smtp.smtpSettings(user: "alice", password: password))
            """.write(toFile: sites + "/local.yaml", atomically: true, encoding: .utf8)
        let (catalog, monitor, _) = try Self.monitor(sites: sites, catalogPath: root + "/catalog.sqlite")
        try await catalog.recordPoll(site: "alice", at: Date(), error: "-ERR [AUTH] Authentication failed.", errorCategory: "authentication", messages: 0, bytes: 0, nextPoll: nil)
        #expect(try await monitor.check(at: Date()).opened.count == 1)
        try await AcknowledgmentLoopTests.waitForMail(dovecot, user: "bob")
        let folder = try #require(dovecot.info.maildirs["bob"])
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: folder).first { !$0.hasPrefix(".") })
        let message = try String(contentsOfFile: folder + "/" + name, encoding: .utf8)
        #expect(message.contains("Subject: [gatepost] opened: alice: 1 poll in a row failed"), "\(message)")
        #expect(message.contains("Auto-Submitted: auto-generated"))
        let parts = message.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n")
        let body = parts.dropFirst().joined(separator: "\n\n")
        let text = String(decoding: Data(base64Encoded: body.filter { !$0.isWhitespace }) ?? Data(), as: UTF8.self)
        #expect(text.contains("kind: site-failing") && text.contains("site: alice"), "\(text)")
    }

    /// A probe's round trip through the test Postfix and Dovecot: sent over the site's SMTP,
    /// back through its poll as a PROBE (never delivered), and an alert when one does not
    /// come back in time. Instants past the deadline are the test's own.
    @Test func aProbeGoesOutThroughSMTPAndComesBackThroughThePoll() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let smtp = try await SMTPPeer.start(for: dovecot)
        defer { smtp.stop() }
        let root = try Self.root()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sites = root + "/sites", spool = root + "/spool"
        let password = dovecot.info.users["alice"] ?? ""
        try (dovecot.pop3Block(user: "alice") + """

            smtp: \(smtp.smtpSettings(user: "alice", password: password))
            probe: {every: 1h, deadline: 15m, to: alice@\(smtp.info.domain)}
            application: orders
            """).write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        try "kind: local-site\napplications: [{name: orders, folder: \(root)/orders}]\n".write(toFile: sites + "/local.yaml", atomically: true, encoding: .utf8)
        let global = ["--sites", sites, "--spool", spool]
        var poll = try await GatepostProcess.run(["poll", "alice"] + global)
        #expect(poll.status == 0, "\(poll.stderr)")
        let (catalog, monitor, _) = try Self.monitor(sites: sites, catalogPath: spool + "/catalog.sqlite")

        let start = Date()
        #expect(try await monitor.check(at: start).isEmpty)
        let first = try #require(try await catalog.probes(site: "alice", limit: 1).first)
        try await AcknowledgmentLoopTests.waitForMail(dovecot, user: "alice")
        poll = try await GatepostProcess.run(["poll", "alice"] + global)
        #expect(poll.status == 0, "\(poll.stderr)")
        let records = try await catalog.transfers(TransferFilter(site: "alice"))
        #expect(records.map(\.type) == [.probe])
        #expect(records.first?.messageId == first.messageId && records.first?.application == nil && records.first?.state == .received)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root + "/orders")) ?? []).isEmpty, "never delivered")
        #expect(try await catalog.probe(site: "alice", messageId: first.messageId)?.transferId == records.first?.id)
        #expect(try await monitor.check(at: start.addingTimeInterval(1000)).isEmpty, "it came back")

        // An hour on, the next probe goes; nobody polls: past its deadline, the alert.
        #expect(try await monitor.check(at: start.addingTimeInterval(3601)).isEmpty)
        try await AcknowledgmentLoopTests.waitForMail(dovecot, user: "alice")
        let opened = try await monitor.check(at: start.addingTimeInterval(3601 + 901)).opened
        #expect(opened.map(\.kind) == ["probe-missing"], "\(opened)")
        poll = try await GatepostProcess.run(["poll", "alice"] + global)
        #expect(poll.status == 0, "\(poll.stderr)")
        #expect(try await monitor.check(at: start.addingTimeInterval(3601 + 902)).resolved.map(\.kind) == ["probe-missing"])
    }
}
