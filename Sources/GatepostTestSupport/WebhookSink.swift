import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A local HTTP receiver for webhooks on 127.0.0.1: it keeps every request (headers and body)
/// and answers each with the next status of `statuses` (then 200), so that a test can make the
/// receiver fail before it accepts.
public final class WebhookSink: Sendable {
    public struct Request: Sendable {
        public var path: String
        public var headers: [String: String]
        public var body: Data
    }

    private let statuses: NIOLockedValueBox<[Int]>
    private let received = NIOLockedValueBox<[Request]>([])
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)

    public init(statuses: [Int] = []) {
        self.statuses = NIOLockedValueBox(statuses)
    }

    /// The requests answered with 2xx so far, in order.
    public var accepted: [Request] { received.withLockedValue { $0 } }

    /// Every request received, whatever it was answered.
    private let all = NIOLockedValueBox(0)
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
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(SinkHandler(sink: self))
                }
            }
        let server = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        channel.withLockedValue { $0 = server }
        guard let port = server.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return port
    }

    public func stop() async {
        let server = channel.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await server?.close()
    }

    fileprivate func answer(_ request: Request) -> Int {
        all.withLockedValue { $0 += 1 }
        let status = statuses.withLockedValue { $0.isEmpty ? 200 : $0.removeFirst() }
        guard (200..<300).contains(status) else { return status }
        received.withLockedValue { $0.append(request) }
        return status
    }
}

private final class SinkHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let sink: WebhookSink
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(sink: WebhookSink) {
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            var headers: [String: String] = [:]
            for (name, value) in head?.headers ?? [:] { headers[name.lowercased()] = value }
            let status = sink.answer(.init(path: head?.uri ?? "", headers: headers, body: Data(body.readableBytesView)))
            var response = HTTPHeaders()
            response.add(name: "Content-Length", value: "0")
            response.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: response))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
