import Foundation
import GatepostCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a spawned program starts with, read from its `/proc/PID/status` and `/proc/PID/fd`
/// while it runs: whatever the spawning thread blocked or the process ignored, and whatever
/// descriptors the parent holds open, the child starts clean.
@Suite struct ChildProcessTests {
    /// The fields of `/proc/PID/status` named `name`, as a number (the masks are hexadecimal).
    static func statusMask(_ pid: pid_t, _ name: String) throws -> UInt64 {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix(name + ":") })
        let value = line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        return try #require(UInt64(value, radix: 16))
    }

    @Test func spawnedProgramHasNoBlockedOrIgnoredSignalsAndOnlyStandardDescriptors() async throws {
        // A descriptor the child must not get: opened without close-on-exec.
        let leaked = open("/dev/null", O_RDONLY)
        try #require(leaked >= 3)
        defer { close(leaked) }
        // SIGUSR2 ignored in the whole process; SIGTERM and SIGINT blocked on the spawning
        // thread (the concurrency pool's threads block them too, but this does not rely on it).
        let previous = signal(SIGUSR2, SIG_IGN)
        defer { signal(SIGUSR2, previous) }

        let running: ChildProcess.Running = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                var blocked = sigset_t()
                sigemptyset(&blocked)
                sigaddset(&blocked, SIGTERM)
                sigaddset(&blocked, SIGINT)
                pthread_sigmask(SIG_BLOCK, &blocked, nil)
                continuation.resume(with: Result { try ChildProcess.start("/bin/sleep", ["30"]) })
            }
        }
        var finished = false
        defer { if !finished { running.signal(SIGKILL) } }

        #expect(try Self.statusMask(running.pid, "SigBlk") == 0)
        // Signals 32 and 33 are glibc's own (threads' cancellation and set-id calls, below
        // SIGRTMIN): no program can change what they do, so they are left out.
        let glibcInternal: UInt64 = 1 << (32 - 1) | 1 << (33 - 1)
        #expect(try Self.statusMask(running.pid, "SigIgn") & ~glibcInternal == 0)
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(running.pid)/fd")
        #expect(Set(descriptors) == ["0", "1", "2"])

        // And SIGTERM, the way peers and commands are stopped, ends it.
        running.signal(SIGTERM)
        let result = try await running.finish(timeout: .seconds(10))
        finished = true
        #expect(result.status == 128 + SIGTERM)
        #expect(!result.timedOut)
    }
}
