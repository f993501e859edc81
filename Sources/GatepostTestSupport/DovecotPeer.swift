import Foundation
import GatepostCore
import Synchronization

/// A private Dovecot POP3 server for integration tests, started by
/// `scripts/peers/start-dovecot.sh` on free 127.0.0.1 ports with a plain+STLS listener, an
/// implicit-TLS listener, a throwaway CA and passwd-file users. It stops when ``stop()`` is
/// called or, through the script's watchdog, when the test process exits.
public final class DovecotPeer: Sendable {
    public struct Info: Decodable, Sendable {
        public var pid: Int32
        public var host: String
        public var plainPort: Int
        public var tlsPort: Int
        public var caFile: String
        public var clientCert: String
        public var clientKey: String
        public var mailUid: UInt32
        public var mailGid: UInt32
        public var log: String
        public var users: [String: String]
        public var maildirs: [String: String]
    }

    /// One message the generator wrote, with what Gatepost must make of it.
    public struct ExpectedMessage: Decodable, Sendable {
        public var type: String
        /// The name as sent (decoded); "RECOVER" for messages kept whole.
        public var fileName: String?
        /// For XFER: the name Gatepost must save it under (the last path component).
        public var expectedFileName: String?
        public var sha256: String?
        public var messageId: String
        public var subject: String?
        public var originalMessageId: String?
        public var maildirFile: String?
    }

    public enum PeerError: Error, CustomStringConvertible {
        case scriptFailed(String, status: Int32, output: String)

        public var description: String {
            switch self {
            case .scriptFailed(let script, let status, let output): "\(script) exited with \(status): \(output)"
            }
        }
    }

    public let directory: String
    public let info: Info
    public let projectRoot: String
    /// Users added after the start (``addUsers(_:)``): their Maildirs' `new/`.
    private let addedMaildirs = Mutex<[String: String]>([:])

    /// Starts Dovecot. `projectRoot` defaults to the checkout this file belongs to.
    public static func start(projectRoot: String = DovecotPeer.defaultProjectRoot()) async throws -> DovecotPeer {
        try await offloaded { try DovecotPeer(projectRoot: projectRoot) }
    }

    private init(projectRoot: String) throws {
        self.projectRoot = projectRoot
        // Dovecot's socket paths must stay short: a short folder under /tmp.
        let directory = Self.peerFolder("dovecot")
        self.directory = directory
        let output = try Self.run(
            projectRoot + "/scripts/peers/start-dovecot.sh",
            [directory, "--stop-with", String(ProcessInfo.processInfo.processIdentifier)]
        )
        guard let line = output.split(separator: "\n").last else {
            throw PeerError.scriptFailed("start-dovecot.sh", status: 0, output: "no JSON line")
        }
        info = try JSONDecoder().decode(Info.self, from: Data(line.utf8))
    }

    /// A new folder name for a test peer: `/tmp/gp-[RUN-]KIND-XXXXXXXX`, where RUN is
    /// `GATEPOST_TEST_RUN` (set by scripts/test), so that the run can tell afterwards whether
    /// any peer it started is still running (scripts/peers/leftovers.sh).
    static func peerFolder(_ kind: String) -> String {
        let run = (ProcessInfo.processInfo.environment["GATEPOST_TEST_RUN"] ?? "")
            .filter { $0.isASCII && ($0.isLetter || $0.isNumber) }.prefix(12)
        let unique = UUID().uuidString.prefix(8).lowercased()
        return run.isEmpty ? "/tmp/gp-\(kind)-\(unique)" : "/tmp/gp-\(run)-\(kind)-\(unique)"
    }

    /// Stops Dovecot and removes its folder. Returns at once: the waiting (Dovecot takes about
    /// a second to take its children down) happens on a thread of its own, so a test's cleanup
    /// never blocks the concurrency pool that other tests' I/O resumes on.
    public func stop() {
        Self.stop(pid: info.pid, removing: directory)
    }

    /// SIGTERM to a peer's master process, then, on a thread of its own, wait for it to go and
    /// remove its folder.
    static func stop(pid: Int32, removing directory: String) {
        kill(pid, SIGTERM)
        Thread.detachNewThread {
            // A zombie still answers kill(pid, 0), so look at its state instead. A master that
            // has not gone after 10 s is killed: its children notice and end too.
            for _ in 0..<500 where Self.isRunning(pid) {
                usleep(20_000)
            }
            if Self.isRunning(pid) {
                kill(pid, SIGKILL)
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != "Z" && state != "X"
    }

    public static func defaultProjectRoot(file: String = #filePath) -> String {
        // Sources/GatepostTestSupport/DovecotPeer.swift -> the checkout
        URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Fills `user`'s mailbox with `count` generated messages (Python's `email` package as an
    /// independent MIME writer) and returns what each should become.
    public func fillMailbox(
        user: String, count: Int, seed: Int = 1, attachmentSize: Int? = nil, mix: String? = nil
    ) async throws -> [ExpectedMessage] {
        try await offloaded { [self] in
            try fillMailboxBlocking(user: user, count: count, seed: seed, attachmentSize: attachmentSize, mix: mix)
        }
    }

    func fillMailboxBlocking(
        user: String, count: Int, seed: Int, attachmentSize: Int?, mix: String?
    ) throws -> [ExpectedMessage] {
        guard let maildir = info.maildirs[user] else { throw PeerError.scriptFailed("fillMailbox", status: 1, output: "no user \(user)") }
        let manifest = directory + "/manifest-\(user)-\(UUID().uuidString.prefix(6)).json"
        var arguments = ["--count", String(count), "--seed", String(seed), "--out", maildir, "--manifest", manifest]
        if let attachmentSize { arguments += ["--attachment-size", String(attachmentSize)] }
        if let mix { arguments += ["--mix", mix] }
        _ = try Self.run(projectRoot + "/scripts/peers/make-messages.py", arguments)
        // Dovecot reads the Maildir as its mail user.
        try Self.chownTree(maildir, uid: info.mailUid, gid: info.mailGid)
        return try JSONDecoder().decode([ExpectedMessage].self, from: Data(contentsOf: URL(fileURLWithPath: manifest)))
    }

    /// The `pop3:` block of a site file for `user` over implicit TLS, trusting the test CA.
    public func pop3Block(user: String) -> String {
        """
        pop3:
          host: 127.0.0.1
          port: \(info.tlsPort)
          user: \(user)
          password: \(info.users[user] ?? "")
          tls: {ca_file: \(info.caFile)}
        """
    }

    /// Changes `user`'s password on the server, as a partner's administrator would: the
    /// passwd-file is replaced whole (Dovecot reads it again when it changes).
    public func setPassword(user: String, to password: String) throws {
        let path = directory + "/users"
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map { line in
            guard line.hasPrefix("\(user):") else { return String(line) }
            var fields = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            fields[1] = "{PLAIN}\(password)"
            return fields.joined(separator: ":")
        }
        let temporary = path + ".new"
        try lines.joined(separator: "\n").write(toFile: temporary, atomically: false, encoding: .utf8)
        chmod(temporary, 0o600)
        guard rename(temporary, path) == 0 else { throw PeerError.scriptFailed("setPassword", status: errno, output: "cannot replace \(path)") }
    }

    /// Adds users, each with the password `<name>-secret` and an empty Maildir (many sites on
    /// one server). Dovecot reads its passwd-file again when it changes.
    public func addUsers(_ names: [String]) throws {
        let path = directory + "/users"
        var lines = try String(contentsOfFile: path, encoding: .utf8)
        for name in names {
            let home = directory + "/mail/" + name
            for folder in ["cur", "new", "tmp"] {
                try FileManager.default.createDirectory(atPath: home + "/Maildir/" + folder, withIntermediateDirectories: true)
            }
            if getuid() == 0 {
                for folder in ["", "/Maildir", "/Maildir/cur", "/Maildir/new", "/Maildir/tmp"] {
                    chown(home + folder, info.mailUid, info.mailGid)
                }
            }
            if !lines.hasSuffix("\n") { lines += "\n" }
            lines += "\(name):{PLAIN}\(name)-secret:::\(name):\(home)::\n"
        }
        let temporary = path + ".new"
        try lines.write(toFile: temporary, atomically: false, encoding: .utf8)
        chmod(temporary, 0o600)
        guard rename(temporary, path) == 0 else { throw PeerError.scriptFailed("addUsers", status: errno, output: "cannot replace \(path)") }
        addedMaildirs.withLock { maildirs in
            for name in names { maildirs[name] = directory + "/mail/" + name + "/Maildir/new" }
        }
    }

    /// The `pop3:` block of a site file for a user added by ``addUsers(_:)``.
    public func pop3Block(addedUser user: String) -> String {
        """
        pop3:
          host: 127.0.0.1
          port: \(info.tlsPort)
          user: \(user)
          password: \(user)-secret
          tls: {ca_file: \(info.caFile)}
        """
    }

    private func maildir(_ user: String) -> String? {
        info.maildirs[user] ?? addedMaildirs.withLock { $0[user] }
    }

    /// Puts one message, exactly these bytes, in `user`'s mailbox (a hostile message a test
    /// wrote by hand).
    public func addMessage(user: String, _ bytes: [UInt8]) throws {
        guard let maildir = maildir(user) else { throw PeerError.scriptFailed("addMessage", status: 1, output: "no user \(user)") }
        let path = maildir + "/" + "\(Int(Date().timeIntervalSince1970)).\(UUID().uuidString.prefix(12)).gatepost-test"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try Self.chownTree(maildir, uid: info.mailUid, gid: info.mailGid)
    }

    /// Moves the message file at `path` (on the same file system) into `user`'s mailbox: a
    /// large message another tool wrote, never read into memory.
    public func moveMessage(user: String, from path: String) throws {
        guard let maildir = info.maildirs[user] else { throw PeerError.scriptFailed("moveMessage", status: 1, output: "no user \(user)") }
        let destination = maildir + "/" + "\(Int(Date().timeIntervalSince1970)).\(UUID().uuidString.prefix(12)).gatepost-test"
        guard rename(path, destination) == 0 else { throw PeerError.scriptFailed("moveMessage", status: errno, output: "cannot move \(path)") }
        try Self.chownTree(maildir, uid: info.mailUid, gid: info.mailGid)
    }

    /// What `make-large-message.py` wrote.
    public struct LargeMessage: Decodable, Sendable {
        public var fileName: String
        /// Of the attachment.
        public var size: Int64
        public var sha256: String
        /// Of the message file.
        public var messageBytes: Int64
        public var messageId: String
    }

    /// Puts one message with a `size`-byte base64 attachment in `user`'s mailbox, written as a
    /// stream (scripts/peers/make-large-message.py), never held in memory.
    public func addLargeMessage(user: String, size: Int64) async throws -> LargeMessage {
        guard let maildir = info.maildirs[user] else { throw PeerError.scriptFailed("addLargeMessage", status: 1, output: "no user \(user)") }
        let output = try await offloaded { [projectRoot] in
            try Self.run(projectRoot + "/scripts/peers/make-large-message.py", ["--out", maildir, "--size", String(size)])
        }
        return try JSONDecoder().decode(LargeMessage.self, from: Data(output.utf8))
    }

    /// Messages waiting in `user`'s Maildir (new and cur).
    public func messageCount(user: String) -> Int {
        guard let newFolder = maildir(user) else { return 0 }
        let curFolder = (newFolder as NSString).deletingLastPathComponent + "/cur"
        let count = { (path: String) in
            ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasPrefix(".") }.count
        }
        return count(newFolder) + count(curFolder)
    }

    static func chownTree(_ path: String, uid: UInt32, gid: UInt32) throws {
        guard getuid() == 0 else { return }
        chown(path, uid, gid)
        for entry in try FileManager.default.contentsOfDirectory(atPath: path) {
            chown(path + "/" + entry, uid, gid)
        }
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let result = try ChildProcess.runBlocking(executable, arguments)
        guard result.status == 0 else {
            throw PeerError.scriptFailed((executable as NSString).lastPathComponent, status: result.status, output: result.stderr + result.stdout)
        }
        return result.stdout
    }
}
