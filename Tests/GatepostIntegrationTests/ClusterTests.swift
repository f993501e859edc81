import Foundation
import GatepostCatalog
import GatepostCore
import GatepostPostgres
import GatepostTestSupport
import Testing

/// Three `gatepost run` nodes, each with its own spool, sharing one PostgreSQL catalog: 300
/// sites on one Dovecot, MDNs through Postfix, files delivered into one folder. One node is
/// killed with SIGKILL while the others poll: every message is recorded once, the dead node's
/// sites are polled by the others once its lease ends, its deliveries and acknowledgments are
/// taken up by them (its spool reads here), no acknowledgment goes out twice and no file is
/// delivered twice.
@Suite(.serialized) struct ClusterTests {
    static let sites = Int(ProcessInfo.processInfo.environment["GATEPOST_CLUSTER_SITES"] ?? "") ?? 300
    static let nodes = ["node-a", "node-b", "node-c"]
    /// The lease: a dead node's sites are free this long after its last renewal.
    static let leaseSeconds = 4

    static func message(site: Int, round: Int, acknowledged: Bool) -> [UInt8] {
        let id = "order-\(site)-\(round)"
        return Array("""
        Return-Path: <carol@gatepost.test>\r
        From: partner\(site)@partners.example\r
        To: s\(site)@gatepost.example\r
        Subject: \(id)\r
        Message-ID: <\(id)@cluster.test>\r
        Date: Sat, 28 Nov 2026 10:00:00 +0000\r
        MIME-Version: 1.0\r
        \(acknowledged ? "Disposition-Notification-To: carol@gatepost.test\r\n" : "")Content-Type: multipart/mixed; boundary="b"\r
        \r
        --b\r
        Content-Type: text/plain\r
        \r
        Order \(id).\r
        --b\r
        Content-Type: text/csv; name="\(id).csv"\r
        Content-Disposition: attachment; filename="\(id).csv"\r
        \r
        item,quantity\r
        \(id),\(site * 10 + round)\r
        --b--\r

        """.utf8)
    }

    @Test func threeNodesOneKilledEveryMessageOnceNothingSentOrDeliveredTwice() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let smtp = try await SMTPPeer.start(for: dovecot)
        defer { smtp.stop() }
        let postgres = try await PostgresPeer.shared()
        let url = try await postgres.makeDatabase()
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-cluster-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sitesFolder = root + "/sites", deliveries = root + "/deliveries"
        try FileManager.default.createDirectory(atPath: sitesFolder, withIntermediateDirectories: true)
        let users = (1 ... Self.sites).map { "s\($0)" }
        try dovecot.addUsers(users)
        let smtpBlock = smtp.smtpSettings(user: "alice", password: dovecot.info.users["alice"] ?? "")
        for (index, user) in users.enumerated() {
            try """
            \(dovecot.pop3Block(addedUser: user))
            smtp: \(smtpBlock)
            poll: {interval: 2s}
            application: orders
            """.write(toFile: sitesFolder + "/\(user).yaml", atomically: true, encoding: .utf8)
            // One in ten asks for an acknowledgment.
            try dovecot.addMessage(user: user, Self.message(site: index + 1, round: 1, acknowledged: index % 10 == 0))
        }
        try """
        kind: local-site
        name: ours
        applications:
          - name: orders
            folder: \(deliveries)
            rename: "${id}-${fileName}"
        """.write(toFile: sitesFolder + "/local.yaml", atomically: true, encoding: .utf8)

        // Each daemon's output is collected as it comes (a full pipe would stop its logging).
        var daemons: [String: (process: ChildProcess.Running, output: Task<ChildProcess.Result, any Error>)] = [:]
        defer { for daemon in daemons.values { daemon.process.signal(SIGKILL) } }
        for node in Self.nodes {
            let process = try ChildProcess.start(GatepostProcess.binary, [
                "run", "--sites", sitesFolder, "--spool", root + "/spool-\(node)", "--catalog", url, "--node", node,
                "--lease-time", "\(Self.leaseSeconds)s", "--concurrent-polls", "8", "--concurrent-polls-per-host", "8",
            ])
            daemons[node] = (process, Task { try await process.finish() })
        }
        let catalog = try await PostgresCatalog.connect(url: url)
        defer { Task { await catalog.close() } }
        func records() async throws -> [TransferRecord] { try await catalog.transfers(TransferFilter(direction: .inbound)) }

        // Round one: every site's first message, once.
        let firstRound = try await DaemonTests.waitUntil(120) { try await records().count >= Self.sites }
        let firstCount = try await records().count
        #expect(firstRound, "\(firstCount) of \(Self.sites) recorded")
        if !firstRound {
            for (node, daemon) in daemons {
                daemon.process.signal(SIGTERM)
                let result = try await daemon.output.value
                Issue.record("\(node): \(result.stderr.suffix(6000))")
            }
            daemons = [:]
            return
        }
        let allJoined = try await DaemonTests.waitUntil(30) {
            try await catalog.clusterNodes().filter { $0.isAlive(at: Date()) }.count == 3
        }
        #expect(allJoined)

        // Round two arrives; node-b is killed while the nodes poll it.
        for (index, user) in users.enumerated() {
            try dovecot.addMessage(user: user, Self.message(site: index + 1, round: 2, acknowledged: index % 10 == 0))
        }
        try await Task.sleep(for: .seconds(1))
        daemons["node-b"]?.process.signal(SIGKILL)
        let killedAt = ContinuousClock.now
        let killDate = Date()
        _ = try await daemons["node-b"]?.output.value
        daemons["node-b"] = nil
        // The dead node's sites: once it is gone, the other two share all of them.
        let deadNodesSites = users.filter { SiteAssignment.owner(of: $0, among: Self.nodes) == "node-b" }
        #expect(deadNodesSites.count > Self.sites / 6)
        // Every one of them polled by the others after the kill, once its lease had ended.
        var takeOver = Duration.zero
        let takenOver = try await DaemonTests.waitUntil(60) {
            let states = try await catalog.siteStates()
            takeOver = ContinuousClock.now - killedAt
            return deadNodesSites.allSatisfy { (states[$0]?.lastPoll ?? .distantPast) > killDate }
        }
        #expect(takenOver, "node-b's sites polled again by the others")
        // The first of them is polled as soon as its lease and node-b's heartbeat have ended;
        // all of them as fast as two nodes on a busy machine get through them.
        let states = try await catalog.siteStates()
        let firstTakeOver = deadNodesSites.compactMap { states[$0]?.lastPoll }.filter { $0 > killDate }.min()
            .map { $0.timeIntervalSince(killDate) } ?? .infinity
        #expect(firstTakeOver < Double(Self.leaseSeconds + 15), "first site taken over \(firstTakeOver) s after the kill")
        #expect(takeOver < .seconds(Self.leaseSeconds + 60), "taken over in \(takeOver)")
        let everyMessage = try await DaemonTests.waitUntil(180) { try await records().count >= 2 * Self.sites }
        let took = ContinuousClock.now - killedAt
        let all = try await records()
        #expect(everyMessage, "\(all.count) of \(2 * Self.sites) recorded")
        // Once each: by Message-ID, and nothing left on the server.
        let byMessageId = Dictionary(grouping: all, by: { $0.messageId ?? "" })
        #expect(byMessageId.count == 2 * Self.sites)
        #expect(byMessageId.values.allSatisfy { $0.count == 1 }, "\(byMessageId.filter { $0.value.count > 1 }.keys.sorted().prefix(5))")
        #expect(all.allSatisfy { $0.fileName?.hasSuffix(".csv") == true })
        let emptied = try await DaemonTests.waitUntil(60) { users.allSatisfy { dovecot.messageCount(user: $0) == 0 } }
        #expect(emptied, "every message deleted from the server once recorded")
        #expect(took < .seconds(120), "every message recorded \(took) after the kill")
        print("cluster: node-b's first site polled again \(firstTakeOver) s after the kill, all \(deadNodesSites.count) within \(takeOver); every message recorded after \(took)")
        let alive = try await catalog.clusterNodes().filter { $0.isAlive(at: Date()) }.map(\.name)
        #expect(alive == ["node-a", "node-c"])

        // Deliveries: each node delivers what its spool holds, and the survivors what node-b's
        // holds (its files read here: one machine), each file once. A delivery node-b had
        // claimed when it was killed stays its claim's (600 s): nothing else waits.
        let delivered = try await DaemonTests.waitUntil(60) {
            let ownWaiting = try await records().filter { $0.node != "node-b" && $0.state != .delivered }
            let othersWaiting = try await catalog.transfersToDeliver(at: Date())
            return ownWaiting.isEmpty && othersWaiting.isEmpty
        }
        let waiting = try await catalog.transfersToDeliver(at: Date()).count
        #expect(delivered, "\(waiting) transfers not delivered")
        // Named `<id>-<fileName>`: a second delivery of a transfer would be a second file with
        // its id. (node-b may have placed a file and died before recording it: its claim keeps
        // that transfer from the others for 600 s, after which the file found in place is not
        // copied again.)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: deliveries)) ?? []
        let filesByTransfer = Dictionary(grouping: files, by: { String($0.split(separator: "-").prefix(2).joined(separator: "-")) })
        #expect(filesByTransfer.values.allSatisfy { $0.count == 1 }, "\(filesByTransfer.filter { $0.value.count > 1 })")
        let final = try await records()
        for record in final where record.state == .delivered {
            #expect(files.contains("\(record.id)-\(record.fileName ?? "")"), "\(record.id) delivered without its file")
        }
        #expect(files.count <= final.count)

        // Acknowledgments: each asked one at most once, every one a live node holds exactly once.
        let asked = all.filter { $0.ack != .none }
        #expect(asked.count == 2 * Self.sites / 10)
        // node-b's owed MDNs are the survivors' to send too, but for one node-b had claimed.
        let sent = try await DaemonTests.waitUntil(60) {
            let owed = try await records().filter { $0.ack != .none && $0.node != "node-b" }
            let due = try await catalog.dueOutbox(site: nil, at: Date())
            return owed.allSatisfy { $0.ack == .sent } && due.isEmpty
        }
        #expect(sent)
        try await Task.sleep(for: .seconds(2))
        var mdnsByOriginal: [String: Int] = [:]
        let carol = try #require(dovecot.info.maildirs["carol"])
        for folder in [carol, (carol as NSString).deletingLastPathComponent + "/cur"] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
                let text = (try? String(contentsOfFile: folder + "/" + name, encoding: .utf8)) ?? ""
                for line in text.split(separator: "\r\n").flatMap({ $0.split(separator: "\n") }) where line.lowercased().hasPrefix("original-message-id:") {
                    mdnsByOriginal[line.dropFirst("original-message-id:".count).trimmingCharacters(in: .whitespaces), default: 0] += 1
                }
            }
        }
        #expect(mdnsByOriginal.values.allSatisfy { $0 == 1 }, "\(mdnsByOriginal.filter { $0.value > 1 })")
        let owedByLiveNodes = asked.filter { $0.node != "node-b" }.count
        #expect(mdnsByOriginal.count >= owedByLiveNodes, "\(mdnsByOriginal.count) MDNs for \(owedByLiveNodes) owed by live nodes")
        print("cluster: \(mdnsByOriginal.count) MDNs for \(asked.count) asked, \(owedByLiveNodes) by the survivors' own transfers")

        for node in ["node-a", "node-c"] { daemons[node]?.process.signal(SIGTERM) }
        for node in ["node-a", "node-c"] {
            let result = try await daemons[node]?.output.value
            #expect(result?.status == 0, "\(node): \(result?.stderr.suffix(1500) ?? "")")
            daemons[node] = nil
        }
        #expect(try await catalog.clusterNodes().filter { $0.isAlive(at: Date()) }.isEmpty, "stopped nodes leave")
    }
}

/// A site's lease the catalog cannot give (the database gone) fails that site's poll with the
/// cause: nothing is polled without the lease, and the operator reads why.
@Suite struct SiteLeaseFailureTests {
    @Test func aLeaseTheCatalogCannotGiveFailsThePollWithTheCause() async throws {
        let catalog = try await PostgresCatalog.connect(url: try await PostgresPeer.shared().makeDatabase(), maximumConnections: 2)
        await catalog.close()
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-lease-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let spool = try Spool(root: root + "/spool")
        // Port 9 (discard): were the poll to run regardless, it would fail on the connection instead.
        let site = try #require(try SiteLoader(environment: [:]).parse(
            "pop3: {host: 127.0.0.1, port: 9, security: none, allow_plaintext_password: true, user: u, password: p}\n",
            file: root + "/acme.yaml"
        ))
        var round = PollRound(spool: spool, catalog: catalog, local: nil, allSites: [site], retry: .none, logger: .init(label: "test"))
        round.leases = SiteLeaseHolder(catalog: catalog, node: "node-a", leaseTime: .seconds(60), logger: .init(label: "test"))
        let report = await round.run([site])
        #expect(report.heldElsewhere.isEmpty)
        guard case .failure(let error)? = report.polls.first?.result else {
            Issue.record("the poll was not reported as failed: \(report.polls)")
            return
        }
        #expect(error.cause.hasPrefix("cannot take the site's lease in the catalog: "), "\(error.cause)")
        #expect(error.category == .spool)
    }
}
