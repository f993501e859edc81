import GatepostWire
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How to reach a POP3 server.
public struct POP3ConnectionConfiguration: Sendable {
    public enum Security: String, Sendable, Hashable, CaseIterable {
        /// TLS from the first byte (pop3s, port 995).
        case tls
        /// Plain connection upgraded with STLS (RFC 2595) before authentication; refused if the
        /// server does not offer STLS.
        case starttls
        /// No encryption at all.
        case none
    }

    public var host: String
    public var port: Int
    public var security: Security
    /// Certificate trust and client identity; verification is full (chain and host name) unless
    /// the site turned it off explicitly.
    public var tls: TLSConfiguration
    public var connectTimeout: TimeAmount
    /// How long the server may stay silent while we wait for an answer.
    public var readTimeout: TimeAmount

    public init(
        host: String,
        port: Int,
        security: Security,
        tls: TLSConfiguration = .makeClientConfiguration(),
        connectTimeout: TimeAmount = .seconds(15),
        readTimeout: TimeAmount = .seconds(60)
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
    }

    /// The name to send in SNI and check in the certificate; nil for an IP literal (NIOSSL then
    /// checks the certificate against the connected address).
    var tlsServerName: String? {
        let isIPv4 = host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
        return isIPv4 || host.contains(":") ? nil : host
    }
}

enum POP3Transport {
    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func connect(
        _ configuration: POP3ConnectionConfiguration,
        group: any EventLoopGroup,
        readTimeout: ServerSilenceTimeout
    ) async throws(POP3Error) -> Connection {
        let sslContext: NIOSSLContext?
        do {
            sslContext = configuration.security == .none ? nil : try NIOSSLContext(configuration: Self.tls(configuration))
        } catch {
            throw POP3Error.tlsFailed("cannot set up TLS: \(error)")
        }
        let implicitTLS = configuration.security == .tls
        let serverName = configuration.tlsServerName
        do {
            return try await ClientBootstrap(group: group)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if implicitTLS, let sslContext {
                            try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                        }
                        try pipeline.addHandler(readTimeout)
                        return try Connection(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))
                        )
                    }
                }
        } catch {
            throw POP3Error.connectionFailed(host: configuration.host, port: configuration.port, reason: Self.describe(error))
        }
    }

    /// Puts TLS in front of everything else after STLS was accepted.
    static func upgradeToTLS(_ channel: any Channel, configuration: POP3ConnectionConfiguration) async throws(POP3Error) {
        do {
            let context = try NIOSSLContext(configuration: Self.tls(configuration))
            let serverName = configuration.tlsServerName
            try await channel.eventLoop.submit {
                let handler = try NIOSSLClientHandler(context: context, serverHostname: serverName)
                try channel.pipeline.syncOperations.addHandler(handler, position: .first)
            }.get()
        } catch {
            throw POP3Error.tlsFailed("cannot start TLS: \(error)")
        }
    }

    /// The site's TLS settings, with a short close_notify wait: a connection we abandon (a poll
    /// cancelled at shutdown) must not linger while the server is still streaming to us.
    static func tls(_ configuration: POP3ConnectionConfiguration) -> TLSConfiguration {
        var tls = configuration.tls
        tls.shutdownTimeout = min(tls.shutdownTimeout, .milliseconds(500))
        return tls
    }

    /// A short, operator-readable reason for a connection failure.
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first {
                return describe(first.error)
            }
            if error.dnsAError != nil || error.dnsAAAAError != nil {
                return "cannot resolve the host name"
            }
            return "no address to connect to"
        }
        if let error = error as? IOError {
            return String(cString: strerror(error.errnoCode)).lowercased()
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return "connection timed out"
        }
        return "\(error)"
    }

    /// A short reason for a TLS failure; the library's text names source files and codes.
    static func describeTLS(_ error: any Error) -> String {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "the server certificate is not valid for this host name"
        }
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the server certificate could not be verified (untrusted issuer, expired, or not for this host)"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") {
            return "the server did not answer with TLS (is the port a plain POP3 port? try security: starttls)"
        }
        if case .handshakeFailed(let inner)? = error as? NIOSSLError {
            return "handshake failed: \(inner)"
        }
        return text
    }
}
