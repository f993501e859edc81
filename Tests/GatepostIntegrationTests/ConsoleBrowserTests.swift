import Foundation
import GatepostCatalog
import GatepostConsole
import GatepostCore
import GatepostTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The console in a real browser (headless Chromium driven by scripts/peers/console-browser-test.py)
/// against a real daemon polling the test Dovecot: log in, disable a site and see it, poll now
/// and see the new transfer, find it by file name, open it, download its file and compare its
/// SHA-256. Screenshots of each step are kept in `test-artifacts/console-browser/`.
@Suite(.serialized) struct ConsoleBrowserTests {
    /// A port nobody listens on now (the kernel's choice for port 0).
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test func anOperatorWorksTheConsoleInABrowser() async throws {
        let dovecot = try await DovecotPeer.start()
        defer { dovecot.stop() }
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-browser-\(UUID().uuidString.prefix(8))")
        let sites = root + "/sites", spool = root + "/spool"
        try FileManager.default.createDirectory(atPath: sites, withIntermediateDirectories: true)
        try """
        pop3:
          host: 127.0.0.1
          port: \(dovecot.info.tlsPort)
          user: alice
          password: alice-secret
          tls: {ca_file: \(dovecot.info.caFile)}
        poll: {interval: 1h}
        """.write(toFile: sites + "/alice.yaml", atomically: true, encoding: .utf8)
        let password = "correct horse battery"
        try """
        users:
          - {name: olivia, role: operator, password_hash: "\(ConsoleAuthenticator.hashPassword(password))"}
        """.write(toFile: root + "/users.yaml", atomically: true, encoding: .utf8)

        let port = try Self.freePort()
        let global = ["--sites", sites, "--spool", spool]
        let daemon = try ChildProcess.start(GatepostProcess.binary, ["run", "--http", "127.0.0.1:\(port)"] + global)
        var stopped = false
        defer { if !stopped { daemon.signal(SIGKILL) } }
        let catalogPath = spool + "/catalog.sqlite"
        let firstPoll = try await DaemonTests.waitUntil(20) {
            guard FileManager.default.fileExists(atPath: catalogPath) else { return false }
            return try await SQLiteCatalog(path: catalogPath).siteStates()["alice"]?.lastSuccess != nil
        }
        #expect(firstPoll, "the daemon's first poll")

        // The file arrives after the daemon's first poll: only "poll now" brings it in.
        let sent = try #require(try await dovecot.fillMailbox(user: "alice", count: 1, seed: 11, mix: "xfer").first)
        let fileName = try #require(sent.expectedFileName ?? sent.fileName)
        let sha256 = try #require(sent.sha256)
        let projectRoot = dovecot.projectRoot
        let screenshots = projectRoot + "/test-artifacts/console-browser"
        try? FileManager.default.removeItem(atPath: screenshots)
        let browser = try await ChildProcess.run(
            projectRoot + "/scripts/peers/console-browser-test.py",
            ["http://127.0.0.1:\(port)", "olivia", password, "alice", fileName, sha256, screenshots],
            // Chromium and its driver go with the script, whatever happens to it.
            timeout: .seconds(180), endingItsProcessGroup: true
        )
        #expect(browser.status == 0, "\(browser.stdout)\n\(browser.stderr.suffix(3000))")
        for step in ["1-login", "2-dashboard", "3-disabled", "4-polled", "5-found", "6-transfer"] {
            #expect(FileManager.default.fileExists(atPath: "\(screenshots)/\(step).png"), "screenshot \(step)")
        }

        // What the browser did is in the catalog, with who did it.
        let catalog = try SQLiteCatalog(path: catalogPath)
        let actions = try await catalog.operatorActions(site: "alice", transferId: nil, limit: 10).map { "\($0.actor) \($0.action)" }
        #expect(actions == ["olivia site.poll", "olivia site.enable", "olivia site.disable"], "\(actions)")
        #expect(try await catalog.transfers(TransferFilter(site: "alice")).map(\.sha256) == [sha256])

        daemon.signal(SIGTERM)
        let result = try await daemon.finish(timeout: .seconds(30))
        stopped = true
        #expect(result.status == 0, "\(result.stderr.suffix(2000))")
        try? FileManager.default.removeItem(atPath: root)
    }
}
