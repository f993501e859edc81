import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// OAuth2 client-credentials settings of a site (`pop3.oauth2`, or a BTP destination's
/// `tokenServiceURL`, `clientId`, `clientSecret`).
public struct OAuth2Settings: Sendable, Hashable {
    public var tokenURL: String
    public var clientID: String
    public var clientSecret: Secret
    public var scope: String?
    /// The TLS settings of the connection these credentials are for (`pop3.tls` or `smtp.tls`):
    /// the token endpoint is trusted and authenticated the same way as the mail server.
    public var tls = RemoteSite.TLS(caFile: nil, clientCertificate: nil, clientKey: nil, verify: true)
    /// An `http://` token URL sends the client secret in clear text: only with this opt-in
    /// (`allow_insecure_token_url: true`).
    public var allowInsecureTokenURL = false
}

/// A token endpoint that did not give a token, phrased for the operator.
public struct OAuth2Error: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Fetches client-credentials tokens (RFC 6749 section 4.4) and keeps each until shortly before
/// it expires, so a site polled every minute asks its token endpoint about once an hour.
public actor OAuth2TokenProvider {
    public static let shared = OAuth2TokenProvider()

    private struct Cached {
        var token: String
        var expires: Date
    }

    private var cache: [OAuth2Settings: Cached] = [:]
    /// A token this close to expiry is replaced before use.
    private let margin: TimeInterval = 60

    public init() {}

    public func token(for settings: OAuth2Settings) async throws -> String {
        if let cached = cache[settings], cached.expires.timeIntervalSinceNow > margin {
            return cached.token
        }
        let fetched = try await Self.fetch(settings)
        cache[settings] = fetched
        return fetched.token
    }

    /// Forgets a token the server refused, so the next attempt gets a fresh one.
    public func invalidate(_ settings: OAuth2Settings) {
        cache[settings] = nil
    }

    private static func fetch(_ settings: OAuth2Settings) async throws -> Cached {
        var form = "grant_type=client_credentials"
        if let scope = settings.scope { form += "&scope=" + formEncode(scope) }
        let credentials = Data("\(formEncode(settings.clientID)):\(formEncode(settings.clientSecret.value))".utf8).base64EncodedString()
        let (status, body) = try await HTTPPost.send(settings.tokenURL, form: form, authorization: "Basic \(credentials)")
        let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        guard status == 200, let token = json?["access_token"] as? String, !token.isEmpty else {
            let reason = (json?["error_description"] as? String) ?? (json?["error"] as? String) ?? String(decoding: body.prefix(200), as: UTF8.self)
            throw OAuth2Error(description: "the token endpoint \(settings.tokenURL) answered \(status): \(reason) (check client_id, client_secret and scope)")
        }
        let lifetime = (json?["expires_in"] as? Double) ?? (json?["expires_in"] as? Int).map(Double.init) ?? 3600
        return Cached(token: token, expires: Date().addingTimeInterval(lifetime))
    }

    static func formEncode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// One HTTP/1.1 POST with a form body, over NIO (TLS for https), answer read to the end.
enum HTTPPost {
    static func send(_ urlString: String, form: String, authorization: String) async throws -> (Int, [UInt8]) {
        guard let url = URL(string: urlString), let scheme = url.scheme?.lowercased(), let host = url.host,
              scheme == "https" || scheme == "http" else {
            throw OAuth2Error(description: "token_url `\(urlString)` is not an http(s) URL")
        }
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        var path = url.path.isEmpty ? "/" : url.path
        if let query = url.query { path += "?" + query }
        let tls: NIOSSLContext? = scheme == "https" ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        let serverName = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(15))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw OAuth2Error(description: "cannot reach the token endpoint \(urlString): \(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
            head.headers.add(name: "Host", value: url.port.map { "\(host):\($0)" } ?? host)
            head.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            head.headers.add(name: "Content-Length", value: String(form.utf8.count))
            head.headers.add(name: "Authorization", value: authorization)
            head.headers.add(name: "Accept", value: "application/json")
            head.headers.add(name: "Connection", value: "close")
            try await outbound.write(.head(head))
            try await outbound.write(.body(.byteBuffer(ByteBuffer(string: form))))
            try await outbound.write(.end(nil))
            var status = 0
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let response):
                    status = Int(response.status.code)
                case .body(let chunk):
                    // A token answer is small; anything this large is not one.
                    guard body.count + chunk.readableBytes <= 1 << 20 else {
                        throw OAuth2Error(description: "the token endpoint \(urlString) sent more than 1 MiB")
                    }
                    body += chunk.readableBytesView
                case .end:
                    return (status, body)
                }
            }
            return (status, body)
        }
    }
}
