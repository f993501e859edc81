import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Logging
import Testing

/// The spool's file system full, the catalog's read-only: the poll stops, deletes nothing, and
/// says why. Uses a small tmpfs (tests run as root, as CI does).
@Suite(.serialized) struct DiskFaultTests {
    /// Mounts a tmpfs of `size` at a new folder; returns its path.
    static func mountTmpfs(size: String) async throws -> String {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-tmpfs-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let result = try await ChildProcess.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size),mode=0700", "tmpfs", path])
        try #require(result.status == 0, "mounting a tmpfs needs root: \(result.stderr)")
        return path
    }

    static func unmount(_ path: String) async {
        _ = try? await ChildProcess.run("/bin/umount", ["-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }

    static func bigMessage(_ index: Int, bytes: Int) -> ScriptedPOP3Server.Message {
        let body = String(repeating: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n", count: bytes / 76)
        let text = "From: a@acme.example\r\nMessage-ID: <big-\(index)@acme.example>\r\nSubject: big \(index)\r\n\r\n" + body
        return .init(uidl: "big-\(index)", bytes: Array(text.utf8))
    }

    static func site(port: Int) throws -> RemoteSite {
        try #require(try SiteLoader(environment: [:]).parse("""
        pop3: {host: 127.0.0.1, port: \(port), security: none, allow_plaintext_password: true, user: demo, password: demo-password}
        """, file: "/tmp/disk.yaml"))
    }

    @Test func aFullSpoolStopsThePollAndDeletesNothing() async throws {
        let mount = try await Self.mountTmpfs(size: "2m")
        let server = ScriptedPOP3Server(messages: (1...4).map { Self.bigMessage($0, bytes: 700_000) })
        let port = try await server.start()
        defer { Task { await server.stop(); await Self.unmount(mount) } }
        let spool = try Spool(root: mount + "/spool")
        let catalog = try SQLiteCatalog(path: spool.catalogPath)
        do {
            _ = try await PollJob(site: try Self.site(port: port), spool: spool, catalog: catalog, logger: Logger(label: "t")).run()
            Issue.record("a 2 MiB spool cannot take 2.8 MB of messages")
        } catch let error as SitePollError {
            #expect(error.cause.contains("No space left on device (the spool's file system is full)"), "\(error)")
            #expect(!error.isTransient)
        }
        // What was committed is whole; nothing was deleted (no QUIT after the failure).
        let records = try await catalog.transfers(TransferFilter())
        #expect(records.count < 4)
        for record in records {
            let path = try #require(record.path)
            #expect(FileManager.default.fileExists(atPath: path))
        }
        #expect(server.messages.count == 4)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.temporaryRoot).isEmpty)
    }

    @Test func aReadOnlyCatalogStopsBeforeTouchingTheServer() async throws {
        let mount = try await Self.mountTmpfs(size: "8m")
        let server = ScriptedPOP3Server(messages: DemoMailbox.messages)
        let port = try await server.start()
        defer { Task { await server.stop(); await Self.unmount(mount) } }
        let sites = mount + "/sites"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        try """
        pop3: {host: 127.0.0.1, port: \(port), security: none, allow_plaintext_password: true, user: demo, password: demo-password}
        """.write(toFile: sites + "/scripted.yaml", atomically: true, encoding: .utf8)
        // A first, healthy poll creates the spool and catalog; then the file system turns read-only.
        let first = try await GatepostProcess.run(["poll", "--sites", sites, "--spool", mount + "/spool"])
        #expect(first.status == 0, "\(first.stderr)")
        let refill = ScriptedPOP3Server(messages: DemoMailbox.messages)
        let refillPort = try await refill.start()
        defer { Task { await refill.stop() } }
        try """
        pop3: {host: 127.0.0.1, port: \(refillPort), security: none, allow_plaintext_password: true, user: demo, password: demo-password}
        """.write(toFile: sites + "/scripted.yaml", atomically: true, encoding: .utf8)
        let remount = try await ChildProcess.run("/bin/mount", ["-o", "remount,ro", mount])
        #expect(remount.status == 0, "\(remount.stderr)")
        let second = try await GatepostProcess.run(["poll", "--sites", sites, "--spool", mount + "/spool"])
        #expect(second.status == 1)
        #expect(second.stderr.contains("read-only"), "\(second.stderr)")
        #expect(second.stderr.trimmingCharacters(in: .newlines).split(separator: "\n").count == 1, "\(second.stderr)")
        #expect(refill.messages.count == 4)
    }
}
