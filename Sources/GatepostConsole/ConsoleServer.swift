import Foundation
import GatepostCore
import Hummingbird
import HummingbirdAuth
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import ServiceLifecycle

/// The console's HTTP server: the REST API under `/api/v1`, the pages, `/metrics`.
public enum ConsoleServer {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// PEM certificate chain and key; both or neither.
        public var certificate: String?
        public var key: String?
        public var sessionLifetime: Duration

        public init(host: String = "127.0.0.1", port: Int = 8480, certificate: String? = nil, key: String? = nil, sessionLifetime: Duration = .seconds(12 * 3600)) {
            self.host = host
            self.port = port
            self.certificate = certificate
            self.key = key
            self.sessionLifetime = sessionLifetime
        }

        public var usesTLS: Bool { certificate != nil }
    }

    public struct ExposureError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The routes, for the server and for tests (Hummingbird's test client).
    public static func router(
        _ environment: ConsoleEnvironment, sessions: any PersistDriver, configuration: Configuration = Configuration()
    ) -> Hummingbird.Router<ConsoleRequestContext> {
        let router = Hummingbird.Router(context: ConsoleRequestContext.self)
        let authenticator = environment.accounts.flatMap { $0.isEmpty ? nil : ConsoleAuthenticator(accounts: $0) }
        router.add(middleware: SessionMiddleware(storage: sessions, configuration: SessionMiddlewareConfiguration(
            sessionCookieParameters: SessionCookieParameters(name: "gatepost_session", path: "/", secure: configuration.usesTLS, sameSite: .strict),
            defaultSessionExpiration: configuration.sessionLifetime
        )))
        router.add(middleware: ConsoleAccessMiddleware(authenticator: authenticator, sessionLifetime: configuration.sessionLifetime))
        let api = ConsoleAPI(environment: environment)
        api.register(on: router)
        ConsolePages(api: api, authenticator: authenticator, sessionLifetime: configuration.sessionLifetime).register(on: router)
        return router
    }

    /// The daemon's control socket: the REST API (no pages) on a Unix socket in the spool, for
    /// the command line (`gatepost poll` while the daemon runs, `gatepost status`). The socket
    /// is the owner's only (the process's umask), like the spool it lives in.
    public static func controlService(_ environment: ConsoleEnvironment, socket path: String) throws -> any Service {
        guard path.utf8.count < 100 else {
            throw ExposureError(description: "the control socket's path is too long for a Unix socket (\(path.utf8.count) bytes): use a shorter --spool")
        }
        unlink(path)  // left by a daemon that died; the spool's lock says none runs now
        let router = controlRouter(environment)
        var logger = environment.logger
        logger[metadataKey: "component"] = "control"
        return Application(router: router, configuration: .init(address: .unixDomainSocket(path: path), serverName: "Gatepost"), logger: logger)
    }

    /// The control socket's routes, for the service and for tests.
    public static func controlRouter(_ environment: ConsoleEnvironment) -> Hummingbird.Router<ConsoleRequestContext> {
        let router = Hummingbird.Router(context: ConsoleRequestContext.self)
        router.add(middleware: ConsoleAccessMiddleware(authenticator: nil, sessionLifetime: .seconds(60), controlSocket: true))
        ConsoleAPI(environment: environment).register(on: router)
        return router
    }

    /// The console as a service of the process's service group.
    public static func service(_ environment: ConsoleEnvironment, configuration: Configuration) throws -> any Service {
        try application(environment, configuration: configuration)
    }

    /// The application to run (as a service of the daemon, or alone for `gatepost serve`).
    /// Refuses an address beyond the local machine without TLS and accounts.
    public static func application(_ environment: ConsoleEnvironment, configuration: Configuration) throws -> some ApplicationProtocol {
        if let problem = ConsolePolicy.exposureProblem(host: configuration.host, tls: configuration.usesTLS, accounts: environment.accounts) {
            throw ExposureError(description: problem)
        }
        let sessions = MemoryPersistDriver()
        let router = router(environment, sessions: sessions, configuration: configuration)
        var logger = environment.logger
        logger[metadataKey: "component"] = "console"
        let server: HTTPServerBuilder
        if let certificate = configuration.certificate, let key = configuration.key {
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            )
            tls.minimumTLSVersion = .tlsv12
            server = try .tls(.http1(), tlsConfiguration: tls)
        } else {
            server = .http1()
        }
        var application = Application(
            router: router, server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "Gatepost"),
            logger: logger
        )
        application.addServices(sessions)
        return application
    }
}
