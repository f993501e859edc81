import Foundation
import GatepostWire
import NIOCore
import Testing
@testable import GatepostSMTP

/// Drives the state machine with server bytes, no sockets. Writes are collected as `sent`; the
/// other actions are returned.
struct Conversation {
    var machine: SMTPClientStateMachine
    var sent = ""
    var logged: [String] = []

    init(encrypted: Bool = false) {
        machine = SMTPClientStateMachine(clientName: "client.example", connectionIsEncrypted: encrypted)
    }

    /// Feeds `text` in chunks of `chunkSize`.
    mutating func server(_ text: String, chunkSize: Int = .max) throws(SMTPError) -> [SMTPClientStateMachine.Action] {
        var actions: [SMTPClientStateMachine.Action] = []
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunkSize)
            var buffer = ByteBuffer(bytes: bytes[offset..<end])
            for action in try machine.receive(&buffer) {
                if case .write(let bytes, let description) = action {
                    sent += String(buffer: bytes)
                    logged.append(description)
                } else {
                    actions.append(action)
                }
            }
            offset = end
        }
        return actions
    }

    mutating func client(_ action: SMTPClientStateMachine.Action) {
        guard case .write(let bytes, let description) = action else {
            Issue.record("expected a write, got \(action)")
            return
        }
        sent += String(buffer: bytes)
        logged.append(description)
    }

    /// Takes what was sent since the last call.
    mutating func takeSent() -> String {
        defer { sent = "" }
        return sent
    }

    static let fullEHLO = """
        250-mx.example.com Hello client.example\r
        250-PIPELINING\r
        250-SIZE 10240000\r
        250-8BITMIME\r
        250-STARTTLS\r
        250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r
        250-ENHANCEDSTATUSCODES\r
        250 SMTPUTF8\r

        """

    /// Greeting and EHLO with `extensions` (one keyword line each).
    static func ready(_ extensions: [String], encrypted: Bool = false) throws -> Conversation {
        var conversation = Conversation(encrypted: encrypted)
        _ = try conversation.server("220 mx.example.com ESMTP\r\n")
        let lines = ["mx.example.com"] + extensions
        let reply = lines.enumerated().map { index, line in
            "250\(index == lines.count - 1 ? " " : "-")\(line)\r\n"
        }.joined()
        let actions = try conversation.server(reply)
        #expect(actions == [.ready(SMTPCapabilities(lines: extensions))])
        _ = conversation.takeSent()
        conversation.logged = []
        return conversation
    }
}

func reply(_ code: Int, _ enhanced: String? = nil, _ text: String) -> SMTPReply {
    var parser = SMTPReplyParser()
    var buffer = ByteBuffer(string: "\(code) \(enhanced.map { $0 + " " } ?? "")\(text)\r\n")
    // Fixtures are well-formed; a parse failure shows up as a mismatch.
    return (try? parser.nextReply(from: &buffer)) ?? SMTPReply(code: 0, lines: [])
}

@Suite struct SMTPGreetingTests {
    @Test func ehloSuccessParsesCapabilities() throws {
        var conversation = Conversation()
        #expect(try conversation.server("220 mx.example.com ESMTP Postfix\r\n").isEmpty)
        #expect(conversation.takeSent() == "EHLO client.example\r\n")
        let actions = try conversation.server(Conversation.fullEHLO, chunkSize: 5)
        guard case .ready(let capabilities)? = actions.first, actions.count == 1 else {
            Issue.record("expected ready, got \(actions)")
            return
        }
        #expect(capabilities.isExtended)
        #expect(capabilities.supportsPipelining)
        #expect(capabilities.supportsSize && capabilities.maximumMessageSize == 10_240_000)
        #expect(capabilities.supports8BitMIME)
        #expect(capabilities.supportsStartTLS)
        #expect(capabilities.authMechanisms == ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
        #expect(capabilities.supportsEnhancedStatusCodes)
        #expect(capabilities.supportsSMTPUTF8)
        #expect(conversation.machine.state == .ready)
        #expect(conversation.machine.greeting == SMTPReply(code: 220, lines: ["mx.example.com ESMTP Postfix"]))
    }

    @Test func capabilityVariants() {
        let capabilities = SMTPCapabilities(lines: ["SIZE 0", "AUTH=LOGIN PLAIN", "auth login cram-md5", "8bitmime"])
        #expect(capabilities.supportsSize && capabilities.maximumMessageSize == nil)
        #expect(capabilities.authMechanisms == ["LOGIN", "PLAIN", "CRAM-MD5"])
        #expect(capabilities.supports8BitMIME && !capabilities.supportsPipelining)
        #expect(SMTPCapabilities(lines: ["SIZE"]).maximumMessageSize == nil)
    }

    @Test(arguments: [500, 502])
    func heloFallbackWhenEHLOIsNotRecognised(code: Int) throws {
        var conversation = Conversation()
        _ = try conversation.server("220 old.example.com SMTP\r\n")
        #expect(try conversation.server("\(code) 5.5.1 command unrecognized\r\n").isEmpty)
        #expect(conversation.takeSent() == "EHLO client.example\r\nHELO client.example\r\n")
        #expect(try conversation.server("250 old.example.com\r\n") == [.ready(.none)])
        #expect(!conversation.machine.capabilities.isExtended)
        // Without PIPELINING, MAIL FROM goes alone and no extension parameters are sent.
        conversation.client(try conversation.machine.beginTransaction(SMTPEnvelope(from: "a@x", recipients: ["b@y"]), messageSize: 10))
        #expect(conversation.takeSent() == "MAIL FROM:<a@x>\r\n")
    }

    @Test func ehloRefusedOtherwiseIsAnError() throws {
        var conversation = Conversation()
        _ = try conversation.server("220 ok\r\n")
        #expect(throws: SMTPError.commandFailed(command: "EHLO", reply: reply(550, "5.7.1", "go away"))) {
            try conversation.server("550 5.7.1 go away\r\n")
        }
        #expect(conversation.machine.state == .closed)
    }

    @Test func greeting554IsAPermanentRefusal() throws {
        var conversation = Conversation()
        do {
            _ = try conversation.server("554 5.7.1 no SMTP service here for you\r\n")
            Issue.record("a 554 greeting must throw")
        } catch {
            #expect(error == .greetingRefused(reply(554, "5.7.1", "no SMTP service here for you")))
            #expect(!error.isTransient)
        }
        #expect(conversation.machine.state == .closed)
        #expect(conversation.sent.isEmpty)
    }

    @Test func replyWithoutCommandIsAProtocolViolation() throws {
        var conversation = try Conversation.ready(["PIPELINING"])
        #expect(throws: SMTPError.self) { try conversation.server("250 surprise\r\n") }
    }

    @Test func commandsAreCheckedAgainstTheState() throws {
        var conversation = Conversation()
        #expect(throws: SMTPError.self) { try conversation.machine.quit() }
        _ = try conversation.server("220 ok\r\n")
        #expect(throws: SMTPError.self) { try conversation.machine.beginTransaction(SMTPEnvelope(from: "", recipients: ["b@y"]), messageSize: nil) }
        #expect(throws: SMTPError.self) { try conversation.machine.messageBodySent() }
    }

    @Test func connectionClosedMidCommandIsAnError() throws {
        var conversation = Conversation()
        #expect(conversation.machine.connectionClosed() == .connectionClosed(during: "the greeting"))
        var ready = try Conversation.ready([])
        ready.client(try ready.machine.quit())
        #expect(ready.machine.connectionClosed() == nil)
    }
}

@Suite struct SMTPStartTLSTests {
    @Test func startTLSThenEHLOAgain() throws {
        var conversation = try Conversation.ready(["STARTTLS", "AUTH LOGIN"])
        conversation.client(try conversation.machine.startTLS())
        #expect(conversation.takeSent() == "STARTTLS\r\n")
        #expect(try conversation.server("220 2.0.0 Ready to start TLS\r\n") == [.startTLS])
        #expect(conversation.machine.state == .awaitingTLS)
        #expect(throws: SMTPError.self) { try conversation.machine.quit() }
        conversation.client(try conversation.machine.tlsEstablished())
        // RFC 3207 section 4.2: what the server said in clear text is forgotten.
        #expect(conversation.machine.capabilities == .none)
        #expect(conversation.machine.isEncrypted)
        #expect(conversation.takeSent() == "EHLO client.example\r\n")
        let actions = try conversation.server("250-mx.example.com\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n")
        #expect(actions == [.ready(SMTPCapabilities(lines: ["AUTH PLAIN LOGIN", "PIPELINING"]))])
        #expect(throws: SMTPError.invalidState("STARTTLS on a connection that is already encrypted")) {
            try conversation.machine.startTLS()
        }
    }

    @Test func plaintextAfterThe220IsRefused() throws {
        var conversation = try Conversation.ready(["STARTTLS"])
        conversation.client(try conversation.machine.startTLS())
        #expect(throws: SMTPError.protocolViolation("data received after the STARTTLS reply")) {
            try conversation.server("220 go ahead\r\n250-injected\r\n")
        }
        #expect(conversation.machine.state == .closed)
    }

    @Test func startTLSRefusedLeavesTheSessionUsable() throws {
        var conversation = try Conversation.ready(["STARTTLS"])
        conversation.client(try conversation.machine.startTLS())
        #expect(throws: SMTPError.commandFailed(command: "STARTTLS", reply: reply(454, "4.7.0", "TLS not available"))) {
            try conversation.server("454 4.7.0 TLS not available\r\n")
        }
        #expect(conversation.machine.state == .ready)
    }

    @Test func startTLSNeedsTheCapability() throws {
        var conversation = try Conversation.ready(["PIPELINING"])
        #expect(throws: SMTPError.notSupported("STARTTLS")) { try conversation.machine.startTLS() }
    }
}

@Suite struct SMTPAuthenticationTests {
    static let password = SASLCredentials(user: "tim", password: "tanstaaftanstaaf")
    static let token = SASLCredentials(user: "someone@example.com", bearerToken: "ya29.secret-token")

    static func sasl(_ mechanism: SASLMechanism, _ credentials: SASLCredentials) throws -> SASLClient {
        try SASLClient(mechanism: mechanism, credentials: credentials, host: "mail.example.com", port: 587)
    }

    static func authReady(encrypted: Bool = true) throws -> Conversation {
        try Conversation.ready(["AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2", "PIPELINING"], encrypted: encrypted)
    }

    @Test func plainSuccess() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.plain, Self.password), allowInsecure: false))
        #expect(conversation.takeSent() == "AUTH PLAIN \(Data("\0tim\0tanstaaftanstaaf".utf8).base64EncodedString())\r\n")
        #expect(try conversation.server("235 2.7.0 Authentication successful\r\n") == [.authenticated])
        #expect(conversation.machine.isAuthenticated)
        #expect(throws: SMTPError.self) { try conversation.machine.authenticate(try Self.sasl(.plain, Self.password), allowInsecure: false) }
    }

    @Test func plainAnswersAnEmptyChallenge() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.plain, Self.password), allowInsecure: false))
        _ = conversation.takeSent()
        #expect(try conversation.server("334 \r\n").isEmpty)
        #expect(conversation.takeSent() == Data("\0tim\0tanstaaftanstaaf".utf8).base64EncodedString() + "\r\n")
        #expect(try conversation.server("235 ok\r\n") == [.authenticated])
    }

    @Test func plainFailure() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.plain, Self.password), allowInsecure: false))
        do {
            _ = try conversation.server("535 5.7.8 Error: authentication failed\r\n")
            Issue.record("535 must throw")
        } catch {
            #expect(error == .authenticationFailed(mechanism: "PLAIN", reply: reply(535, "5.7.8", "Error: authentication failed"), serverDetail: nil))
            #expect(!error.isTransient)
            #expect(!error.description.contains("tanstaaf"))
        }
        #expect(conversation.machine.state == .ready)
        #expect(!conversation.machine.isAuthenticated)
        conversation.client(try conversation.machine.quit())
    }

    @Test func temporaryAuthenticationFailureIsTransient() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.plain, Self.password), allowInsecure: false))
        let error = #expect(throws: SMTPError.self) { try conversation.server("454 4.7.0 Temporary authentication failure\r\n") }
        #expect(error?.isTransient == true)
    }

    @Test func loginSuccess() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.login, Self.password), allowInsecure: false))
        #expect(conversation.takeSent() == "AUTH LOGIN\r\n")
        #expect(try conversation.server("334 VXNlcm5hbWU6\r\n").isEmpty)
        #expect(conversation.takeSent() == "dGlt\r\n")
        #expect(try conversation.server("334 UGFzc3dvcmQ6\r\n").isEmpty)
        #expect(conversation.takeSent() == Data("tanstaaftanstaaf".utf8).base64EncodedString() + "\r\n")
        #expect(try conversation.server("235 2.7.0 ok\r\n") == [.authenticated])
    }

    @Test func loginFailure() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.login, Self.password), allowInsecure: false))
        _ = try conversation.server("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n")
        #expect(throws: SMTPError.authenticationFailed(mechanism: "LOGIN", reply: reply(535, "5.7.8", "bad"), serverDetail: nil)) {
            try conversation.server("535 5.7.8 bad\r\n")
        }
    }

    @Test func cramMD5MatchesRFC2195() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.cramMD5, Self.password), allowInsecure: false))
        #expect(conversation.takeSent() == "AUTH CRAM-MD5\r\n")
        let challenge = Data("<1896.697170952@postoffice.reston.mci.net>".utf8).base64EncodedString()
        #expect(try conversation.server("334 \(challenge)\r\n").isEmpty)
        // The example of RFC 2195 section 2.
        #expect(conversation.takeSent() == "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n")
        #expect(try conversation.server("235 ok\r\n") == [.authenticated])
    }

    @Test func cramMD5Failure() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.cramMD5, Self.password), allowInsecure: false))
        _ = try conversation.server("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n")
        #expect(throws: SMTPError.self) { try conversation.server("535 5.7.8 bad\r\n") }
        #expect(conversation.machine.state == .ready)
    }

    @Test func xoauth2Success() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.xoauth2, Self.token), allowInsecure: false))
        let initial = Data("user=someone@example.com\u{1}auth=Bearer ya29.secret-token\u{1}\u{1}".utf8).base64EncodedString()
        #expect(conversation.takeSent() == "AUTH XOAUTH2 \(initial)\r\n")
        #expect(try conversation.server("235 2.7.0 Accepted\r\n") == [.authenticated])
    }

    @Test func xoauth2FailureSendsAnEmptyLineThenReportsTheServersDocument() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.xoauth2, Self.token), allowInsecure: false))
        _ = conversation.takeSent()
        let document = #"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#
        #expect(try conversation.server("334 \(Data(document.utf8).base64EncodedString())\r\n").isEmpty)
        #expect(conversation.takeSent() == "\r\n")
        do {
            _ = try conversation.server("535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 Learn more\r\n")
            Issue.record("535 must throw")
        } catch {
            guard case .authenticationFailed("XOAUTH2", let reply, let detail) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(reply.code == 535 && reply.lines == ["Username and Password not accepted.", "Learn more"])
            #expect(detail == document)
            #expect(!error.description.contains("ya29"))
        }
    }

    @Test func aServerThatKeepsChallengingIsCancelled() throws {
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.login, Self.password), allowInsecure: false))
        _ = try conversation.server(String(repeating: "334 UGFzc3dvcmQ6\r\n", count: SASLClient.maxChallenges + 1))
        #expect(conversation.takeSent().hasSuffix("*\r\n"))
    }

    @Test func aSecretInClearNeedsTheExplicitOptInWithoutTLS() throws {
        var conversation = try Self.authReady(encrypted: false)
        #expect(throws: SMTPError.insecureAuthenticationRefused) {
            try conversation.machine.authenticate(try Self.sasl(.plain, Self.password), allowInsecure: false)
        }
        // CRAM-MD5 keeps the password off the wire: no opt-in needed.
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.cramMD5, Self.password), allowInsecure: false))
        #expect(conversation.takeSent() == "AUTH CRAM-MD5\r\n")
    }

    @Test func mechanismMustBeOfferedAndFitTheSecret() throws {
        var conversation = try Conversation.ready(["AUTH LOGIN"], encrypted: true)
        #expect(throws: SMTPError.notSupported("AUTH PLAIN")) {
            try conversation.machine.authenticate(try Self.sasl(.plain, Self.password), allowInsecure: false)
        }
        #expect(throws: AuthenticationUnavailable.noFittingSecret(wanted: ["PLAIN"], available: [.bearerToken])) {
            try Self.sasl(.plain, Self.token)
        }
    }

    @Test func secretsStayOutOfLogsAndDescriptions() throws {
        for credentials in [Self.password, Self.token] {
            #expect(!"\(credentials)".contains("tanstaaf") && !"\(credentials)".contains("ya29"))
            #expect(!String(reflecting: credentials).contains("tanstaaf") && !String(reflecting: credentials).contains("ya29"))
            var dumped = ""
            dump(credentials, to: &dumped)
            #expect(!dumped.contains("tanstaaf") && !dumped.contains("ya29"))
        }
        var conversation = try Self.authReady()
        conversation.client(try conversation.machine.authenticate(try Self.sasl(.login, Self.password), allowInsecure: false))
        _ = try conversation.server("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n")
        var xoauth = try Self.authReady()
        xoauth.client(try xoauth.machine.authenticate(try Self.sasl(.xoauth2, Self.token), allowInsecure: false))
        for line in conversation.logged + xoauth.logged {
            #expect(!line.contains(Data("tanstaaftanstaaf".utf8).base64EncodedString()))
        }
        #expect(conversation.logged == ["AUTH LOGIN", "(SASL response) ****", "(SASL response) ****"])
        let secretCommand = SMTPCommand.auth(mechanism: "PLAIN", initialResponse: "AHRpbQB0YW5zdGFhZg==")
        #expect("\(secretCommand)" == "AUTH PLAIN ****" && String(reflecting: secretCommand) == "AUTH PLAIN ****")
        let write = SMTPClientStateMachine.Action.write(ByteBuffer(string: "AUTH PLAIN AHRpbQB0YW5zdGFhZg==\r\n"), logDescription: "AUTH PLAIN ****")
        #expect(!"\(write)".contains("AHRpbQB0YW5zdGFhZg"))
        #expect(xoauth.logged == ["AUTH XOAUTH2 ****"])
    }
}
