import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// An HTTP/1.1 server on 127.0.0.1 for tests, answering each whole request with what `answer`
/// returns (nil: it reads the request and says nothing, a hung server); over TLS when given a
/// context. Each answer closes its connection. The peers that speak HTTP (a token endpoint, a
/// webhook receiver) are this plus their own rules.
public final class LocalHTTPServer: Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        /// Names in lower case.
        public var headers: [String: String]
        public var body: Data
    }

    public struct Answer: Sendable {
        public var status: Int
        public var contentType: String?
        public var body: String

        public init(status: Int, contentType: String? = nil, body: String = "") {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    let answer: @Sendable (Request) -> Answer?
    private let tls: NIOSSLContext?
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)
    private let connections = NIOLockedValueBox<[any Channel]>([])

    public init(tls: NIOSSLContext? = nil, answer: @escaping @Sendable (Request) -> Answer?) {
        self.tls = tls
        self.answer = answer
    }

    /// How many connections were accepted.
    public var connectionsAccepted: Int { connections.withLockedValue { $0.count } }

    /// Returns once every connection accepted so far is closed (by either side).
    public func connectionsClosed() async {
        for connection in connections.withLockedValue({ $0 }) {
            try? await connection.closeFuture.get()
        }
    }

    /// Listens on a free port of 127.0.0.1 and returns it.
    public func start() async throws -> Int {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                connections.withLockedValue { $0.append(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(answer: answer))
                }
            }
        let server = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        channel.withLockedValue { $0 = server }
        guard let port = server.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return port
    }

    /// Stops listening and closes what the clients left open.
    public func stop() async {
        let server = channel.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await server?.close()
        for connection in connections.withLockedValue({ $0 }) {
            try? await connection.close()
        }
    }
}

private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let answer: @Sendable (LocalHTTPServer.Request) -> LocalHTTPServer.Answer?
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(answer: @escaping @Sendable (LocalHTTPServer.Request) -> LocalHTTPServer.Answer?) {
        self.answer = answer
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
            let request = LocalHTTPServer.Request(
                method: head?.method.rawValue ?? "", path: head?.uri ?? "", headers: headers, body: Data(body.readableBytesView)
            )
            guard let answer = answer(request) else { return }
            var response = HTTPHeaders()
            if let contentType = answer.contentType { response.add(name: "Content-Type", value: contentType) }
            response.add(name: "Content-Length", value: String(answer.body.utf8.count))
            response.add(name: "Connection", value: "close")
            let status = HTTPResponseStatus(statusCode: answer.status)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: response))), promise: nil)
            if !answer.body.isEmpty {
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// A client that refuses the certificate, or gives up, ends the connection here.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
