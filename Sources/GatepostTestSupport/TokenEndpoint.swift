import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A local OAuth2 token endpoint (client credentials, RFC 6749 section 4.4) on 127.0.0.1 for
/// tests: it checks the client's Basic credentials and issues numbered tokens.
public final class TokenEndpoint: Sendable {
    public enum Behavior: Sendable {
        case issueTokens
        /// Accepts the connection and reads the request, then says nothing: a hung endpoint.
        case neverAnswer
    }

    public let clientID: String
    public let clientSecret: String
    public let behavior: Behavior
    /// With a context the endpoint speaks https only.
    private let tls: NIOSSLContext?
    private let issued = NIOLockedValueBox(0)
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)
    /// Every connection accepted, so that a test can wait for the client to let go of them and
    /// `stop()` can close what the client did not.
    private let connections = NIOLockedValueBox<[any Channel]>([])

    public init(clientID: String = "gatepost", clientSecret: String = "client-secret", behavior: Behavior = .issueTokens, tls: NIOSSLContext? = nil) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.behavior = behavior
        self.tls = tls
    }

    /// How many tokens were handed out.
    public var tokensIssued: Int { issued.withLockedValue { $0 } }

    /// How many connections were accepted.
    public var connectionsAccepted: Int { connections.withLockedValue { $0.count } }

    /// Returns once every connection accepted so far is closed (by either side).
    public func connectionsClosed() async {
        for connection in connections.withLockedValue({ $0 }) {
            try? await connection.closeFuture.get()
        }
    }

    /// The token the n-th request (from 1) receives.
    public static func token(_ n: Int) -> String { "token-\(n)" }

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
                    try channel.pipeline.syncOperations.addHandler(TokenHandler(endpoint: self))
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
        for connection in connections.withLockedValue({ $0 }) {
            try? await connection.close()
        }
    }

    fileprivate func answer(authorization: String?, form: String) -> (HTTPResponseStatus, String) {
        let expected = "Basic " + Data("\(clientID):\(clientSecret)".utf8).base64EncodedString()
        guard authorization == expected else {
            return (.unauthorized, #"{"error":"invalid_client","error_description":"unknown client or wrong secret"}"#)
        }
        guard form.split(separator: "&").contains("grant_type=client_credentials") else {
            return (.badRequest, #"{"error":"unsupported_grant_type"}"#)
        }
        let n = issued.withLockedValue { value in
            value += 1
            return value
        }
        return (.ok, #"{"access_token":"\#(Self.token(n))","token_type":"Bearer","expires_in":3600}"#)
    }
}

private final class TokenHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoint: TokenEndpoint
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(endpoint: TokenEndpoint) {
        self.endpoint = endpoint
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard endpoint.behavior == .issueTokens else { return }
            let (status, json) = endpoint.answer(authorization: head?.headers.first(name: "Authorization"), form: String(buffer: body))
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(json.utf8.count))
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: json)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// A client that refuses the certificate, or gives up, ends the connection here.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
