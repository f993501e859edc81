import Crypto
import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Testing

/// Bounded memory, measured on the real thing: `gatepost poll` fetches a message with a 1 GiB
/// attachment from Dovecot over TLS, and its peak resident memory is no more than
/// `growthCeilingMiB` above that of a poll of one small message, while the file arrives whole.
/// What a poll needs whatever the message (the binary, TLS, SQLite, threads) is measured by the
/// small poll, not guessed: the test is about what grows with the message. The peak is the
/// kernel's VmHWM as `gatepost poll` reports it in its summary: wait4's ru_maxrss cannot be used,
/// since a posix_spawn child inherits the (large) test process's high-water mark until it execs.
@Suite(.serialized) struct LargeMessageTests {
    static let attachmentSize: Int64 = 1 << 30
    /// Buffers in flight (NIO's, the spool writer's) and the allocator's kept free memory.
    static let growthCeilingMiB = 16.0

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
        // "partner: 1 new (XFER 1), ..., 1.4 GiB in 55.0 s, peak memory 52.9 MiB"
        func pollPeak() async throws -> Double {
            let result = try await ChildProcess.run(
                GatepostProcess.binary, ["poll", "partner", "--sites", root + "/sites", "--spool", root + "/spool"],
                timeout: .seconds(600)
            )
            #expect(result.status == 0, "\(result.stderr)")
            let peak = try #require(result.stdout.split(separator: "peak memory ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
            #expect(peak.hasSuffix("MiB"), "\(result.stdout)")
            return try #require(Double(peak.dropLast(3).trimmingCharacters(in: .whitespaces)))
        }
        _ = try await dovecot.fillMailbox(user: "alice", count: 1, seed: 3)
        let small = try await pollPeak()
        let expected = try await dovecot.addLargeMessage(user: "alice", size: Self.attachmentSize)
        let large = try await pollPeak()
        print("gatepost poll of a \(expected.messageBytes >> 20) MiB message: peak memory \(large) MiB, of a small one \(small) MiB")
        #expect(small > 1 && large - small < Self.growthCeilingMiB, "peak memory \(large) MiB for a \(expected.messageBytes >> 20) MiB message, \(small) MiB for a small one")

        let catalog = try SQLiteCatalog(path: root + "/spool/catalog.sqlite")
        let records = try await catalog.transfers(TransferFilter()).filter { $0.size == expected.size }
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
