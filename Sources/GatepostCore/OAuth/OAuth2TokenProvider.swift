import AsyncHTTPClient
import Foundation
import GatepostWire
import NIOCore
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

    /// One line, whatever a server or a library put into `description`: it ends up in a poll's
    /// log line and in `gatepost site test`.
    init(_ description: String) {
        self.description = description.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// Fetches client-credentials tokens (RFC 6749 section 4.4) and keeps each until shortly before
/// it expires, so a site polled every minute asks its token endpoint about once an hour.
public actor OAuth2TokenProvider {
    /// The process's provider. Its HTTP client lives as long as the process, so it is never shut
    /// down (the event loops it runs on are the process-wide singleton too).
    public static let shared = OAuth2TokenProvider()

    /// How long a token endpoint may take. A poll waits for its token, so an endpoint that
    /// accepts the connection and never answers must not hold the site's poll for longer.
    public struct Timeouts: Sendable {
        public var connect: Duration
        /// Without a byte from the endpoint after the request was sent.
        public var read: Duration
        /// The whole exchange, including a slowly trickling answer.
        public var total: Duration

        public init(connect: Duration = .seconds(10), read: Duration = .seconds(30), total: Duration = .seconds(45)) {
            self.connect = connect
            self.read = read
            self.total = total
        }
    }

    private struct Cached {
        var token: String
        var expires: Date
    }

    private var cache: [OAuth2Settings: Cached] = [:]
    /// A token this close to expiry is replaced before use.
    private let margin: TimeInterval = 60
    private let timeouts: Timeouts
    /// One client for every site: each request carries its site's TLS configuration, and the
    /// client pools connections per endpoint and TLS configuration.
    private let client: HTTPClient

    public init(timeouts: Timeouts = Timeouts()) {
        self.timeouts = timeouts
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: TimeAmount(timeouts.connect), read: TimeAmount(timeouts.read))
        // A redirect would carry the client secret to wherever the endpoint points.
        configuration.redirectConfiguration = .disallow
        // Retrying a refused connection or an untrusted certificate until the deadline would
        // only hide the reason behind a timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(configuration: configuration)
    }

    /// Closes the provider's connections; only for providers made with `init`, not ``shared``.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    public func token(for settings: OAuth2Settings) async throws -> String {
        if let cached = cache[settings], cached.expires.timeIntervalSinceNow > margin {
            return cached.token
        }
        let fetched = try await Self.fetch(settings, client: client, timeouts: timeouts)
        cache[settings] = fetched
        return fetched.token
    }

    /// Forgets a token the server refused, so the next attempt gets a fresh one.
    public func invalidate(_ settings: OAuth2Settings) {
        cache[settings] = nil
    }

    /// A token answer is small; anything this large is not one.
    static let maximumAnswerSize = 1 << 20

    private static func fetch(_ settings: OAuth2Settings, client: HTTPClient, timeouts: Timeouts) async throws -> Cached {
        let url = settings.tokenURL
        guard let scheme = URL(string: url)?.scheme?.lowercased(), scheme == "https" || scheme == "http" else {
            throw OAuth2Error("token_url `\(url)` is not an https URL")
        }
        guard scheme == "https" || settings.allowInsecureTokenURL else {
            throw OAuth2Error("refusing to send the client secret in clear text to \(url); use an https token_url, or set oauth2.allow_insecure_token_url: true")
        }
        var form = "grant_type=client_credentials"
        if let scope = settings.scope { form += "&scope=" + formEncode(scope) }
        let clientSecret: String
        do {
            clientSecret = try settings.clientSecret.resolve()
        } catch {
            throw OAuth2Error("no client secret: \(error)")
        }
        let credentials = Data("\(formEncode(settings.clientID)):\(formEncode(clientSecret))".utf8).base64EncodedString()
        var post = HTTPClientRequest(url: url)
        post.method = .POST
        post.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        post.headers.add(name: "Authorization", value: "Basic \(credentials)")
        post.headers.add(name: "Accept", value: "application/json")
        post.body = .bytes(ByteBuffer(string: form))
        if scheme == "https" {
            post.tlsConfiguration = try tlsConfiguration(settings.tls)
        }
        let request = post

        let (status, body): (Int, ByteBuffer)
        do {
            (status, body) = try await within(timeouts.total) {
                let response = try await client.execute(request, deadline: .now() + TimeAmount(timeouts.total))
                return (Int(response.status.code), try await response.body.collect(upTo: maximumAnswerSize))
            }
        } catch {
            let withoutCertificate = scheme == "https" && settings.tls.clientCertificate == nil
            throw describe(error, url: url, timeouts: timeouts, presentedNoCertificate: withoutCertificate)
        }
        let bytes = Data(body.readableBytesView)
        let json = (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any]
        guard status == 200, let token = json?["access_token"] as? String, !token.isEmpty else {
            let reason = (json?["error_description"] as? String) ?? (json?["error"] as? String) ?? String(decoding: bytes.prefix(200), as: UTF8.self)
            throw OAuth2Error("the token endpoint \(url) answered \(status): \(reason) (check client_id, client_secret and scope)")
        }
        let lifetime = (json?["expires_in"] as? Double) ?? (json?["expires_in"] as? Int).map(Double.init) ?? 3600
        return Cached(token: token, expires: Date().addingTimeInterval(lifetime))
    }

    /// The site's client certificate, and its `ca_file` trusted besides the system's roots: the
    /// mail server may have a private CA while the identity provider has a public certificate
    /// (the usual case for XOAUTH2), or both the private one.
    static func tlsConfiguration(_ settings: RemoteSite.TLS) throws(OAuth2Error) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let caFile = settings.caFile {
            tls.additionalTrustRoots = [.file(caFile)]
        }
        if !settings.verify {
            tls.certificateVerification = .none
        }
        if let certificate = settings.clientCertificate, let key = settings.clientKey {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw OAuth2Error("cannot load the client certificate \(certificate) or key \(key) for the token endpoint: \(error)")
            }
        }
        return tls
    }

    /// Runs `body`, cancelled once `limit` has passed. The client's own deadline covers only
    /// the answer's head; this one covers its body too.
    private static func within<Result: Sendable>(
        _ limit: Duration, _ body: @escaping @Sendable () async throws -> Result
    ) async throws -> Result {
        try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else {
                throw HTTPClientError.deadlineExceeded
            }
            return result
        }
    }

    /// What went wrong, in one line that says what to check. `presentedNoCertificate`: TLS
    /// without a client certificate of ours. In TLS 1.3 an endpoint that requires one refuses
    /// after the handshake, and its alert can be lost when it closes the connection while our
    /// request is still unread (a reset): a connection reset or closed without an answer then
    /// says to check the client certificate too.
    static func describe(_ error: any Error, url: String, timeouts: Timeouts, presentedNoCertificate: Bool = false) -> OAuth2Error {
        let described = cause(error, url: url, timeouts: timeouts)
        guard presentedNoCertificate, !described.description.contains("tls.client_certificate") else { return described }
        let closed = (error as? HTTPClientError) == .remoteConnectionClosed || (error as? IOError)?.errnoCode == ECONNRESET
        guard closed else { return described }
        return OAuth2Error(described.description + " (if it requires a client certificate: the site's tls.client_certificate and tls.client_key)")
    }

    /// The cause of `error` in words, whatever was presented.
    private static func cause(_ error: any Error, url: String, timeouts: Timeouts) -> OAuth2Error {
        if let error = error as? OAuth2Error { return error }
        if error is CancellationError {
            return OAuth2Error("the token request to \(url) was cancelled")
        }
        switch error as? HTTPClientError {
        case .readTimeout?:
            return OAuth2Error("the token endpoint \(url) did not answer within \(seconds(timeouts.read))")
        case .deadlineExceeded?:
            return OAuth2Error("the token endpoint \(url) did not answer within \(seconds(timeouts.total))")
        case .connectTimeout?, .tlsHandshakeTimeout?:
            return OAuth2Error("cannot reach the token endpoint \(url): no connection within \(seconds(timeouts.connect)) (check token_url and the network path to it)")
        case .remoteConnectionClosed?:
            return OAuth2Error("the token endpoint \(url) closed the connection without an answer")
        case .cancelled?:
            return OAuth2Error("the token request to \(url) was cancelled")
        default:
            break
        }
        if error is NIOTooManyBytesError {
            return OAuth2Error("the token endpoint \(url) sent more than \(maximumAnswerSize >> 20) MiB")
        }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            // An alert from the endpoint about our certificate: the client side is wrong, not the trust.
            let text = "\(error)"
            if ["CERTIFICATE_REQUIRED", "ALERT_BAD_CERTIFICATE", "ALERT_UNKNOWN_CA", "ALERT_CERTIFICATE_UNKNOWN"].contains(where: text.contains) {
                return OAuth2Error("TLS with the token endpoint \(url) failed: it wants a client certificate it trusts (check the site's tls.client_certificate and tls.client_key)")
            }
            return OAuth2Error("TLS with the token endpoint \(url) failed: \(Wire.describeTLSFailure(error, notTLSHint: "is it an http:// endpoint?")) (check token_url and the site's tls.ca_file)")
        }
        if let error = error as? IOError {
            return OAuth2Error("cannot reach the token endpoint \(url): \(String(cString: strerror(error.errnoCode))) (check token_url and the network path to it)")
        }
        if error is NIOConnectionError {
            return OAuth2Error("cannot reach the token endpoint \(url): \(Wire.describeConnectionFailure(error))")
        }
        return OAuth2Error("cannot reach the token endpoint \(url): \(error)")
    }

    /// `30 s`, or `1500 ms` for what is not whole seconds.
    static func seconds(_ duration: Duration) -> String {
        let (whole, attoseconds) = duration.components
        guard attoseconds != 0 else { return "\(whole) s" }
        return "\(whole * 1000 + attoseconds / 1_000_000_000_000_000) ms"
    }

    static func formEncode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}
