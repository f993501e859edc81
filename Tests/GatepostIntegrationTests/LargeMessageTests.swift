import Crypto
import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Testing

/// Bounded memory, measured on the real thing: `gatepost poll` fetches a message with a 1 GiB
/// attachment from Dovecot over TLS, and its peak resident memory stays under 64 MiB while the
/// file arrives whole. The peak is the kernel's VmHWM as `gatepost poll` reports it in its
/// summary: wait4's ru_maxrss cannot be used, since a posix_spawn child inherits the (large)
/// test process's high-water mark until it execs.
@Suite(.serialized) struct LargeMessageTests {
    static let attachmentSize: Int64 = 1 << 30
    static let memoryCeilingMiB = 64

    @Test func aOneGiBAttachmentStreamsToTheSpoolInBoundedMemory() async throws {
        let dovecot = try await DovecotPeer.start()
        let root = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-large-\(UUID().uuidString)")
        defer {
            dovecot.stop()
            try? FileManager.default.removeItem(atPath: root)
        }
        try FileManager.default.createDirectory(atPath: root + "/sites", withIntermediateDirectories: true)
        try """
        pop3:
          host: 127.0.0.1
          port: \(dovecot.info.tlsPort)
          security: tls
          user: alice
          password: \(dovecot.info.users["alice"] ?? "")
          tls: {ca_file: \(dovecot.info.caFile)}
        poll:
          max_message_size: 2GiB
        """.write(toFile: root + "/sites/partner.yaml", atomically: true, encoding: .utf8)
        let expected = try await dovecot.addLargeMessage(user: "alice", size: Self.attachmentSize)

        let result = try await ChildProcess.run(
            GatepostProcess.binary, ["poll", "partner", "--sites", root + "/sites", "--spool", root + "/spool"],
            timeout: .seconds(600)
        )
        #expect(result.status == 0, "\(result.stderr)")
        // "partner: 1 new (XFER 1), ..., 1.4 GiB in 55.0 s, peak memory 52.9 MiB"
        let peak = try #require(result.stdout.split(separator: "peak memory ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
        print("gatepost poll of a \(expected.messageBytes >> 20) MiB message: peak memory \(peak)")
        #expect(peak.hasSuffix("MiB"), "\(result.stdout)")
        let mebibytes = try #require(Double(peak.dropLast(3).trimmingCharacters(in: .whitespaces)))
        #expect(mebibytes > 1 && mebibytes < Double(Self.memoryCeilingMiB), "peak memory \(peak) for a \(expected.messageBytes >> 20) MiB message")

        let catalog = try SQLiteCatalog(path: root + "/spool/catalog.sqlite")
        let records = try await catalog.transfers(TransferFilter())
        let record = try #require(records.first)
        #expect(records.count == 1)
        #expect(record.type == .xfer)
        #expect(record.fileName == expected.fileName)
        #expect(record.size == expected.size)
        #expect(record.sha256 == expected.sha256)
        // The record's hash was computed while writing; read the file back to be sure.
        let path = try #require(record.path)
        #expect(try await offloaded { try Self.sha256(ofFile: path) } == expected.sha256)
        #expect(dovecot.messageCount(user: "alice") == 0, "deleted after the commit")
    }

    /// Streams the file through SHA-256 a megabyte at a time.
    static func sha256(ofFile path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
