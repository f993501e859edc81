import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A local OAuth2 token endpoint (client credentials, RFC 6749 section 4.4) on 127.0.0.1 for
/// tests: it checks the client's Basic credentials and issues numbered tokens.
public final class TokenEndpoint: Sendable {
    public let clientID: String
    public let clientSecret: String
    private let issued = NIOLockedValueBox(0)
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)

    public init(clientID: String = "gatepost", clientSecret: String = "client-secret") {
        self.clientID = clientID
        self.clientSecret = clientSecret
    }

    /// How many tokens were handed out.
    public var tokensIssued: Int { issued.withLockedValue { $0 } }

    /// The token the n-th request (from 1) receives.
    public static func token(_ n: Int) -> String { "token-\(n)" }

    public func start() async throws -> Int {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(TokenHandler(endpoint: self))
                    }
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
}
