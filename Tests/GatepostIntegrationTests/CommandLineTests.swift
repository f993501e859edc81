import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Testing

/// The `gatepost` executable as an operator runs it: output, one-line errors, exit codes.
struct GatepostProcess {
    var status: Int32
    var stdout: String
    var stderr: String

    /// The binary built next to the test bundle (`swift build --build-tests` builds both).
    static var binary: String {
        if let explicit = ProcessInfo.processInfo.environment["GATEPOST_BINARY"] { return explicit }
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        var folder = testBinary.deletingLastPathComponent()
        // Inside an .xctest bundle on some platforms the executable sits deeper.
        while folder.path != "/", !FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent("gatepost").path) {
            folder = folder.deletingLastPathComponent()
        }
        return folder.appendingPathComponent("gatepost").path
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> GatepostProcess {
        let result = try await ChildProcess.run(
            binary, arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }
        )
        return GatepostProcess(status: result.status, stdout: result.stdout, stderr: result.stderr)
    }
}

@Suite(.serialized) struct CommandLineTests {
    func scratch() throws -> String {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path + "/sites", withIntermediateDirectories: true)
        return path
    }

    @Test func demoPrintsOneRecordOfEachClass() async throws {
        let dir = try scratch()
        let result = try await GatepostProcess.run(["demo", "--into", dir])
        #expect(result.status == 0, "\(result.stderr)")
        for expected in ["XFER  orders-2026-11-25.csv", "MSG   orders", "EERP  -", "XFER  RECOVER", "-> orders: delivered", "demo: outbox: 1 sent"] {
            #expect(result.stdout.contains(expected), "missing \(expected) in\n\(result.stdout)")
        }
        let json = try await GatepostProcess.run(["catalog", "list", "--spool", dir + "/spool", "--format", "json"])
        #expect(json.status == 0)
        let records = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        #expect(records?.count == 4)
        #expect(records?.first?["sha256"] as? String != nil)
        // Every record has every key; absent values are null.
        #expect(records?.allSatisfy { $0.keys.contains("error") && $0.keys.contains("deliveredPath") && $0.keys.contains("messageText") } == true)
        let xfer = records?.first { $0["fileName"] as? String == "orders-2026-11-25.csv" }
        let show = try await GatepostProcess.run(["catalog", "show", (xfer?["id"] as? String) ?? "", "--spool", dir + "/spool"])
        #expect(show.status == 0)
        #expect(show.stdout.contains("orders-2026-11-25.csv"))
        // The XFER's message text is kept in its record and shown with it.
        #expect(show.stdout.contains("message text:\nToday's purchase orders are attached."), "\(show.stdout)")
        #expect(!show.stdout.contains("\u{FFFD}"), "line ends print as newlines, not replacement characters")
    }

    @Test func aLostCatalogIsNeverSilentlyReplacedAndABackupRestoresIt() async throws {
        let dir = try scratch()
        let demo = try await GatepostProcess.run(["demo", "--into", dir])
        #expect(demo.status == 0, "\(demo.stderr)")
        let spool = dir + "/spool"
        let catalog = spool + "/catalog.sqlite"
        let backup = dir + "/catalog-backup.sqlite"
        let saved = try await GatepostProcess.run(["catalog", "backup", backup, "--spool", spool])
        #expect(saved.status == 0, "\(saved.stderr)")
        #expect(saved.stdout.hasPrefix("catalog backed up to \(backup)"))
        #expect((try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int) == 0o600)
        #expect(try await GatepostProcess.run(["catalog", "backup", backup, "--spool", spool]).status != 0, "never overwrites")

        // The catalog is lost (a zero-byte file), the spool still holds received files.
        for suffix in ["", "-wal", "-shm"] { unlink(catalog + suffix) }
        FileManager.default.createFile(atPath: catalog, contents: Data())
        let refused = try await GatepostProcess.run(["catalog", "list", "--spool", spool])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("is missing or empty, but the spool holds received files"), "\(refused.stderr)")
        unlink(catalog)
        #expect(try await GatepostProcess.run(["poll", "--spool", spool, "--sites", dir + "/sites"]).status != 0, "a poll refuses too")
        #expect(!FileManager.default.fileExists(atPath: catalog) || SQLiteCatalog.isNew(at: catalog))

        // Restored from the backup: everything is there again.
        try FileManager.default.copyItem(atPath: backup, toPath: catalog)
        let restored = try await GatepostProcess.run(["catalog", "list", "--spool", spool, "--format", "json"])
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(restored.stdout.utf8)) as? [Any])?.count == 4)

        // Or, knowingly, a new one.
        for suffix in ["", "-wal", "-shm"] { unlink(catalog + suffix) }
        let fresh = try await GatepostProcess.run(["catalog", "list", "--spool", spool, "--format", "json", "--new-catalog"])
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(fresh.stdout.utf8)) as? [Any])?.count == 0)
    }

    /// An operator stops a partner at 3 a.m. without its password in the shell.
    @Test func sitesAreControlledWithoutTheirSecrets() async throws {
        let server = ScriptedPOP3Server(messages: [])
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let dir = try scratch()
        try """
        pop3:
          host: 127.0.0.1
          port: \(port)
          security: none
          allow_plaintext_password: true
          user: demo
          password: ${ACME_POP3_PASSWORD_UNSET_IN_TEST}
        """.write(toFile: dir + "/sites/acme.yaml", atomically: true, encoding: .utf8)
        let arguments = ["--sites", dir + "/sites", "--spool", dir + "/spool"]
        let disable = try await GatepostProcess.run(["site", "disable", "acme"] + arguments)
        #expect(disable.status == 0, "\(disable.stderr)")
        #expect(disable.stdout == "acme: disabled\n")
        let list = try await GatepostProcess.run(["site", "list"] + arguments)
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains("acme") && list.stdout.contains("1 unavailable"), "\(list.stdout)")
        let show = try await GatepostProcess.run(["site", "show", "acme"] + arguments)
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("environment variable ACME_POP3_PASSWORD_UNSET_IN_TEST is not set"), "\(show.stdout)")
        #expect(show.stdout.contains("acme.yaml:7: pop3.password"), "names the file, line and field: \(show.stdout)")
        #expect(try await GatepostProcess.run(["site", "enable", "acme"] + arguments).status == 0)
        // Only connecting needs the secret, and says which one is missing.
        let poll = try await GatepostProcess.run(["poll", "acme"] + arguments)
        #expect(poll.status == 1)
        #expect(poll.stderr.contains("no password: ") && poll.stderr.contains("ACME_POP3_PASSWORD_UNSET_IN_TEST is not set"), "\(poll.stderr)")
        let catalog = try await GatepostProcess.run(["catalog", "list"] + arguments)
        #expect(catalog.status == 0, "\(catalog.stderr)")
    }

    @Test func theCatalogIsFoundByTypeFieldsAndDates() async throws {
        let dir = try scratch()
        let demo = try await GatepostProcess.run(["demo", "--into", dir])
        #expect(demo.status == 0, "\(demo.stderr)")
        let spool = ["--spool", dir + "/spool"]
        func ids(_ arguments: [String]) async throws -> [String] {
            let result = try await GatepostProcess.run(["catalog", "list", "--format", "json"] + arguments + spool)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            let records = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] ?? []
            return records.compactMap { $0["fileName"] as? String ?? ($0["type"] as? String).map { "(\($0))" } }
        }
        #expect(try await ids(["--type", "RECOVER"]) == ["RECOVER"])
        #expect(try await ids(["--type", "recover"]) == ["RECOVER"])
        #expect(try await ids(["--type", "DUPLICATE"]).isEmpty)
        #expect(try await ids(["--type", "XFER"]) == ["orders-2026-11-25.csv"], "XFER means a file, not a message kept whole")
        #expect(try await ids(["--file-name", "*.csv"]) == ["orders-2026-11-25.csv"])
        #expect(try await ids(["--file-name", "ORDERS-2026"]) == ["orders-2026-11-25.csv"], "a substring, case-insensitive")
        // Newest first by default; --oldest-first, --limit and --offset page through.
        let all = try await ids([])
        #expect(all.count == 4)
        #expect(try await ids(["--oldest-first"]) == all.reversed())
        #expect(try await ids(["--limit", "2"]) == Array(all.prefix(2)))
        #expect(try await ids(["--limit", "2", "--offset", "2"]) == Array(all.dropFirst(2)))
        #expect(try await ids(["--since", "2100-01-01"]).isEmpty)
        #expect(try await ids(["--until", "2100-01-01T00:00Z"]).count == 4)
        // Dates are read strictly.
        let junk = try await GatepostProcess.run(["catalog", "list", "--until", "2026-11-28 junk"] + spool)
        #expect(junk.status == 2)
        #expect(junk.stderr.contains("--until: `2026-11-28 junk` is not a date"), "\(junk.stderr)")
        let purgeJunk = try await GatepostProcess.run(["catalog", "purge", "--before", "2026-11-28 junk"] + spool)
        #expect(purgeJunk.status == 2)
        // An age is the site files' duration, above zero: 0d would purge every finished transfer.
        for age in ["0d", "30 days", "1y"] {
            let purgeAge = try await GatepostProcess.run(["catalog", "purge", "--older-than", age, "--dry-run"] + spool)
            #expect(purgeAge.status == 2, "\(age)")
            #expect(purgeAge.stderr.contains("--older-than must be a duration above zero"), "\(purgeAge.stderr)")
        }
        let purgeOld = try await GatepostProcess.run(["catalog", "purge", "--older-than", "3650d", "--dry-run"] + spool)
        #expect(purgeOld.status == 0, "\(purgeOld.stderr)")
        // CSV: a header and one line per transfer.
        let csv = try await GatepostProcess.run(["catalog", "list", "--format", "csv"] + spool)
        let lines = csv.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.first?.hasPrefix("id,direction,type,fileName,site") == true)
        #expect(lines.count == 5)
    }

    @Test func purgeRemovesSpoolFilesOfFinishedTransfersAndKeepsTheRecords() async throws {
        let dir = try scratch()
        let demo = try await GatepostProcess.run(["demo", "--into", dir])
        #expect(demo.status == 0, "\(demo.stderr)")
        let spool = dir + "/spool"
        let before = try await SQLiteCatalog(path: spool + "/catalog.sqlite").transfers(TransferFilter())
        let delivered = before.filter { $0.state == .delivered }
        #expect(!delivered.isEmpty)

        let dry = try await GatepostProcess.run(["catalog", "purge", "--before", "2100-01-01", "--dry-run", "--spool", spool])
        #expect(dry.status == 0, "\(dry.stderr)")
        // The dry run lists each transfer, then says what the purge will do, to the file.
        let dryLines = dry.stdout.split(separator: "\n").map(String.init)
        #expect(dryLines.dropLast().allSatisfy { $0.hasPrefix("  T") }, "\(dry.stdout)")
        #expect(dryLines.count > 1)
        #expect(dryLines.last?.hasPrefix("would purge") == true)
        #expect(delivered.allSatisfy { FileManager.default.fileExists(atPath: $0.path ?? "") }, "a dry run removes nothing")

        let purge = try await GatepostProcess.run(["catalog", "purge", "--before", "2100-01-01", "--spool", spool])
        #expect(purge.status == 0, "\(purge.stderr)")
        // The same transfers, files and bytes as the dry run said.
        #expect(purge.stdout.split(separator: "\n").last.map { "would " + $0.replacingOccurrences(of: "purged", with: "purge") } == dryLines.last,
                "\(dry.stdout)\n\(purge.stdout)")
        let after = try await SQLiteCatalog(path: spool + "/catalog.sqlite").transfers(TransferFilter())
        #expect(after.count == before.count, "the records stay")
        for record in delivered {
            #expect(!FileManager.default.fileExists(atPath: record.path ?? ""), "\(record.id)'s spool files are gone")
            let now = try #require(after.first { $0.id == record.id })
            #expect(now.path == nil)
            #expect(now.purgedAt != nil)
            // What was delivered to the application is the application's.
            #expect(FileManager.default.fileExists(atPath: record.deliveredPath ?? ""), "\(record.deliveredPath ?? "-") kept")
        }
        // RECOVER waits for an operator.
        #expect(after.filter { $0.fileName == TransferRecord.recoverFileName }.allSatisfy { $0.purgedAt == nil && $0.path != nil })
        let again = try await GatepostProcess.run(["catalog", "purge", "--before", "2100-01-01", "--spool", spool])
        #expect(again.stdout.hasPrefix("purged 0 transfers"), "\(again.stdout)")
        let neither = try await GatepostProcess.run(["catalog", "purge", "--spool", spool])
        #expect(neither.status == 2)
    }

    @Test func theVersionAndIntervalsAsWritten() async throws {
        let version = try await GatepostProcess.run(["--version"])
        #expect(version.status == 0 && version.stdout == GatepostVersion.current + "\n")
        let dir = try scratch()
        try "pop3: {host: h, user: u, password: p}\npoll: {interval: 5m}\n".write(toFile: dir + "/sites/acme.yaml", atomically: true, encoding: .utf8)
        let show = try await GatepostProcess.run(["site", "show", "acme", "--sites", dir + "/sites", "--spool", dir + "/spool"])
        let interval = show.stdout.split(separator: "\n").first { $0.hasPrefix("interval ") }
        #expect(interval?.split(separator: " ").last == "5m", "\(show.stdout)")
    }

    @Test func theDaemonLogsJSONLinesWhenAsked() async throws {
        let dir = try scratch()
        try "pop3: {host: 127.0.0.1, port: 9, user: u, password: p, connect_timeout: 1s}\npoll: {interval: 1h}\n"
            .write(toFile: dir + "/sites/gone.yaml", atomically: true, encoding: .utf8)
        let daemon = try ChildProcess.start(GatepostProcess.binary, ["run", "--log-format", "json", "--sites", dir + "/sites", "--spool", dir + "/spool"])
        var finished = false
        defer { if !finished { daemon.signal(SIGKILL) } }
        // The first poll of the site fails at once (nothing listens on port 9): then stop.
        let catalog = dir + "/spool/catalog.sqlite"
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if FileManager.default.fileExists(atPath: catalog),
               (try? await SQLiteCatalog(path: catalog).siteStates()["gone"]?.lastError) != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        daemon.signal(SIGTERM)
        let result = try await daemon.finish(timeout: .seconds(30))
        finished = true
        #expect(result.status == 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
            #expect(object?["level"] != nil && object?["message"] != nil && object?["time"] != nil, "\(line)")
        }
        #expect(lines.contains { $0.contains("\"message\":\"poll failed\"") && $0.contains("\"site\":\"gone\"") }, "\(result.stderr)")
    }

    @Test func siteShowIsComplete() async throws {
        let dir = try scratch()
        try """
        pop3: {host: h, user: u, password: p, tls: {ca_file: /etc/hostname}, read_timeout: 90s}
        smtp: {host: s, from: g@ours.example, user: m, password: q, read_timeout: 2m}
        application: orders
        routes:
          - {type: XFER, file_name: "*.csv", application: billing}
        limits: {max_depth: 7}
        classify: {text_only: msg}
        expect: [{file_name: "INV*.csv", every: [mon, thu], by: "09:30", timezone: Europe/Paris}]
        probe: {every: 2h, deadline: 20m, to: orders@acme.example}
        """.write(toFile: dir + "/sites/acme.yaml", atomically: true, encoding: .utf8)
        let arguments = ["--sites", dir + "/sites", "--spool", dir + "/spool"]
        let table = try await GatepostProcess.run(["site", "show", "acme"] + arguments)
        #expect(table.status == 0, "\(table.stderr)")
        for expected in ["route 1", "type XFER, file_name *.csv -> billing", "ca_file /etc/hostname", "connect 15s, read 1m30s",
                         "depth 7", "text_only msg", "read 2m", "INV*.csv mon,thu by 09:30 Europe/Paris",
                         "to orders@acme.example every 2h, back within 20m"] {
            #expect(table.stdout.contains(expected), "missing \(expected) in\n\(table.stdout)")
        }
        #expect(!table.stdout.contains(" q") && !table.stdout.contains(": p"), "no secret")
        let json = try await GatepostProcess.run(["site", "show", "acme", "--format", "json"] + arguments)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let smtp = object?["smtp"] as? [String: Any]
        #expect(smtp?["host"] as? String == "s" && smtp?["password"] as? String == "****" && smtp?["readTimeout"] as? String == "2m")
        #expect((object?["routes"] as? [[String: Any]])?.first?["application"] as? String == "billing")
        #expect((object?["limits"] as? [String: Any])?["maxDepth"] as? Int == 7)
    }

    @Test func aMalformedSiteFileNamesFileLineAndField() async throws {
        let dir = try scratch()
        try "pop3:\n  host: 127.0.0.1\n  port: many\n  user: u\n".write(toFile: dir + "/sites/broken.yaml", atomically: true, encoding: .utf8)
        let result = try await GatepostProcess.run(["poll", "broken", "--sites", dir + "/sites", "--spool", dir + "/spool"])
        #expect(result.status == 2)
        #expect(result.stderr.trimmingCharacters(in: .newlines).split(separator: "\n").count == 1)
        #expect(result.stderr.contains("broken.yaml:3: pop3.port: must be a number"), "\(result.stderr)")
        let list = try await GatepostProcess.run(["site", "list", "--sites", dir + "/sites"])
        #expect(list.status == 2)
    }

    @Test func anUnreachableHostIsOneLineExitOneAndRecordsNothing() async throws {
        let dir = try scratch()
        // A port nothing listens on: bind one and close it.
        try """
        pop3: {host: 127.0.0.1, port: 9, security: tls, user: u, password: p, connect_timeout: 3s}
        """.write(toFile: dir + "/sites/gone.yaml", atomically: true, encoding: .utf8)
        let result = try await GatepostProcess.run(["poll", "gone", "--sites", dir + "/sites", "--spool", dir + "/spool"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("gatepost: gone: cannot connect to 127.0.0.1:9"), "\(result.stderr)")
        #expect(result.stderr.trimmingCharacters(in: .newlines).split(separator: "\n").count == 1)
        let list = try await GatepostProcess.run(["catalog", "list", "--spool", dir + "/spool", "--format", "json"])
        #expect(list.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || list.stdout.contains("[]"))
    }

    @Test func aWrongPasswordAgainstDovecotIsOneLineExitOne() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        _ = try await dovecot.fillMailbox(user: "alice", count: 2)
        let dir = try scratch()
        try """
        pop3:
          host: 127.0.0.1
          port: \(dovecot.info.tlsPort)
          user: alice
          password: ${PARTNER_PASSWORD}
          tls: {ca_file: \(dovecot.info.caFile)}
        """.write(toFile: dir + "/sites/partner.yaml", atomically: true, encoding: .utf8)
        let wrong = try await GatepostProcess.run(
            ["poll", "partner", "--sites", dir + "/sites", "--spool", dir + "/spool"], environment: ["PARTNER_PASSWORD": "wrong-secret"]
        )
        #expect(wrong.status == 1)
        #expect(wrong.stderr.hasPrefix("gatepost: partner: authentication failed"), "\(wrong.stderr)")
        #expect(!wrong.stderr.contains("wrong-secret"))
        #expect(wrong.stderr.trimmingCharacters(in: .newlines).split(separator: "\n").count == 1)

        let right = try await GatepostProcess.run(
            ["poll", "partner", "--sites", dir + "/sites", "--spool", dir + "/spool"], environment: ["PARTNER_PASSWORD": "alice-secret"]
        )
        #expect(right.status == 0, "\(right.stderr)")
        #expect(right.stdout.hasPrefix("partner: 2 new"), "\(right.stdout)")
        #expect(!right.stderr.contains("\r") && !right.stderr.contains("\u{1B}"), "no progress line when standard error is not a terminal")
        // Spool and catalog are owner-only.
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/spool/catalog.sqlite")
        #expect(((attributes[.posixPermissions] as? Int) ?? 0o777) & 0o077 == 0)
        let spoolAttributes = try FileManager.default.attributesOfItem(atPath: dir + "/spool")
        #expect(((spoolAttributes[.posixPermissions] as? Int) ?? 0o777) & 0o077 == 0)
    }

    @Test func sitesAreEnabledAndDisabledFromTheCommandLine() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        _ = try await dovecot.fillMailbox(user: "alice", count: 2, seed: 31)
        _ = try await dovecot.fillMailbox(user: "bob", count: 3, seed: 32)
        let dir = try scratch()
        for (name, user, enabled) in [("first", "alice", true), ("second", "bob", false)] {
            try """
            enabled: \(enabled)
            pop3:
              host: 127.0.0.1
              port: \(dovecot.info.tlsPort)
              user: \(user)
              password: \(user)-secret
              tls: {ca_file: \(dovecot.info.caFile)}
            """.write(toFile: dir + "/sites/\(name).yaml", atomically: true, encoding: .utf8)
        }
        let global = ["--sites", dir + "/sites", "--spool", dir + "/spool"]
        let first = try await GatepostProcess.run(["poll"] + global)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("first: 2 new") && !first.stdout.contains("second:"), "\(first.stdout)")

        #expect(try await GatepostProcess.run(["site", "enable", "second"] + global).stdout == "second: enabled\n")
        #expect(try await GatepostProcess.run(["site", "disable", "first"] + global).status == 0)
        let second = try await GatepostProcess.run(["poll"] + global)
        #expect(second.stdout.contains("second: 3 new") && !second.stdout.contains("first:"), "\(second.stdout)")

        let show = try await GatepostProcess.run(["site", "show", "second"] + global)
        #expect(show.status == 0)
        #expect(show.stdout.contains("****") && !show.stdout.contains("bob-secret"), "\(show.stdout)")
        #expect(show.stdout.contains("messages               3") || show.stdout.contains("messages  "), "\(show.stdout)")
        let list = try await GatepostProcess.run(["site", "list", "--format", "json"] + global)
        let sites = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]
        #expect(sites?.map { $0["enabled"] as? Bool } == [false, true])
        #expect(sites?.map { $0["messages"] as? Int } == [2, 3])
        #expect(!list.stdout.contains("secret"))
        let unknown = try await GatepostProcess.run(["site", "enable", "third"] + global)
        #expect(unknown.status == 2)
    }

    @Test func siteTestShowsEachStepAndTouchesNothing() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        _ = try await dovecot.fillMailbox(user: "alice", count: 2, seed: 41)
        let dir = try scratch()
        for (name, password, security) in [("good", "alice-secret", "tls"), ("wrong", "nope", "starttls")] {
            try """
            pop3:
              host: 127.0.0.1
              port: \(security == "tls" ? dovecot.info.tlsPort : dovecot.info.plainPort)
              security: \(security)
              user: alice
              password: \(password)
              tls: {ca_file: \(dovecot.info.caFile)}
            """.write(toFile: dir + "/sites/\(name).yaml", atomically: true, encoding: .utf8)
        }
        let global = ["--sites", dir + "/sites", "--spool", dir + "/spool"]
        let good = try await GatepostProcess.run(["site", "test", "good"] + global)
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        for line in ["PASS connect", "PASS tls", "certificate CN=localhost (localhost, 127.0.0.1)", "issued by CN=Gatepost Test CA", "valid until",
                     "PASS capabilities", "PASS login", "PASS mailbox       2 messages"] {
            #expect(good.stdout.contains(line), "missing \(line) in\n\(good.stdout)")
        }
        let wrong = try await GatepostProcess.run(["site", "test", "wrong"] + global)
        #expect(wrong.status == 1)
        #expect(wrong.stdout.contains("PASS starttls") && wrong.stdout.contains("FAIL login") && wrong.stdout.contains("authentication failed"),
                "\(wrong.stdout)")
        #expect(!wrong.stdout.contains("nope"))
        #expect(dovecot.messageCount(user: "alice") == 2)
    }
}

/// Partner- and server-supplied text never drives the operator's terminal: no ESC, no C1, no CR
/// or LF forging a row, no direction override in a table; JSON escapes as JSON does.
@Suite struct TerminalSafetyTests {
    static let hostile = "Inv\u{1B}]0;pwned\u{07}oice\u{1B}[2J\r\nFORGED  ROW\u{9B}31m\u{202E}fdp.exe\u{7F}"

    @Test func catalogListAndShowPrintNoControlCharacters() async throws {
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-terminal-\(UUID().uuidString)")
        let spool = dir + "/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let catalog = try SQLiteCatalog(path: spool + "/catalog.sqlite")
        let record = TransferRecord(
            id: TransferRecord.newID(), type: .xfer, fileName: Self.hostile, site: "acme", sender: Self.hostile,
            subject: Self.hostile, error: Self.hostile, messageText: "line one\r\n\u{1B}[31mred\u{1B}[0m\r\nline three"
        )
        try await catalog.commitReceived(record, uidl: "u1")

        let list = try await GatepostProcess.run(["catalog", "list", "--spool", spool])
        #expect(list.status == 0, "\(list.stderr)")
        let show = try await GatepostProcess.run(["catalog", "show", record.id, "--spool", spool])
        #expect(show.status == 0, "\(show.stderr)")
        for output in [list.stdout, show.stdout] {
            let forbidden = output.unicodeScalars.filter { scalar in
                scalar != "\n" && (TerminalCheck.isControl(scalar) || (0x202A...0x202E).contains(scalar.value))
            }
            #expect(forbidden.isEmpty, "control characters reached the terminal: \(forbidden.map { String($0.value, radix: 16) })")
            #expect(!output.contains("\nFORGED"), "a CR/LF in a field forged a line")
        }
        #expect(show.stdout.contains("message text:\nline one\n\u{FFFD}[31mred\u{FFFD}[0m\nline three"), "\(show.stdout)")

        let json = try await GatepostProcess.run(["catalog", "show", record.id, "--spool", spool, "--format", "json"])
        #expect(json.status == 0)
        #expect(!json.stdout.contains("\u{1B}") && json.stdout.contains("\\u001b"), "JSON escapes control characters")
        let decoded = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(decoded?["subject"] as? String == Self.hostile, "and keeps them exactly")
    }
}

/// A hostile message's file name and subject reach the log of `gatepost poll -v` safe.
@Suite struct LogSafetyTests {
    @Test func logLinesCarryNoControlCharacters() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let name = "inv\u{1B}]0;pwned\u{07}oice\u{1B}[2J.pdf"
        let message = """
            From: p@partner.example\r
            Subject: =?utf-8?b?\(Data("Orders\u{1B}[31m\u{9B}2J\u{202E}".utf8).base64EncodedString())?=\r
            Message-ID: <hostile-log@partner.example>\r
            Content-Type: multipart/mixed; boundary=b\r
            \r
            --b\r
            Content-Type: application/pdf\r
            Content-Disposition: attachment; filename*=utf-8''\(name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")\r
            \r
            %PDF\r
            --b--\r

            """
        try dovecot.addMessage(user: "alice", Array(message.utf8))
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-log-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir + "/sites", withIntermediateDirectories: true)
        try """
        pop3:
          host: 127.0.0.1
          port: \(dovecot.info.tlsPort)
          user: alice
          password: \(dovecot.info.users["alice"] ?? "")
          tls: {ca_file: \(dovecot.info.caFile)}
        """.write(toFile: dir + "/sites/partner.yaml", atomically: true, encoding: .utf8)
        let poll = try await GatepostProcess.run(["poll", "-v", "--sites", dir + "/sites", "--spool", dir + "/spool"])
        #expect(poll.status == 0, "\(poll.stderr)")
        #expect(poll.stderr.contains("received"), "the log names the transfer")

        // A server's words: its -ERR text reaches the error line and the log.
        var behavior = ScriptedPOP3Server.Behavior()
        behavior.override = { $0.hasPrefix("PASS") || $0.hasPrefix("AUTH") ? "-ERR [AUTH] \u{1B}]0;pwned\u{07}bad\u{1B}[2J \u{9B}password\rFORGED" : nil }
        let server = ScriptedPOP3Server(messages: [], behavior: behavior)
        let port = try await server.start()
        defer { Task { await server.stop() } }
        try """
        pop3: {host: 127.0.0.1, port: \(port), security: none, user: demo, password: x, allow_plaintext_password: true}
        """.write(toFile: dir + "/sites/hostile.yaml", atomically: true, encoding: .utf8)
        let refused = try await GatepostProcess.run(["poll", "hostile", "-v", "--sites", dir + "/sites", "--spool", dir + "/spool"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("pwned"), "\(refused.stderr)")
        for output in [poll.stdout, poll.stderr, refused.stdout, refused.stderr] {
            let forbidden = output.unicodeScalars.filter { $0 != "\n" && TerminalCheck.isControl($0) }
            #expect(forbidden.isEmpty, "control characters reached the log: \(forbidden.map { String($0.value, radix: 16) })")
        }
    }
}

/// The characters the command line must never print raw (the test's own definition).
enum TerminalCheck {
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        (0x00...0x1F).contains(scalar.value) || (0x7F...0x9F).contains(scalar.value)
    }
}
