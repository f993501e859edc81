import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
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
    private let server = NIOLockedValueBox<LocalHTTPServer?>(nil)
    private let issued = NIOLockedValueBox(0)
    /// With a context the endpoint speaks https only.
    private let tls: NIOSSLContext?

    public init(clientID: String = "gatepost", clientSecret: String = "client-secret", behavior: Behavior = .issueTokens, tls: NIOSSLContext? = nil) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.behavior = behavior
        self.tls = tls
    }

    /// How many tokens were handed out.
    public var tokensIssued: Int { issued.withLockedValue { $0 } }

    /// How many connections were accepted.
    public var connectionsAccepted: Int { server.withLockedValue { $0?.connectionsAccepted ?? 0 } }

    /// Returns once every connection accepted so far is closed (by either side).
    public func connectionsClosed() async {
        await server.withLockedValue { $0 }?.connectionsClosed()
    }

    /// The token the n-th request (from 1) receives.
    public static func token(_ n: Int) -> String { "token-\(n)" }

    public func start() async throws -> Int {
        let http = LocalHTTPServer(tls: tls) { [self] request in
            guard behavior == .issueTokens else { return nil }
            let (status, json) = answer(authorization: request.headers["authorization"], form: String(decoding: request.body, as: UTF8.self))
            return LocalHTTPServer.Answer(status: Int(status.code), contentType: "application/json", body: json)
        }
        server.withLockedValue { $0 = http }
        return try await http.start()
    }

    public func stop() async {
        await server.withLockedValue { $0 }?.stop()
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
