import Foundation
import GatepostCatalog
import GatepostTestSupport
import Logging
import Testing
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
        #expect(site.pop3.oauth2?.clientSecret.value == "s")
        #expect(site.pop3.auth == ["xoauth2", "oauthbearer"])
    }

    // MARK: The token URL

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

    @Test func bearerResponsesFollowTheirSpecifications() {
        #expect(POP3Session.bearerResponse(.xoauth2, user: "u", token: "t", host: "h", port: 995) == "user=u\u{1}auth=Bearer t\u{1}\u{1}")
        #expect(POP3Session.bearerResponse(.oauthbearer, user: "u", token: "t", host: "h", port: 995)
            == "n,a=u,\u{1}host=h\u{1}port=995\u{1}auth=Bearer t\u{1}\u{1}")
    }
}

