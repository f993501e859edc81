import Foundation
import GatepostCore

/// A private PostgreSQL server for the catalog tests, started by
/// `scripts/peers/start-postgres.sh` on a free 127.0.0.1 port, with a superuser that logs in by
/// password (scram-sha-256) over TCP. Tests share one server per test process (``shared()``)
/// and each takes a database of its own (``makeDatabase()``). It stops when ``stop()`` is
/// called or, through the script's watchdog, when the test process exits (which also removes
/// its folder).
public final class PostgresPeer: Sendable {
    public struct Info: Decodable, Sendable {
        public var pid: Int32
        public var host: String
        public var port: Int
        /// The unix socket's folder (the socket is `.s.PGSQL.<port>` in it).
        public var socketDirectory: String
        public var user: String
        public var password: String
        /// The server's programs (psql, pg_isready...).
        public var bin: String
        public var log: String
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

    /// The server every test of this process uses, started by the first one that asks; a
    /// failure to start is every caller's failure.
    public static func shared() async throws -> PostgresPeer {
        try await sharedServer.value
    }

    private static let sharedServer = Task { try await PostgresPeer.start() }

    /// Starts a server of its own. `projectRoot` defaults to the checkout this file belongs to.
    public static func start(projectRoot: String = DovecotPeer.defaultProjectRoot()) async throws -> PostgresPeer {
        try await offloaded { try PostgresPeer(projectRoot: projectRoot) }
    }

    private init(projectRoot: String) throws {
        let directory = DovecotPeer.peerFolder("postgres")
        self.directory = directory
        let output = try DovecotPeer.run(
            projectRoot + "/scripts/peers/start-postgres.sh",
            [directory, "--no-fsync", "--stop-with", String(ProcessInfo.processInfo.processIdentifier)]
        )
        guard let line = output.split(separator: "\n").last else {
            throw PeerError.scriptFailed("start-postgres.sh", status: 0, output: "no JSON line")
        }
        info = try JSONDecoder().decode(Info.self, from: Data(line.utf8))
    }

    /// Creates a new, empty database and returns its URL (password included).
    public func makeDatabase() async throws -> String {
        url(database: try await createDatabase())
    }

    /// Creates a new, empty database and returns its name.
    public func createDatabase() async throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await psql("CREATE DATABASE \(name)")
        return name
    }

    /// Runs one SQL command as the superuser, in `database`, through the unix socket; returns
    /// what it printed (rows unaligned, `|` between columns, no headers).
    @discardableResult
    public func psql(_ command: String, database: String = "postgres") async throws -> String {
        let result = try await ChildProcess.run(
            info.bin + "/psql",
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", info.socketDirectory, "-p", String(info.port), "-U", info.user,
             "-d", database, "-c", command],
            timeout: .seconds(60)
        )
        guard result.status == 0 else {
            throw PeerError.scriptFailed("psql", status: result.status, output: result.stderr + result.stdout)
        }
        return result.stdout
    }

    /// The URL of `database` over TCP, with the password.
    public func url(database: String, password: String? = nil) -> String {
        let secret = (password ?? info.password).addingPercentEncoding(withAllowedCharacters: .urlPasswordAllowed) ?? ""
        return "postgres://\(info.user):\(secret)@\(info.host):\(info.port)/\(database)?sslmode=disable"
    }

    /// The URL of `database` through the unix socket (no password asked there).
    public func socketURL(database: String) -> String {
        "postgres://\(info.user)@/\(database)?host=\(info.socketDirectory)&port=\(info.port)"
    }

    /// Stops the server (a fast shutdown: its clients are disconnected) and removes its
    /// folder. Returns at once; the waiting happens on a thread of its own.
    public func stop() {
        let pid = info.pid, directory = directory
        kill(pid, SIGINT)
        Thread.detachNewThread {
            for _ in 0..<500 where DovecotPeer.isRunning(pid) {
                usleep(20_000)
            }
            if DovecotPeer.isRunning(pid) {
                kill(pid, SIGKILL)
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}
