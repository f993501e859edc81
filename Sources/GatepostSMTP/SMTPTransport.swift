import GatepostWire
import NIOCore
import NIOPosix
import NIOSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How to reach an SMTP server and what the session may do there.
public struct SMTPConnectionConfiguration: Sendable {
    public typealias Security = ConnectionSecurity

    public var host: String
    public var port: Int
    public var security: Security
    /// Certificate trust (e.g. `trustRoots = .file(caFile)`) and client identity; verification is
    /// full (chain and host name) unless the configuration turned it off explicitly.
    public var tls: TLSConfiguration
    public var connectTimeout: TimeAmount
    /// How long the server may stay silent while a reply is due, and how long a write may stall
    /// (RFC 5321 section 4.5.3.2 suggests 5 minutes for most commands).
    public var readTimeout: TimeAmount
    /// How long the server may take to answer the end of the data: it may scan the message
    /// first (RFC 5321 section 4.5.3.2.6 suggests 10 minutes).
    public var finalReplyTimeout: TimeAmount
    /// The name for EHLO; nil: this host's name if it is fully qualified, otherwise the address
    /// literal of the connection's local address.
    public var clientName: String?
    /// AUTH over a connection without TLS. Off unless a configuration says so: the password (or
    /// token) would cross the network readable by anyone on the path.
    public var allowInsecureAuth: Bool
    /// The SASL mechanism to use; nil chooses from what the server offers.
    public var authMechanism: SASLMechanism?
    /// Reply parser limits.
    public var limits: SMTPReplyParser.Limits

    public init(
        host: String,
        port: Int,
        security: Security,
        tls: TLSConfiguration = .makeClientConfiguration(),
        connectTimeout: TimeAmount = .seconds(15),
        readTimeout: TimeAmount = .seconds(300),
        finalReplyTimeout: TimeAmount = .seconds(600),
        clientName: String? = nil,
        allowInsecureAuth: Bool = false,
        authMechanism: SASLMechanism? = nil,
        limits: SMTPReplyParser.Limits = .init()
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.finalReplyTimeout = finalReplyTimeout
        self.clientName = clientName
        self.allowInsecureAuth = allowInsecureAuth
        self.authMechanism = authMechanism
        self.limits = limits
    }

    /// The name to send in SNI and check in the certificate (nil for an IP literal).
    var tlsServerName: String? { Wire.tlsServerName(forHost: host) }
}

enum SMTPTransport {
    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func connect(
        _ configuration: SMTPConnectionConfiguration,
        group: any EventLoopGroup,
        timeout: ServerSilenceTimeout
    ) async throws(SMTPError) -> Connection {
        let sslContext: NIOSSLContext?
        do {
            sslContext = configuration.security == .tls ? try NIOSSLContext(configuration: Self.tls(configuration)) : nil
        } catch {
            throw SMTPError.tlsFailed("cannot set up TLS: \(error)")
        }
        let serverName = configuration.tlsServerName
        do {
            return try await ClientBootstrap(group: group)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if let sslContext {
                            try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                        }
                        try pipeline.addHandler(timeout)
                        return try Connection(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(backPressureStrategy: .init(lowWatermark: 4, highWatermark: 32))
                        )
                    }
                }
        } catch {
            throw SMTPError.connectionFailed(host: configuration.host, port: configuration.port, reason: Self.describe(error))
        }
    }

    /// Puts TLS in front of everything else after STARTTLS was accepted.
    /// Returns the bytes the connection delivered in clear (``Wire/startTLS(on:context:serverName:silence:)``).
    static func upgradeToTLS(
        _ channel: any Channel, configuration: SMTPConnectionConfiguration, silence: ServerSilenceTimeout
    ) async throws(SMTPError) -> Int {
        do {
            let context = try NIOSSLContext(configuration: Self.tls(configuration))
            return try await Wire.startTLS(on: channel, context: context, serverName: configuration.tlsServerName, silence: silence)
        } catch {
            throw SMTPError.tlsFailed("cannot start TLS: \(error)")
        }
    }

    static func tls(_ configuration: SMTPConnectionConfiguration) -> TLSConfiguration {
        Wire.clientTLS(configuration.tls)
    }

    /// The EHLO name when none is configured (RFC 5321 section 4.1.4): the host name if it is
    /// fully qualified, else the address literal of our end of the connection.
    static func defaultClientName(localAddress: SocketAddress?) -> String {
        var name = [CChar](repeating: 0, count: 256)
        if gethostname(&name, name.count) == 0 {
            let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if host.contains("."), !host.hasSuffix("."), host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) {
                return host
            }
        }
        switch localAddress {
        case .v4?:
            if let ip = localAddress?.ipAddress { return "[\(ip)]" }
        case .v6?:
            if let ip = localAddress?.ipAddress { return "[IPv6:\(ip)]" }
        default:
            break
        }
        return "[127.0.0.1]"
    }

    static func describe(_ error: any Error) -> String {
        Wire.describeConnectionFailure(error)
    }

    static func describeTLS(_ error: any Error) -> String {
        Wire.describeTLSFailure(error, notTLSHint: "is the port a plain SMTP port? try security: starttls")
    }
}
