import CGatepostSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to completion and captures its output, with posix_spawn, poll and waitpid:
/// application commands (with a timeout) and, in tests, the test peers and `gatepost` itself.
/// The program starts clean: standard input from /dev/null, standard output and error to
/// pipes, no other descriptor, an empty signal mask and every signal's default action.
///
/// Foundation's `Process` can miss a child's exit when several are launched at once (the child
/// stays a zombie and `waitUntilExit` never returns), hence this small runner. Output is kept
/// up to `maxOutput` bytes per stream (the tail), so a chatty command cannot exhaust memory.
public enum ChildProcess {
    private static let spawnLock = NSLock()

    public struct Result: Sendable {
        /// The exit status, or 128 + the signal number when the program was killed.
        public var status: Int32
        public var stdout: String
        public var stderr: String
        /// True when the program was killed for running past its timeout.
        public var timedOut: Bool
    }

    public struct SpawnError: Error, Sendable, CustomStringConvertible {
        public var executable: String
        public var errno: Int32
        public var description: String { "cannot run \(executable): \(String(cString: strerror(errno)))" }
    }

    /// Runs the program on a thread of its own, so an async test never blocks the cooperative pool.
    ///
    /// The result is the program's own: it is done when it exits, even if something it started
    /// in the background still holds its output open. With `endingItsProcessGroup`, whatever it
    /// left running in its process group is killed when it exits.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        timeout: Duration? = nil, maxOutput: Int = 16 << 20, endingItsProcessGroup: Bool = false
    ) async throws -> Result {
        try await offloaded {
            try runBlocking(
                executable, arguments, environment: environment, timeout: timeout, maxOutput: maxOutput,
                endingItsProcessGroup: endingItsProcessGroup
            )
        }
    }

    public static func runBlocking(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        timeout: Duration? = nil, maxOutput: Int = 16 << 20, endingItsProcessGroup: Bool = false
    ) throws -> Result {
        try start(executable, arguments, environment: environment)
            .collect(timeout: timeout, maxOutput: maxOutput, endingItsProcessGroup: endingItsProcessGroup)
    }

    /// A started program: signal it, then collect its output and status.
    public final class Running: Sendable {
        public let pid: pid_t
        let stdoutFD: Int32
        let stderrFD: Int32

        init(pid: pid_t, stdoutFD: Int32, stderrFD: Int32) {
            self.pid = pid
            self.stdoutFD = stdoutFD
            self.stderrFD = stderrFD
        }

        public func signal(_ signal: Int32) {
            kill(pid, signal)
        }

        /// Waits (on a thread of its own) for the program to end.
        public func finish(timeout: Duration? = nil, maxOutput: Int = 16 << 20) async throws -> Result {
            try await offloaded { [self] in collect(timeout: timeout, maxOutput: maxOutput, endingItsProcessGroup: false) }
        }

        func collect(timeout: Duration?, maxOutput: Int, endingItsProcessGroup: Bool) -> Result {
            let pid = pid
            let stdoutPipe = [stdoutFD]
            let stderrPipe = [stderrFD]
            // Drain both pipes together so a chatty child can never block on a full one.
            var outputs: [Int32: [UInt8]] = [stdoutPipe[0]: [], stderrPipe[0]: []]
            var open = [stdoutPipe[0], stderrPipe[0]]
            var buffer = [UInt8](repeating: 0, count: 65536)
            let deadline = timeout.map { ContinuousClock.now + $0 }
            var timedOut = false
            var status: Int32 = 0
            var exited = false
            var drainUntil: ContinuousClock.Instant?
            while !open.isEmpty {
                // Done when the program exits: a background child of it may hold the pipes open
                // for as long as it likes. What is already in the pipes is still read.
                if !exited {
                    var reaped: pid_t
                    repeat { reaped = waitpid(pid, &status, WNOHANG) } while reaped < 0 && errno == EINTR
                    exited = reaped == pid
                    if exited { drainUntil = ContinuousClock.now + .milliseconds(200) }
                } else if let drainUntil, ContinuousClock.now > drainUntil {
                    // A background child that keeps writing does not keep us here.
                    break
                }
                var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                var waitMilliseconds: Int32 = -1
                if let deadline {
                    let left = deadline - ContinuousClock.now
                    if left <= .zero {
                        // Past its time: kill it; the pipes then close and the loop ends.
                        if !timedOut { kill(-pid, SIGKILL) }
                        timedOut = true
                        waitMilliseconds = 100
                    } else {
                        let (seconds, attoseconds) = left.components
                        waitMilliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
                    }
                }
                // Until it exits, wake now and then to notice that it did (its pipes may stay
                // open); once it has, only drain what is there.
                waitMilliseconds = exited ? 0 : (waitMilliseconds < 0 ? 50 : min(waitMilliseconds, 50))
                let ready = poll(&fds, nfds_t(fds.count), waitMilliseconds)
                if ready < 0 {
                    if errno == EINTR { continue }
                    break
                }
                if ready == 0, exited { break }
                for entry in fds where entry.revents != 0 {
                    let count = read(entry.fd, &buffer, buffer.count)
                    if count > 0 {
                        outputs[entry.fd, default: []].append(contentsOf: buffer[0..<count])
                        if let kept = outputs[entry.fd], kept.count > maxOutput {
                            outputs[entry.fd] = Array(kept.suffix(maxOutput))
                        }
                    } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                        close(entry.fd)
                        open.removeAll { $0 == entry.fd }
                    }
                }
            }
            for fd in open { close(fd) }
            if !exited {
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            }
            if endingItsProcessGroup { kill(-pid, SIGKILL) }
            // WIFEXITED / WEXITSTATUS, spelled out (the C macros are not imported).
            let exitStatus = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
            return Result(
                status: exitStatus,
                stdout: String(decoding: outputs[stdoutPipe[0]] ?? [], as: UTF8.self),
                stderr: String(decoding: outputs[stderrPipe[0]] ?? [], as: UTF8.self),
                timedOut: timedOut
            )
        }
    }

    /// Starts a program with its output captured; collect it with ``Running/finish(timeout:maxOutput:)``.
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Running {
        var stdoutPipe: [Int32] = [0, 0]
        var stderrPipe: [Int32] = [0, 0]
        // Close-on-exec: a child started concurrently by another test must not inherit our pipe
        // ends, or this child's EOF would never come while that one lives (Dovecot lives long).
        // dup2 onto 1 and 2 clears the flag for the one child meant to have them. The lock
        // closes the window between pipe() and fcntl() for spawns made through here.
        spawnLock.lock()
        guard pipe(&stdoutPipe) == 0, pipe(&stderrPipe) == 0 else {
            spawnLock.unlock()
            throw SpawnError(executable: executable, errno: errno)
        }
        for fd in stdoutPipe + stderrPipe {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        // Nothing else: not NIO's epoll and event descriptors, SQLite's files, nor a pipe of a
        // child that another thread is starting.
        _ = gatepost_spawn_close_from(&actions, 3)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let environmentPairs = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = environmentPairs.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        // Its own process group, so a timeout kills what it started too (a shell's children
        // would otherwise keep the pipes open).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        // A clean signal state. The threads this runs on (Swift's concurrency pool, and threads
        // started from it) block nearly every signal, and a spawned program keeps the mask it is
        // given: a command or a test peer would never see SIGTERM, SIGINT or SIGALRM. Signals
        // the parent ignores (SIGHUP in the daemon, SIGPIPE) would stay ignored the same way.
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var everySignal = sigset_t()
        sigfillset(&everySignal)
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        )
        // A program named without a slash is looked up in PATH, as a shell would.
        let spawned = executable.contains("/")
            ? posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            : posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        close(stdoutPipe[1])
        close(stderrPipe[1])
        spawnLock.unlock()
        guard spawned == 0 else {
            close(stdoutPipe[0])
            close(stderrPipe[0])
            throw SpawnError(executable: executable, errno: spawned)
        }

        return Running(pid: pid, stdoutFD: stdoutPipe[0], stderrFD: stderrPipe[0])
    }

}
