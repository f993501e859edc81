import GatepostPOP3
import GatepostWire
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

    /// Chooses the way to log in from the site's `auth:` (or the default order) and the secrets
    /// the site has, then fetches the one secret that way needs: an OAuth2 token only when the
    /// server takes one.
    static func authenticate(_ session: POP3Session, site: RemoteSite) async throws(POP3Error) {
        var available: Set<SecretKind> = []
        if site.pop3.password != nil { available.insert(.password) }
        if site.pop3.oauth2 != nil { available.insert(.bearerToken) }
        if site.pop3.tls.clientCertificate != nil { available.insert(.clientCertificate) }
        guard !available.isEmpty else {
            throw POP3Error.authenticationFailed("the site has no password (pop3.password or pop3.password_file), oauth2 or tls.client_certificate")
        }
        let allowPlaintext = site.pop3.allowPlaintextPassword
        let mechanism = try await session.chooseAuthentication(preference: site.pop3.auth, available: available, allowPlaintext: allowPlaintext)
        let user = site.pop3.user
        switch mechanism.secretKind {
        case .password:
            let password: String
            do {
                guard let secret = try site.pop3.password?.resolve() else { throw POP3Error.invalidState("no password for \(mechanism.rawValue)") }
                password = secret
            } catch let error as SecretUnavailable {
                throw POP3Error.authenticationFailed("no password: \(error)")
            } catch {
                throw POP3Error.invalidState("no password for \(mechanism.rawValue)")
            }
            try await session.authenticate(mechanism, credentials: SASLCredentials(user: user, password: password), allowPlaintext: allowPlaintext)
        case .clientCertificate:
            try await session.authenticate(mechanism, credentials: SASLCredentials(user: user, secret: .clientCertificate), allowPlaintext: allowPlaintext)
        case .bearerToken:
            guard let oauth2 = site.pop3.oauth2 else { throw POP3Error.invalidState("no oauth2 settings for \(mechanism.rawValue)") }
            let token: String
            do {
                token = try await OAuth2TokenProvider.shared.token(for: oauth2)
            } catch {
                throw POP3Error.authenticationFailed("no OAuth2 token: \(error)")
            }
            do {
                try await session.authenticate(mechanism, credentials: SASLCredentials(user: user, bearerToken: token), allowPlaintext: allowPlaintext)
            } catch {
                // A refused token may have been revoked early: fetch a new one next time.
                await OAuth2TokenProvider.shared.invalidate(oauth2)
                throw error
            }
        }
    }
}
