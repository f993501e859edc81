import Crypto
import Foundation
import GatepostCatalog
import GatepostTestSupport
import Logging
import NIOCore
import NIOSSL
import Testing
import X509
@testable import GatepostCore
@testable import GatepostPOP3

/// XOAUTH2 and OAUTHBEARER with client-credentials tokens from a local token endpoint.
@Suite struct OAuthTests {
    struct Setup {
        let endpoint = TokenEndpoint()
        let server: ScriptedPOP3Server
        let fixture: PollFixture
        var site: RemoteSite

        init(acceptedToken: String? = TokenEndpoint.token(1), secret: String = "client-secret", auth: String = "") async throws {
            var behavior = ScriptedPOP3Server.Behavior()
            behavior.capabilities = ["USER", "UIDL", "SASL PLAIN XOAUTH2 OAUTHBEARER"]
            behavior.bearerToken = acceptedToken
            let tokenPort = try await endpoint.start()
            fixture = try await PollFixture(behavior: behavior)
            server = fixture.server
            let text = """
            pop3:
              host: 127.0.0.1
              port: \(fixture.site.pop3.port)
              security: none
              allow_plaintext_password: true
              user: \(server.user)
              \(auth)
              oauth2:
                token_url: http://127.0.0.1:\(tokenPort)/oauth/token
                allow_insecure_token_url: true
                client_id: gatepost
                client_secret: \(secret)
                scope: pop3
            """
            site = try #require(try SiteLoader(environment: [:]).parse(text, file: "/tmp/oauth.yaml"))
        }

        func poll() async throws(SitePollError) -> PollSummary {
            try await PollJob(site: site, spool: fixture.spool, catalog: fixture.catalog, logger: Logger(label: "t")).run()
        }

        func stop() {
            let endpoint = endpoint, server = server
            Task { await endpoint.stop(); await server.stop() }
        }
    }

    @Test func xoauth2WithACachedToken() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        #expect(try await setup.poll().records.count == 4)
        #expect(try await setup.poll().alreadyRetrieved == 0)
        // Two logins, one token: it is cached until shortly before it expires.
        #expect(setup.endpoint.tokensIssued == 1)
    }

    @Test func oauthbearerWhenTheSiteAsksForIt() async throws {
        let setup = try await Setup(auth: "auth: [oauthbearer]")
        defer { setup.stop() }
        #expect(try await setup.poll().records.count == 4)
    }

    @Test func aWrongClientSecretIsNamed() async throws {
        let setup = try await Setup(secret: "wrong")
        defer { setup.stop() }
        await #expect {
            try await setup.poll()
        } throws: { error in
            let text = "\(error)"
            return text.contains("no OAuth2 token") && text.contains("answered 401: unknown client or wrong secret") && !text.contains("wrong\n")
        }
        #expect(setup.server.messages.count == 4)
    }

    @Test func aRefusedTokenIsNotReused() async throws {
        // The server only accepts the second token: the first login fails, the next one fetches anew.
        let setup = try await Setup(acceptedToken: TokenEndpoint.token(2))
        defer { setup.stop() }
        await #expect {
            try await setup.poll()
        } throws: { error in
            "\(error)".contains("authentication failed")
        }
        #expect(try await setup.poll().records.count == 4)
        #expect(setup.endpoint.tokensIssued == 2)
    }

    @Test func btpOAuth2ClientCredentialsDestination() throws {
        let site = try #require(try SiteLoader(environment: ["SECRET": "s"]).parse("""
        {
          "Name": "btp-oauth", "Type": "MAIL", "Authentication": "OAuth2ClientCredentials",
          "tokenServiceURL": "https://tenant.authentication.example/oauth/token",
          "clientId": "sb-client", "clientSecret": "${SECRET}",
          "mail.user": "edi@partner.example", "mail.pop3s.host": "pop.partner.example"
        }
        """, file: "sites/btp.json"))
        #expect(site.pop3.oauth2?.tokenURL == "https://tenant.authentication.example/oauth/token")
        #expect(site.pop3.oauth2?.clientID == "sb-client")
        #expect(try site.pop3.oauth2?.clientSecret.resolve() == "s")
        #expect(site.pop3.auth == [.xoauth2, .oauthbearer])
    }

    // MARK: The token endpoint's connection

    /// Short limits, so that a hung endpoint fails a test in seconds.
    static let shortTimeouts = OAuth2TokenProvider.Timeouts(connect: .seconds(2), read: .seconds(1), total: .seconds(3))

    /// A provider of its own (the shared one keeps its 30 s limits), shut down however `body` ends.
    static func withProvider<Result: Sendable>(_ body: (OAuth2TokenProvider) async throws -> Result) async throws -> Result {
        let provider = OAuth2TokenProvider(timeouts: shortTimeouts)
        do {
            let result = try await body(provider)
            try await provider.shutdown()
            return result
        } catch {
            try? await provider.shutdown()
            throw error
        }
    }

    /// The oauth2 settings of a site file with this `oauth2:` and `tls:` under `pop3:`.
    static func settings(oauth2: String, tls: String = "{}", file: String = "/tmp/oauth.yaml") throws -> OAuth2Settings {
        let site = try #require(try SiteLoader(environment: [:]).parse("""
        pop3:
          host: pop.partner.example
          user: edi
          tls: \(tls)
          oauth2: \(oauth2)
        """, file: file))
        return try #require(site.pop3.oauth2)
    }

    @Test(.timeLimit(.minutes(1)))
    func anEndpointThatNeverAnswersFailsWithinTheReadTimeout() async throws {
        let endpoint = TokenEndpoint(behavior: .neverAnswer)
        let port = try await endpoint.start()
        let url = "http://127.0.0.1:\(port)/oauth/token"
        let settings = try Self.settings(oauth2: "{token_url: \"\(url)\", client_id: gatepost, client_secret: client-secret, allow_insecure_token_url: true}")
        let started = ContinuousClock.now
        let error = await #expect(throws: OAuth2Error.self) {
            try await Self.withProvider { try await $0.token(for: settings) }
        }
        let took = ContinuousClock.now - started
        // The read limit (1 s), or on a very busy machine the total one (3 s).
        let text = try #require(error?.description)
        #expect(text.hasPrefix("the token endpoint \(url) did not answer within "))
        #expect(!text.contains("\n"))
        // Without limits this would wait for ever; the margin is for a loaded machine.
        #expect(took < .seconds(20))
        #expect(endpoint.connectionsAccepted == 1)
        // The client let go of the connection: this returns once the endpoint saw it close.
        await endpoint.connectionsClosed()
        await endpoint.stop()
    }

    @Test func anHTTPTokenURLIsRefusedUnlessTheSiteOptsIn() throws {
        let refused = #expect(throws: SiteConfigurationError.self) {
            try Self.settings(oauth2: "{token_url: \"http://idp.example/token\", client_id: c, client_secret: s}", file: "sites/partner.yaml")
        }
        #expect(refused?.file == "sites/partner.yaml")
        #expect(refused?.field == "pop3.oauth2.token_url")
        #expect(refused?.message.contains("clear text") == true)
        #expect(refused?.message.contains("allow_insecure_token_url: true") == true)

        let allowed = try Self.settings(oauth2: "{token_url: \"http://idp.example/token\", client_id: c, client_secret: s, allow_insecure_token_url: true}")
        #expect(allowed.allowInsecureTokenURL)
        #expect(try Self.settings(oauth2: "{token_url: \"https://idp.example/token\", client_id: c, client_secret: s}").allowInsecureTokenURL == false)

        let notAURL = #expect(throws: SiteConfigurationError.self) {
            try Self.settings(oauth2: "{token_url: \"idp.example/token\", client_id: c, client_secret: s}")
        }
        #expect(notAURL?.message.contains("is not an https URL") == true)

        // SMTP's oauth2 follows the same rule.
        let smtp = #expect(throws: SiteConfigurationError.self) {
            try SiteLoader(environment: [:]).parse("""
            pop3: {host: pop.partner.example, user: edi, password: p}
            smtp: {host: smtp.partner.example, user: edi, oauth2: {token_url: "http://idp.example/token", client_id: c, client_secret: s}}
            """, file: "sites/partner.yaml")
        }
        #expect(smtp?.field == "smtp.oauth2.token_url")

        // A BTP destination has no opt-in.
        let btp = #expect(throws: SiteConfigurationError.self) {
            try SiteLoader(environment: [:]).parse("""
            {
              "Name": "btp-oauth", "Type": "MAIL", "Authentication": "OAuth2ClientCredentials",
              "tokenServiceURL": "http://tenant.authentication.example/oauth/token",
              "clientId": "sb-client", "clientSecret": "s",
              "mail.user": "edi@partner.example", "mail.pop3s.host": "pop.partner.example"
            }
            """, file: "sites/btp.json")
        }
        #expect(btp?.field == "tokenServiceURL")
    }

    @Test func anHTTPTokenURLMadeInCodeIsRefusedBeforeAnythingIsSent() async throws {
        let endpoint = TokenEndpoint()
        let port = try await endpoint.start()
        var settings = OAuth2Settings(tokenURL: "http://127.0.0.1:\(port)/oauth/token", clientID: "gatepost", clientSecret: Secret("client-secret"))
        let refusing = settings
        let error = await #expect(throws: OAuth2Error.self) {
            try await Self.withProvider { try await $0.token(for: refusing) }
        }
        #expect(error?.description.contains("allow_insecure_token_url") == true)
        #expect(endpoint.connectionsAccepted == 0)

        settings.allowInsecureTokenURL = true
        let allowing = settings
        #expect(try await Self.withProvider { try await $0.token(for: allowing) } == TokenEndpoint.token(1))
        await endpoint.stop()
    }

    @Test func aTLSTokenEndpointIsTrustedThroughTheSitesCAFile() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let endpoint = TokenEndpoint(tls: try pki.serverContext(hostName: "localhost"))
        let port = try await endpoint.start()
        let oauth2 = "{token_url: \"https://localhost:\(port)/oauth/token\", client_id: gatepost, client_secret: client-secret}"

        let trusted = try Self.settings(oauth2: oauth2, tls: "{ca_file: \(pki.caFile)}")
        #expect(trusted.tls.caFile == pki.caFile)
        #expect(try await Self.withProvider { try await $0.token(for: trusted) } == TokenEndpoint.token(1))

        // The system roots do not know the test CA.
        let untrusted = try Self.settings(oauth2: oauth2)
        let error = await #expect(throws: OAuth2Error.self) {
            try await Self.withProvider { try await $0.token(for: untrusted) }
        }
        #expect(error?.description.contains("could not be verified") == true)
        #expect(error?.description.contains("tls.ca_file") == true)
        #expect(error?.description.contains("\n") == false)
        #expect(endpoint.tokensIssued == 1)
        await endpoint.stop()
    }

    @Test func theSitesClientCertificateIsPresentedToTheTokenEndpoint() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let endpoint = TokenEndpoint(tls: try pki.serverContext(hostName: "localhost", requireClientCertificate: true))
        let port = try await endpoint.start()
        let oauth2 = "{token_url: \"https://localhost:\(port)/oauth/token\", client_id: gatepost, client_secret: client-secret}"

        let withCertificate = try Self.settings(
            oauth2: oauth2, tls: "{ca_file: \(pki.caFile), client_certificate: \(pki.clientCertificateFile), client_key: \(pki.clientKeyFile)}"
        )
        #expect(try await Self.withProvider { try await $0.token(for: withCertificate) } == TokenEndpoint.token(1))

        let without = try Self.settings(oauth2: oauth2, tls: "{ca_file: \(pki.caFile)}")
        let error = await #expect(throws: OAuth2Error.self) {
            try await Self.withProvider { try await $0.token(for: without) }
        }
        #expect(error?.description.contains("tls.client_certificate") == true, "\(error?.description ?? "no error")")
        #expect(endpoint.tokensIssued == 1)
        await endpoint.stop()
    }

    /// TLS 1.3: an endpoint that wants a client certificate refuses after the handshake, and
    /// when it closes on our unread request its alert is lost in the reset. Without a
    /// certificate of ours, a reset or a close says to check it too; with one, it does not.
    @Test func aResetAfterTLSWithoutOurCertificateNamesIt() {
        let url = "https://idp.example/token"
        let reset = OAuth2TokenProvider.describe(
            IOError(errnoCode: ECONNRESET, reason: "read"), url: url, timeouts: .init(), presentedNoCertificate: true
        )
        #expect(reset.description.contains("tls.client_certificate"), "\(reset)")
        #expect(reset.description.contains("Connection reset"), "\(reset)")
        let withOurs = OAuth2TokenProvider.describe(IOError(errnoCode: ECONNRESET, reason: "read"), url: url, timeouts: .init())
        #expect(!withOurs.description.contains("tls.client_certificate"))
        let refused = OAuth2TokenProvider.describe(
            IOError(errnoCode: ECONNREFUSED, reason: "connect"), url: url, timeouts: .init(), presentedNoCertificate: true
        )
        #expect(!refused.description.contains("tls.client_certificate"), "nothing to do with a certificate: \(refused)")
    }

    @Test func anEndpointNobodyListensOnIsNamedAtOnce() async throws {
        // The pool does not retry a refused connection until the deadline.
        let endpoint = TokenEndpoint()
        let port = try await endpoint.start()
        await endpoint.stop()
        let settings = try Self.settings(oauth2: "{token_url: \"http://127.0.0.1:\(port)/t\", client_id: c, client_secret: s, allow_insecure_token_url: true}")
        let error = await #expect(throws: OAuth2Error.self) {
            try await Self.withProvider { try await $0.token(for: settings) }
        }
        #expect(error?.description == "cannot reach the token endpoint http://127.0.0.1:\(port)/t: Connection refused (check token_url and the network path to it)")
    }

}
