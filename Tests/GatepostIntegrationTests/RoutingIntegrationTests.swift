import Crypto
import Foundation
import GatepostTestSupport
import Testing

/// Routing and delivery end to end: Dovecot mailbox -> `gatepost poll` -> three applications.
@Suite(.serialized) struct RoutingIntegrationTests {
    struct Record: Decodable {
        var id: String
        var type: String
        var fileName: String?
        var state: String
        var application: String?
        var sha256: String?
        var error: String?
        var deliveredPath: String?
    }

    static func records(_ spool: String) async throws -> [Record] {
        let result = try await GatepostProcess.run(["catalog", "list", "--spool", spool, "--format", "json"])
        return try JSONDecoder().decode([Record].self, from: Data(result.stdout.utf8))
    }

    static func files(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
    }

    static func sha256(_ path: String) throws -> String {
        SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).map { String(format: "%02x", $0) }.joined()
    }

    @Test func threeApplicationsARetryAndACrashBetweenCopyAndStateUpdate() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let expected = try await dovecot.fillMailbox(user: "alice", count: 12, seed: 1)
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-route-\(UUID().uuidString)")
        let sites = root + "/sites", spool = root + "/spool", out = root + "/out"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        let counter = root + "/binary-failures"
        try "0".write(toFile: counter, atomically: true, encoding: .utf8)
        try """
        kind: local-site
        applications:
          - {name: csv, folder: \(out)/csv, rename: "${site}-${fileName}"}
          - name: binary
            folder: \(out)/binary
            attempts: 2
            retry_delay: 1s
            command: [/bin/sh, -c, 'n=$(cat \(counter)); if [ $n -lt 2 ]; then echo $((n+1)) > \(counter); echo "import service down" >&2; exit 75; fi; echo "$GATEPOST_ID $1" >> \(root)/binary.log', import]
          - {name: text, folder: \(out)/text}
        """.write(toFile: sites + "/local.yaml", atomically: true, encoding: .utf8)
        try """
        \(dovecot.pop3Block(user: "alice"))
        application: text
        routes:
          - {type: XFER, file_name: "*.csv", application: csv}
          - {type: XFER, file_name: "*.BIN", sender: "*@partner.example", application: binary}
        """.write(toFile: sites + "/partner.yaml", atomically: true, encoding: .utf8)
        let poll = ["poll", "--sites", sites, "--spool", spool]

        // 1. The binary application's command fails: tried again at the next run after the
        // retry delay, fails again, and with its attempts used up is `failed` (exit 1).
        let first = try await GatepostProcess.run(poll)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("-> binary: not delivered, trying again at"), "\(first.stdout)")
        try await Task.sleep(for: .milliseconds(1100))
        let again = try await GatepostProcess.run(poll)
        #expect(again.status == 1, "\(again.stderr)")
        #expect(again.stdout.contains("-> binary: FAILED: the command `/bin/sh` exited with 75: import service down"), "\(again.stdout)")
        var records = try await Self.records(spool)
        #expect(records.count == 12)

        let csv = try #require(expected.first { $0.expectedFileName?.hasSuffix(".csv") == true })
        #expect(Self.files(out + "/csv") == ["partner-\(csv.expectedFileName ?? "")"])
        #expect(try Self.sha256(out + "/csv/partner-\(csv.expectedFileName ?? "")") == csv.sha256)
        let texts = Self.files(out + "/text")
        #expect(texts.contains("passwd"))
        #expect(texts.filter { $0.hasPrefix("text-") && $0.hasSuffix(".txt") }.count == expected.filter { $0.type == "MSG" }.count)
        #expect(records.filter { $0.type == "EERP" || $0.fileName == "RECOVER" }.allSatisfy { $0.state == "received" })
        let failed = try #require(records.first { $0.state == "failed" })
        #expect(failed.application == "binary")
        #expect(failed.error?.contains("exited with 75") == true)

        // 2. The operator retries: the command now succeeds; still exactly one copy of the file.
        let retry = try await GatepostProcess.run(["catalog", "retry", failed.id, "--sites", sites, "--spool", spool])
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(Self.files(out + "/binary") == ["payload-000.bin"])
        let binary = try #require(expected.first { $0.expectedFileName == "payload-000.bin" })
        #expect(try Self.sha256(out + "/binary/payload-000.bin") == binary.sha256)
        #expect(try String(contentsOfFile: root + "/binary.log", encoding: .utf8) == "\(failed.id) \(out)/binary/payload-000.bin\n")

        // 3. SIGKILL right after the file is linked, before the state update; then a normal poll.
        _ = try await dovecot.fillMailbox(user: "alice", count: 1, seed: 2)
        let killed = try await GatepostProcess.run(poll, environment: ["GATEPOST_FAILPOINTS": "deliver.after-link"])
        #expect(killed.status == 128 + SIGKILL)
        // The kill came between link() and unlink() of the temporary copy: it is still there.
        #expect(Self.files(out + "/binary").filter { !$0.hasPrefix(".gatepost-") } == ["payload-000 (2).bin", "payload-000.bin"])
        records = try await Self.records(spool)
        let interrupted = try #require(records.first { $0.state == "routed" })
        let resumed = try await GatepostProcess.run(poll)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("\(interrupted.id) -> binary: delivered \(out)/binary/payload-000 (2).bin"), "\(resumed.stdout)")
        #expect(Self.files(out + "/binary") == ["payload-000 (2).bin", "payload-000.bin"])
        records = try await Self.records(spool)
        #expect(records.count == 13)
        #expect(records.first { $0.id == interrupted.id }?.state == "delivered")
        #expect(records.filter { $0.state == "delivered" }.count == records.filter { $0.type != "EERP" && $0.fileName != "RECOVER" }.count)
        try? FileManager.default.removeItem(atPath: root)
    }
}
