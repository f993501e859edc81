import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Testing


/// `gatepost poll` killed with SIGKILL again and again, at seeded moments and at the points that
/// matter (mid-RETR, after the commit before DELE, after DELE before QUIT), until the mailbox is
/// drained: every message must end up recorded exactly once, with the right bytes.
@Suite(.serialized) struct CrashTests {
    @Test func fiftyKillsLoseNothingAndDoubleNothing() async throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["GATEPOST_CRASH_SEED"] ?? "") ?? 20_261_125
        var random = SplitMix64(state: seed)
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let expected = try await dovecot.fillMailbox(user: "alice", count: 300, seed: 11)
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-crash-\(UUID().uuidString)")
        let sites = root + "/sites", spool = root + "/spool"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        try """
        \(dovecot.pop3Block(user: "alice"))
        poll:
          commit_batch: 3   # batches of several messages, small enough for many kills per drain
        application: orders
        """.write(toFile: sites + "/partner.yaml", atomically: true, encoding: .utf8)
        let poll = ["poll", "--sites", sites, "--spool", spool]

        let points = ["poll.during-retr", "poll.before-commit", "poll.after-commit", "poll.after-dele"]
        var kills: [String: Int] = [:]
        let deadline = ContinuousClock.now + .seconds(240)
        var runs = 0
        while ContinuousClock.now < deadline, runs < 400 {
            runs += 1
            if dovecot.messageCount(user: "alice") == 0 { break }
            let mode = Int.random(in: 0...points.count, using: &random)
            var environment: [String: String] = [:]
            var timeout: Duration?
            let label: String
            if mode < points.count {
                // Some point on the k-th time it is reached: small k, so a run dies after a few
                // messages and the 300 take many runs (and many kills) to drain.
                let nth = mode == 0 ? Int.random(in: 1...12, using: &random) : Int.random(in: 1...4, using: &random)
                environment["GATEPOST_FAILPOINTS"] = "\(points[mode])@\(nth)"
                label = points[mode]
            } else {
                timeout = .milliseconds(Int64.random(in: 20...150, using: &random))
                label = "timer"
            }
            let result = try await ChildProcess.run(
                GatepostProcess.binary, poll,
                environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, timeout: timeout
            )
            if result.status == 128 + SIGKILL {
                kills[label, default: 0] += 1
            } else {
                #expect(result.status == 0, "run \(runs) (\(label)): \(result.stderr)")
            }
        }
        // A clean run (or two) finishes the work: nothing may remain on the server.
        for _ in 0..<3 where dovecot.messageCount(user: "alice") > 0 {
            let result = try await GatepostProcess.run(poll)
            #expect(result.status == 0, "\(result.stderr)")
        }
        let final = try await GatepostProcess.run(poll)
        #expect(final.status == 0, "\(final.stderr)")

        let total = kills.values.reduce(0, +)
        #expect(total >= 50, "only \(total) kills in \(runs) runs: \(kills)")
        for point in points {
            #expect(kills[point, default: 0] > 0, "no kill at \(point): \(kills)")
        }
        #expect(dovecot.messageCount(user: "alice") == 0)

        let catalog = try SQLiteCatalog(path: spool + "/catalog.sqlite")
        #expect(try catalog.integrityCheck() == "ok")
        let records = try await catalog.transfers(TransferFilter())
        #expect(records.count == expected.count, "seed \(seed): \(records.count) records for \(expected.count) messages")
        #expect(!records.contains { $0.fileName == TransferRecord.duplicateFileName }, "seed \(seed): a message was recorded twice")
        var byMessageID: [String: Int] = [:]
        for record in records { byMessageID[record.messageId ?? "", default: 0] += 1 }
        for message in expected {
            #expect(byMessageID[message.messageId] == 1, "seed \(seed): \(message.messageId) recorded \(byMessageID[message.messageId] ?? 0) times")
        }
        try DovecotPollTests.check(records, against: expected)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool + "/tmp").isEmpty)
        let siteFolder = try FileManager.default.contentsOfDirectory(atPath: spool + "/in/partner")
        #expect(siteFolder.filter { $0.hasPrefix(".") }.isEmpty, "pending files left: \(siteFolder.filter { $0.hasPrefix(".") })")
        // Each record's main file, and nothing of a message not recorded.
        #expect(Set(siteFolder.map { String($0.prefix { $0 != "." }) }) == Set(records.map(\.id)))
        print("crash test: seed \(seed), \(runs) runs, \(total) kills: \(kills.sorted { $0.key < $1.key })")
        try? FileManager.default.removeItem(atPath: root)
    }
}
