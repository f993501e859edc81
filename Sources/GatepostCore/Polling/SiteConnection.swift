import GatepostPOP3
import NIOCore
import NIOSSL

extension RemoteSite {
    /// The POP3 connection settings, with certificate verification on unless the site turned it off.
    public func pop3Configuration() throws(POP3Error) -> POP3ConnectionConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let caFile = pop3.tls.caFile {
            tls.trustRoots = .file(caFile)
        }
        if !pop3.tls.verify {
            tls.certificateVerification = .none
        }
        if let certificate = pop3.tls.clientCertificate, let key = pop3.tls.clientKey {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw POP3Error.tlsFailed("cannot load the client certificate \(certificate) or key \(key): \(error)")
            }
        }
        return POP3ConnectionConfiguration(
            host: pop3.host,
            port: pop3.port,
            security: pop3.security,
            tls: tls,
            connectTimeout: TimeAmount(pop3.connectTimeout),
            readTimeout: TimeAmount(pop3.readTimeout)
        )
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Opens a session the way a site asks: STLS when required, then authentication.
enum SiteSessionSetup {
    static func prepare(_ session: POP3Session, for site: RemoteSite) async throws(POP3Error) {
        let capabilities = try await session.loadCapabilities()
        if site.pop3.security == .starttls {
            // Refuse to go on in clear text when STLS is missing: a downgrade is exactly what an
            // attacker in the middle would arrange.
            guard capabilities.supportsSTLS || capabilities.lines.isEmpty else {
                throw POP3Error.notSupported("STLS, which the site requires (security: starttls)")
            }
            try await session.startTLS()
        }
        try await authenticate(session, site: site)
    }

    static let implementedMechanisms = ["plain", "user"]

    static func authenticate(_ session: POP3Session, site: RemoteSite) async throws(POP3Error) {
        guard let password = site.pop3.password?.value else {
            throw POP3Error.authenticationFailed("the site has no password (pop3.password or pop3.password_file)")
        }
        let offered = Set(session.capabilities?.saslMechanisms ?? [])
        let wanted = site.pop3.auth.isEmpty ? implementedMechanisms : site.pop3.auth
        for mechanism in wanted {
            switch mechanism {
            case "plain" where offered.contains("PLAIN"):
                try await session.authenticatePlain(user: site.pop3.user, password: password, allowPlaintext: site.pop3.allowPlaintextPassword)
                return
            case "user":
                try await session.login(user: site.pop3.user, password: password, allowPlaintext: site.pop3.allowPlaintextPassword)
                return
            default:
                continue
            }
        }
        throw POP3Error.notSupported("any of the site's authentication mechanisms (\(wanted.joined(separator: ", "))) that Gatepost implements here")
    }
}
