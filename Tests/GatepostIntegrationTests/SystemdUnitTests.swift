import Foundation
import GatepostCore
import Testing

/// The unit file shipped in docs/ is one systemd accepts, and runs the daemon the README
/// describes.
@Suite struct SystemdUnitTests {
    static let unit = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/gatepost.service")

    @Test func theShippedUnitVerifies() async throws {
        let text = try String(contentsOf: Self.unit, encoding: .utf8)
        #expect(text.contains("ExecStart=/usr/local/bin/gatepost run "))
        #expect(text.contains("ExecReload=/bin/kill -HUP $MAINPID"), "SIGHUP reloads the sites")
        #expect(text.contains("KillMode=control-group"), "application commands that left their group end with the service")
        #expect(text.contains("UMask=0077"))
        // systemd checks the executable exists: verify a copy that names the one just built.
        let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let copy = folder + "/gatepost.service"
        try text.replacingOccurrences(of: "/usr/local/bin/gatepost", with: GatepostProcess.binary).write(toFile: copy, atomically: true, encoding: .utf8)
        // scripts/install-test-deps installs it.
        let analyzer = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyzer), "systemd-analyze is missing: run scripts/install-test-deps")
        let result = try await ChildProcess.run(analyzer, ["verify", copy], timeout: .seconds(60))
        let problems = (result.stdout + result.stderr).split(separator: "\n").filter { $0.contains("gatepost.service") }
        #expect(result.status == 0 && problems.isEmpty, "\(result.stdout)\(result.stderr)")
    }
}
