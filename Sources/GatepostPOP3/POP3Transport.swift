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
    public typealias Security = ConnectionSecurity

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

    /// The name to send in SNI and check in the certificate (nil for an IP literal).
    var tlsServerName: String? { Wire.tlsServerName(forHost: host) }
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
    /// Returns the bytes the connection delivered in clear (``Wire/startTLS(on:context:serverName:silence:)``).
    static func upgradeToTLS(
        _ channel: any Channel, configuration: POP3ConnectionConfiguration, silence: ServerSilenceTimeout
    ) async throws(POP3Error) -> Int {
        do {
            let context = try NIOSSLContext(configuration: Self.tls(configuration))
            return try await Wire.startTLS(on: channel, context: context, serverName: configuration.tlsServerName, silence: silence)
        } catch {
            throw POP3Error.tlsFailed("cannot start TLS: \(error)")
        }
    }

    static func tls(_ configuration: POP3ConnectionConfiguration) -> TLSConfiguration {
        Wire.clientTLS(configuration.tls)
    }

    static func describe(_ error: any Error) -> String {
        Wire.describeConnectionFailure(error)
    }

    static func describeTLS(_ error: any Error) -> String {
        Wire.describeTLSFailure(error, notTLSHint: "is the port a plain POP3 port? try security: starttls")
    }
}
