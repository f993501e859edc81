import Foundation
import NIOConcurrencyHelpers

/// A local HTTP receiver for webhooks on 127.0.0.1: it keeps every request (headers and body)
/// and answers each with the next status of `statuses` (then 200), so that a test can make the
/// receiver fail before it accepts.
public final class WebhookSink: Sendable {
    public typealias Request = LocalHTTPServer.Request

    private let statuses: NIOLockedValueBox<[Int]>
    private let received = NIOLockedValueBox<[Request]>([])
    private let all = NIOLockedValueBox(0)
    private let server = NIOLockedValueBox<LocalHTTPServer?>(nil)

    public init(statuses: [Int] = []) {
        self.statuses = NIOLockedValueBox(statuses)
    }

    /// The requests answered with 2xx so far, in order.
    public var accepted: [Request] { received.withLockedValue { $0 } }

    /// Every request received, whatever it was answered.
    public var requestsReceived: Int { all.withLockedValue { $0 } }

    /// Waits until `count` requests have been accepted, at most `timeout`; whether they were.
    public func waitForAccepted(_ count: Int, timeout: Duration = .seconds(60)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while received.withLockedValue({ $0.count }) < count {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    public func start() async throws -> Int {
        let http = LocalHTTPServer { [self] request in LocalHTTPServer.Answer(status: answer(request)) }
        server.withLockedValue { $0 = http }
        return try await http.start()
    }

    public func stop() async {
        await server.withLockedValue { $0 }?.stop()
    }

    private func answer(_ request: Request) -> Int {
        all.withLockedValue { $0 += 1 }
        let status = statuses.withLockedValue { $0.isEmpty ? 200 : $0.removeFirst() }
        if (200..<300).contains(status) { received.withLockedValue { $0.append(request) } }
        return status
    }
}
