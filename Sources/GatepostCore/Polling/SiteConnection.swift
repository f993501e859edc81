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

    /// Without `auth:` in the site: the strongest mechanism the server offers. CRAM-MD5 keeps the
    /// password off the wire even without TLS; APOP (no capability announces it) only when asked.
    static let defaultPreference: [POP3AuthMechanism] = [.cramMD5, .plain, .login, .user]

    static func authenticate(_ session: POP3Session, site: RemoteSite) async throws(POP3Error) {
        let offered = Set(session.capabilities?.saslMechanisms ?? [])
        let explicit = !site.pop3.auth.isEmpty
        let wanted: [POP3AuthMechanism] = explicit
            ? site.pop3.auth.compactMap(POP3AuthMechanism.init(rawValue:))
            : (site.pop3.oauth2 != nil ? [.xoauth2, .oauthbearer]
               : site.pop3.tls.clientCertificate != nil ? [.external] + defaultPreference : defaultPreference)
        let user = site.pop3.user
        let allowPlaintext = site.pop3.allowPlaintextPassword
        if let oauth2 = site.pop3.oauth2,
           let mechanism = wanted.first(where: { ($0 == .xoauth2 || $0 == .oauthbearer) && offered.contains($0.rawValue.uppercased()) }) {
            let token: String
            do {
                token = try await OAuth2TokenProvider.shared.token(for: oauth2)
            } catch {
                throw POP3Error.authenticationFailed("no OAuth2 token: \(error)")
            }
            do {
                try await session.authenticateBearer(mechanism, user: user, token: token, allowPlaintext: allowPlaintext)
            } catch {
                // A refused token may have been revoked early: fetch a new one next time.
                await OAuth2TokenProvider.shared.invalidate(oauth2)
                throw error
            }
            return
        }
        if wanted.first(where: { offered.contains($0.rawValue.uppercased()) || $0 == .user || $0 == .apop }) == .external {
            return try await session.authenticateExternal()
        }
        guard let password = site.pop3.password?.value else {
            throw POP3Error.authenticationFailed("the site has no password (pop3.password or pop3.password_file)")
        }
        for mechanism in wanted {
            switch mechanism {
            case .cramMD5 where offered.contains("CRAM-MD5"):
                return try await session.authenticateCRAMMD5(user: user, password: password)
            case .plain where offered.contains("PLAIN"):
                return try await session.authenticatePlain(user: user, password: password, allowPlaintext: allowPlaintext)
            case .login where offered.contains("LOGIN"):
                return try await session.authenticateLogin(user: user, password: password, allowPlaintext: allowPlaintext)
            case .apop where session.greeting?.apopTimestamp != nil:
                return try await session.authenticateAPOP(user: user, password: password)
            case .user:
                return try await session.login(user: user, password: password, allowPlaintext: allowPlaintext)
            case .xoauth2, .oauthbearer, .plain, .login, .cramMD5, .apop, .external:
                continue
            }
        }
        let known = site.pop3.auth.filter { POP3AuthMechanism(rawValue: $0) == nil }
        if !known.isEmpty {
            throw POP3Error.notSupported("\(known.joined(separator: ", ")) authentication yet (Gatepost speaks \(POP3AuthMechanism.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        throw POP3Error.notSupported("any of the site's authentication mechanisms (\(wanted.map(\.rawValue).joined(separator: ", "))); it offers SASL \(offered.sorted().joined(separator: " "))")
    }
}
