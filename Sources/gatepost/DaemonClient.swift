import AsyncHTTPClient
import Foundation
import GatepostConsole
import GatepostCore
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// The command line's way to a running daemon: its control socket in the spool.
struct DaemonClient {
    let socket: String

    static func socketPath(spool: Spool) -> String {
        spool.root + "/control.sock"
    }

    /// The daemon's client, when a daemon answers on the spool's socket.
    static func connect(spool: Spool) -> DaemonClient? {
        let path = socketPath(spool: spool)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return DaemonClient(socket: path)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func pollNow(_ site: String) async throws -> PollNowOutcome {
        try await request("/api/v1/sites/\(site.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? site)/poll", method: .POST,
                          timeout: .hours(2))
    }

    func retry(_ id: String) async throws -> OperatorOutcome {
        try await request("/api/v1/transfers/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)/retry", method: .POST,
                          timeout: .minutes(30))
    }

    func status() async throws -> DaemonStatus {
        try await request("/api/v1/status", method: .GET, timeout: .seconds(30))
    }

    private func request<Answer: Decodable>(_ path: String, method: HTTPMethod, timeout: TimeAmount) async throws -> Answer {
        guard let url = URL(httpURLWithSocketPath: socket, uri: path) else { throw Failure(description: "no URL for \(socket)") }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        request.headers.add(name: "X-Gatepost-Actor", value: Runtime.commandLineActor)
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await HTTPClient.shared.execute(request, timeout: timeout)
            body = try await response.body.collect(upTo: 16 << 20)
        } catch {
            throw Failure(description: "the daemon does not answer on \(socket): \(error)")
        }
        guard response.status == .ok else {
            let message = (try? JSONDecoder().decode([String: String].self, from: body))?["error"] ?? String(buffer: body)
            throw Failure(description: message)
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(Answer.self, from: body)
    }
}
