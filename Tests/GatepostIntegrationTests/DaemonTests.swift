import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Testing

/// `gatepost run` against Dovecot: schedules, enable/disable while running, graceful stop.
@Suite(.serialized) struct DaemonTests {
    static func waitUntil(_ seconds: Int, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return try await condition()
    }

    @Test func pollsEnabledSitesPicksUpEnableAndStopsGracefullyMidRETR() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-daemon-\(UUID().uuidString)")
        let sites = root + "/sites", spool = root + "/spool"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        for (user, enabled) in [("alice", true), ("bob", true), ("carol", false)] {
            _ = try await dovecot.fillMailbox(user: user, count: 3, seed: user.count)
            try """
            enabled: \(enabled)
            pop3:
              host: 127.0.0.1
              port: \(dovecot.info.tlsPort)
              user: \(user)
              password: \(user)-secret
              tls: {ca_file: \(dovecot.info.caFile)}
            poll: {interval: 1s}
            """.write(toFile: sites + "/\(user).yaml", atomically: true, encoding: .utf8)
        }
        let global = ["--sites", sites, "--spool", spool]
        let daemon = try ChildProcess.start(GatepostProcess.binary, ["run"] + global)
        var stopped = false
        defer { if !stopped { daemon.signal(SIGKILL) } }

        // The two enabled sites are polled; the disabled one is not.
        let catalogPath = spool + "/catalog.sqlite"
        func count(_ site: String) async throws -> Int {
            guard FileManager.default.fileExists(atPath: catalogPath) else { return 0 }
            return try await SQLiteCatalog(path: catalogPath).transfers(TransferFilter(site: site)).count
        }
        // A poll's records are committed as its batches go; its outcome (last success, next
        // poll) is recorded when it ends: wait for both.
        let bothPolled = try await Self.waitUntil(20) {
            let alice = try await count("alice")
            let bob = try await count("bob")
            guard alice == 3, bob == 3 else { return false }
            return try await SQLiteCatalog(path: catalogPath).siteStates()["alice"]?.lastSuccess != nil
        }
        #expect(bothPolled)
        #expect(try await count("carol") == 0)
        // The daemon writes down when each site is due next.
        let states = try await SQLiteCatalog(path: catalogPath).siteStates()
        #expect(states["alice"]?.nextPoll != nil && states["alice"]?.lastSuccess != nil)
        #expect(dovecot.messageCount(user: "carol") == 3)

        // Enabled while running: polled without a restart.
        let enable = try await GatepostProcess.run(["site", "enable", "carol"] + global)
        #expect(enable.status == 0, "\(enable.stderr)")
        let carolPolled = try await Self.waitUntil(10) { try await count("carol") == 3 }
        #expect(carolPolled)

        // A large message arrives; SIGTERM while it is being received.
        let big = try await dovecot.fillMailbox(user: "alice", count: 1, seed: 77, attachmentSize: 40 << 20, mix: "xfer")
        let arriving = try await Self.waitUntil(20) {
            ((try? FileManager.default.contentsOfDirectory(atPath: spool + "/tmp")) ?? []).contains { !$0.hasPrefix("raw-") }
        }
        #expect(arriving, "the big message never started arriving")
        let signalled = ContinuousClock.now
        daemon.signal(SIGTERM)
        let result = try await daemon.finish(timeout: .seconds(30))
        stopped = true
        let took = ContinuousClock.now - signalled
        #expect(result.status == 0, "\(result.stderr.suffix(2000))")
        #expect(took < .seconds(5), "stopping took \(took): \(result.stderr.suffix(3000))")

        // Nothing half-done: either the big message is recorded whole, or it is still on the
        // server and a poll gets it now.
        let poll = try await GatepostProcess.run(["poll", "alice"] + global)
        #expect(poll.status == 0, "\(poll.stderr)")
        let records = try await SQLiteCatalog(path: catalogPath).transfers(TransferFilter(site: "alice"))
        #expect(records.count == 4)
        let bigRecord = try #require(records.first { $0.messageId == big.first?.messageId })
        #expect(bigRecord.sha256 == big.first?.sha256)
        #expect(dovecot.messageCount(user: "alice") == 0)
        try? FileManager.default.removeItem(atPath: root)
    }

    /// `gatepost poll` while the daemon runs asks the daemon to poll now (through its control
    /// socket) instead of failing on its lock; `gatepost status` shows the daemon and what needs
    /// an operator; the request is in the audit trail with who asked.
    @Test func theCommandLineAsksARunningDaemonToPollNow() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-daemon-\(UUID().uuidString.prefix(8))")
        let sites = root + "/sites", spool = root + "/spool"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        for (user, password) in [("alice", "alice-secret"), ("bob", "wrong")] {
            try """
            pop3:
              host: 127.0.0.1
              port: \(dovecot.info.tlsPort)
              user: \(user)
              password: \(password)
              tls: {ca_file: \(dovecot.info.caFile)}
            poll: {interval: 1h}
            """.write(toFile: sites + "/\(user).yaml", atomically: true, encoding: .utf8)
        }
        let global = ["--sites", sites, "--spool", spool]
        let daemon = try ChildProcess.start(GatepostProcess.binary, ["run"] + global)
        var stopped = false
        defer { if !stopped { daemon.signal(SIGKILL) } }
        let catalogPath = spool + "/catalog.sqlite"
        // The first polls at start (nothing for alice, bob's password refused).
        let firstPolls = try await Self.waitUntil(20) {
            guard FileManager.default.fileExists(atPath: catalogPath) else { return false }
            let states = try await SQLiteCatalog(path: catalogPath).siteStates()
            return states["alice"]?.lastSuccess != nil && states["bob"]?.lastError != nil
        }
        #expect(firstPolls)

        // A message arrives; the next scheduled poll is an hour away. The operator asks.
        let sent = try await dovecot.fillMailbox(user: "alice", count: 1, seed: 5)
        let poll = try await GatepostProcess.run(["poll", "alice"] + global)
        #expect(poll.status == 0, "\(poll.stdout) \(poll.stderr)")
        #expect(poll.stdout.contains("asking it to poll now") && poll.stdout.contains("alice: 1 new"), "\(poll.stdout)")
        let records = try await SQLiteCatalog(path: catalogPath).transfers(TransferFilter(site: "alice"))
        #expect(records.map(\.messageId) == sent.map(\.messageId))
        #expect(dovecot.messageCount(user: "alice") == 0)
        let actions = try await SQLiteCatalog(path: catalogPath).operatorActions(site: "alice", transferId: nil, limit: 5)
        #expect(actions.first?.action == "site.poll" && actions.first?.actor.hasPrefix("cli:") == true, "\(actions)")

        // A retry while the daemon runs is the daemon's to do (one process delivers at a
        // time): here it has no applications to deliver to, and says so.
        let transferId = try #require(records.first?.id)
        let retry = try await GatepostProcess.run(["catalog", "retry", transferId] + global)
        #expect(retry.status == 1, "\(retry.stdout) \(retry.stderr)")
        #expect(retry.stderr.contains("nothing to deliver to"), "\(retry.stderr)")
        let retried = try await SQLiteCatalog(path: catalogPath).operatorActions(site: nil, transferId: transferId, limit: 5)
        #expect(retried.map(\.action) == ["transfer.retry"] && retried.first?.actor.hasPrefix("cli:") == true, "\(retried)")

        // A site that fails: the poll says why and exits 1.
        let failing = try await GatepostProcess.run(["poll", "bob"] + global)
        #expect(failing.status == 1)
        #expect(failing.stderr.contains("bob: ") && failing.stderr.lowercased().contains("auth"), "\(failing.stderr)")

        let status = try await GatepostProcess.run(["status"] + global)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("daemon: running"), "\(status.stdout)")
        #expect(status.stdout.contains("needs attention: bob: failing"), "\(status.stdout)")

        daemon.signal(SIGTERM)
        _ = try await daemon.finish(timeout: .seconds(30))
        stopped = true
        #expect(!FileManager.default.fileExists(atPath: spool + "/control.sock"), "the daemon removes its socket when it stops")
        let after = try await GatepostProcess.run(["status"] + global)
        #expect(after.stdout.contains("daemon: not running"), "\(after.stdout)")
        try? FileManager.default.removeItem(atPath: root)
    }

    /// A typo in a site file while the daemon runs never stops that partner: the last good
    /// version keeps polling, `site list` and `site show` say so, and the fixed file clears it.
    @Test func aBrokenEditKeepsTheSitePolling() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-daemon-\(UUID().uuidString)")
        let sites = root + "/sites", spool = root + "/spool"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        let good = dovecot.pop3Block(user: "alice") + "\npoll: {interval: 1s}"
        try good.write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        let global = ["--sites", sites, "--spool", spool]
        let daemon = try ChildProcess.start(GatepostProcess.binary, ["run"] + global)
        var stopped = false
        defer { if !stopped { daemon.signal(SIGKILL) } }
        let catalogPath = spool + "/catalog.sqlite"
        func count() async throws -> Int {
            guard FileManager.default.fileExists(atPath: catalogPath) else { return 0 }
            return try await SQLiteCatalog(path: catalogPath).transfers(TransferFilter(site: "alice")).count
        }
        _ = try await dovecot.fillMailbox(user: "alice", count: 2, seed: 5)
        #expect(try await Self.waitUntil(20) { try await count() == 2 })

        // The operator breaks the file; the daemon notices within a second.
        try (good + "\n  port: twice\n").write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        let noted = try await Self.waitUntil(10) {
            (try? await SQLiteCatalog(path: catalogPath).siteStates()["alice"]?.configurationError) != nil
        }
        #expect(noted)
        // New mail still arrives: the last good version polls.
        _ = try await dovecot.fillMailbox(user: "alice", count: 2, seed: 6)
        #expect(try await Self.waitUntil(20) { try await count() == 4 }, "the broken edit stopped the partner")
        let list = try await GatepostProcess.run(["site", "list"] + global)
        #expect(list.stdout.contains("running the last good version"), "\(list.stdout)")
        let show = try await GatepostProcess.run(["site", "show", "alice"] + global)
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("alice.yaml:") && show.stdout.contains("the last good version"), "\(show.stdout)")

        // Fixed: the note goes.
        try good.write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        let cleared = try await Self.waitUntil(10) {
            (try? await SQLiteCatalog(path: catalogPath).siteStates()["alice"]).map { $0?.configurationError == nil } ?? false
        }
        #expect(cleared)
        daemon.signal(SIGTERM)
        let result = try await daemon.finish(timeout: .seconds(30))
        stopped = true
        #expect(result.status == 0)
        #expect(result.stderr.contains("site file broken: running the last good version"), "\(result.stderr.suffix(2000))")
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Blocking work never stalls another site: while the daemon copies and fsyncs a 200 MiB
    /// file into an application's folder, another site is polled with a 1 s read timeout, and
    /// none of its polls fails.
    @Test func aLargeDeliveryDoesNotStallAnotherSitesPoll() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-load-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sites = root + "/sites", spool = root + "/spool", deliveries = root + "/deliveries"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        let big = try await dovecot.addLargeMessage(user: "alice", size: 200 << 20)
        try """
        kind: local-site
        applications:
          - {name: bulk, folder: \(deliveries)}
        """.write(toFile: sites + "/local.yaml", atomically: true, encoding: .utf8)
        // bob, the site that must not be held up, has a 1 s read timeout; alice keeps the
        // default (Dovecot may take a while to size a 270 MB message on a busy disk).
        for (user, extra, timeout) in [("alice", "application: bulk", "60s"), ("bob", "", "1s")] {
            try """
            pop3:
              host: 127.0.0.1
              port: \(dovecot.info.tlsPort)
              user: \(user)
              password: \(user)-secret
              read_timeout: \(timeout)
              tls: {ca_file: \(dovecot.info.caFile)}
            poll: {interval: 1s, max_message_size: 1GiB}   # 200 MiB encoded is more than the default
            \(extra)
            """.write(toFile: sites + "/\(user).yaml", atomically: true, encoding: .utf8)
        }
        let daemon = try ChildProcess.start(GatepostProcess.binary, ["run", "--sites", sites, "--spool", spool])
        var stopped = false
        defer { if !stopped { daemon.signal(SIGKILL) } }

        // The copy into the application's folder has begun: now bob's messages arrive.
        let copying = try await Self.waitUntil(120) {
            ((try? FileManager.default.contentsOfDirectory(atPath: deliveries)) ?? []).contains { $0.hasSuffix(".part") }
        }
        #expect(copying, "the delivery never started")
        let expected = try await dovecot.fillMailbox(user: "bob", count: 3, seed: 5)
        let catalogPath = spool + "/catalog.sqlite"
        let bobPolled = try await Self.waitUntil(60) {
            try await SQLiteCatalog(path: catalogPath).transfers(TransferFilter(site: "bob")).count == expected.count
        }
        #expect(bobPolled)
        let delivered = try await Self.waitUntil(120) {
            try await SQLiteCatalog(path: catalogPath).transfers(TransferFilter(site: "alice")).first?.state == .delivered
        }
        if !delivered {
            daemon.signal(SIGTERM)
            let output = try await daemon.finish(timeout: .seconds(30))
            stopped = true
            Issue.record("the 200 MiB transfer was not delivered: \(output.stderr.suffix(4000))")
            return
        }
        let record = try #require(try await SQLiteCatalog(path: catalogPath).transfers(TransferFilter(site: "alice")).first)
        #expect(record.sha256 == big.sha256)

        daemon.signal(SIGTERM)
        let result = try await daemon.finish(timeout: .seconds(30))
        stopped = true
        #expect(result.status == 0)
        let bobFailures = result.stderr.split(separator: "\n").filter { $0.contains("site=bob") && $0.contains("failed") }
        #expect(bobFailures.isEmpty, "\(bobFailures.joined(separator: "\n"))")
    }
}
