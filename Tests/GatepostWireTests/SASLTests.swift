import Foundation
import GatepostWire
import Testing

@Suite struct SASLClientTests {
    static let password = SASLCredentials(user: "tim", password: "tanstaaftanstaaf")
    static let token = SASLCredentials(user: "u", bearerToken: "t")

    static func client(_ mechanism: SASLMechanism, _ credentials: SASLCredentials) throws -> SASLClient {
        try SASLClient(mechanism: mechanism, credentials: credentials, host: "h", port: 995)
    }

    static func decoded(_ base64: String?) -> String? {
        base64.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func cramMD5MatchesRFC2195() throws {
        var client = try Self.client(.cramMD5, Self.password)
        #expect(client.initialResponse == nil)
        let challenge = Data("<1896.697170952@postoffice.reston.mci.net>".utf8).base64EncodedString()
        #expect(Self.decoded(client.respond(to: challenge)) == "tim b913a602c7eda7a495b4e6e7334d3890")
        // A second challenge is not part of CRAM-MD5: cancel.
        #expect(client.respond(to: challenge) == "*")
    }

    @Test func cramMD5CancelsAChallengeThatIsNotBase64() throws {
        var client = try Self.client(.cramMD5, Self.password)
        #expect(client.respond(to: "not base64!") == "*")
    }

    @Test func plainSendsItsTokenFirstAndAgainWhenChallenged() throws {
        var client = try Self.client(.plain, Self.password)
        #expect(Self.decoded(client.initialResponse) == "\0tim\0tanstaaftanstaaf")
        #expect(client.respond(to: "") == client.initialResponse)
    }

    @Test func loginAnswersUserThenPasswordThenCancels() throws {
        var client = try Self.client(.login, Self.password)
        #expect(client.initialResponse == nil)
        #expect(Self.decoded(client.respond(to: "VXNlcm5hbWU6")) == "tim")
        #expect(Self.decoded(client.respond(to: "UGFzc3dvcmQ6")) == "tanstaaftanstaaf")
        #expect(client.respond(to: "UGFzc3dvcmQ6") == "*")
    }

    @Test func bearerResponsesFollowTheirSpecifications() throws {
        #expect(Self.decoded(try Self.client(.xoauth2, Self.token).initialResponse) == "user=u\u{1}auth=Bearer t\u{1}\u{1}")
        #expect(Self.decoded(try Self.client(.oauthbearer, Self.token).initialResponse)
            == "n,a=u,\u{1}host=h\u{1}port=995\u{1}auth=Bearer t\u{1}\u{1}")
    }

    @Test func aBearerErrorDocumentIsKeptAndAnsweredSoTheServerCanFail() throws {
        let document = #"{"status":"401"}"#
        let challenge = Data(document.utf8).base64EncodedString()
        var xoauth2 = try Self.client(.xoauth2, Self.token)
        #expect(xoauth2.respond(to: challenge) == "")
        #expect(xoauth2.serverDetail == document)
        var oauthbearer = try Self.client(.oauthbearer, Self.token)
        // RFC 7628 section 3.2.3: a single ^A.
        #expect(oauthbearer.respond(to: challenge) == "AQ==")
        #expect(oauthbearer.serverDetail == document)
    }

    @Test func externalSendsAnEmptyResponse() throws {
        let client = try Self.client(.external, SASLCredentials(user: "cert", secret: .clientCertificate))
        #expect(client.initialResponse == "")
    }

    @Test func aServerThatKeepsChallengingIsCancelled() throws {
        var client = try Self.client(.plain, Self.password)
        for _ in 0..<SASLClient.maxChallenges { #expect(client.respond(to: "") != "*") }
        #expect(client.respond(to: "") == "*")
    }

    @Test func aMechanismTakesOnlyItsKindOfSecret() {
        #expect(throws: AuthenticationUnavailable.noFittingSecret(wanted: ["XOAUTH2"], available: [.password])) {
            try Self.client(.xoauth2, Self.password)
        }
    }

    @Test func credentialsNeverPrintTheSecret() {
        let printed = [Self.password.description, Self.password.debugDescription, String(reflecting: Self.password)]
            + [{ var out = ""; dump(Self.password, to: &out); return out }()]
        for text in printed { #expect(!text.contains("tanstaaf")) }
    }
}

@Suite struct AuthenticationChoiceTests {
    static func choose(
        _ preference: [SASLMechanism] = [], available: Set<SecretKind> = [.password], offered: [String],
        encrypted: Bool = true, allowCleartext: Bool = false
    ) throws(AuthenticationUnavailable) -> SASLMechanism {
        try AuthenticationChoice.choose(
            from: preference.isEmpty ? SASLMechanism.defaultPreference(connectionIsEncrypted: encrypted) : preference,
            available: available, isOffered: { offered.contains($0.name) }, offeredDescription: offered.joined(separator: " "),
            connectionIsEncrypted: encrypted, allowCleartext: allowCleartext
        )
    }

    @Test func underTLSPlainComesFirstAndWithoutItCRAMMD5() throws {
        #expect(try Self.choose(offered: ["CRAM-MD5", "PLAIN", "LOGIN"]) == .plain)
        #expect(try Self.choose(offered: ["CRAM-MD5", "PLAIN", "LOGIN"], encrypted: false) == .cramMD5)
    }

    @Test func withoutTLSASecretInClearNeedsTheOptIn() throws {
        #expect(throws: AuthenticationUnavailable.cleartextRefused(mechanism: "PLAIN")) {
            try Self.choose(offered: ["PLAIN", "LOGIN"], encrypted: false)
        }
        #expect(try Self.choose(offered: ["PLAIN", "LOGIN"], encrypted: false, allowCleartext: true) == .plain)
    }

    @Test func theSecretDecidesBetweenPasswordTokenAndCertificate() throws {
        let all = ["PLAIN", "XOAUTH2", "OAUTHBEARER", "EXTERNAL"]
        #expect(try Self.choose(available: [.bearerToken], offered: all) == .xoauth2)
        #expect(try Self.choose(available: [.bearerToken], offered: ["OAUTHBEARER"]) == .oauthbearer)
        #expect(try Self.choose(available: [.clientCertificate, .password], offered: all) == .external)
        #expect(try Self.choose(available: [.password], offered: all) == .plain)
    }

    @Test func theConfiguredOrderWins() throws {
        #expect(try Self.choose([.login, .plain], offered: ["PLAIN", "LOGIN"]) == .login)
    }

    @Test func whatCannotBeUsedIsSaidPlainly() {
        #expect(throws: AuthenticationUnavailable.notOffered(wanted: ["CRAM-MD5"], offered: "PLAIN")) {
            try Self.choose([.cramMD5], offered: ["PLAIN"])
        }
        #expect(throws: AuthenticationUnavailable.noFittingSecret(wanted: ["XOAUTH2"], available: [.password])) {
            try Self.choose([.xoauth2], offered: ["XOAUTH2"])
        }
        #expect(AuthenticationUnavailable.notOffered(wanted: ["CRAM-MD5", "PLAIN"], offered: "LOGIN").description
            == "any of CRAM-MD5, PLAIN (the server offers LOGIN)")
    }
}
