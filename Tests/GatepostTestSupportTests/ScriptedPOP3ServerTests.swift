@testable import GatepostPOP3
import GatepostTestSupport
import GatepostWire
import Logging
import NIOCore
import Testing

@Suite struct ScriptedPOP3ServerTests {
    func withSession(_ server: ScriptedPOP3Server, _ body: (POP3Session) async throws -> Void) async throws {
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let configuration = POP3ConnectionConfiguration(host: "127.0.0.1", port: port, security: .none)
        try await POP3Client.withSession(configuration, logger: Logger(label: "test")) { session in
            try await body(session)
        }
    }

    @Test func servesByteStuffedMessagesThatUnstuffExactly() async throws {
        let body: [UInt8] = Array("Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n".utf8)
        let server = ScriptedPOP3Server(messages: [.init(uidl: "u1", bytes: body)])
        try await withSession(server) { session in
            try await session.authenticate(.user, credentials: SASLCredentials(user: server.user, password: server.password), allowPlaintext: true)
            #expect(try await session.stat() == (1, body.count))
            #expect(try await session.uniqueIDs() == [POP3ListingEntry(number: 1, value: "u1")])
            var received: [UInt8] = []
            try await session.retrieve(1) { chunk in received += chunk.readableBytesView }
            #expect(received == body)
            try await session.delete(1)
            try await session.quit()
        }
        #expect(server.messages.isEmpty)
    }

    @Test func deletionsWithoutQuitAreForgotten() async throws {
        let server = ScriptedPOP3Server(messages: DemoMailbox.messages)
        try await withSession(server) { session in
            try await session.authenticate(.plain, credentials: SASLCredentials(user: server.user, password: server.password), allowPlaintext: true)
            try await session.delete(1)
        }
        #expect(server.messages.count == DemoMailbox.messages.count)
    }

    @Test func overridesInjectResponseCodes() async throws {
        var behavior = ScriptedPOP3Server.Behavior()
        behavior.override = { $0.hasPrefix("PASS") ? "-ERR [IN-USE] mailbox locked" : nil }
        let server = ScriptedPOP3Server(messages: [], behavior: behavior)
        try await withSession(server) { session in
            await #expect(throws: POP3Error.serverError(command: "authentication", status: POP3StatusLine(isOK: false, code: "IN-USE", text: "mailbox locked"))) {
                try await session.authenticate(.user, credentials: SASLCredentials(user: server.user, password: server.password), allowPlaintext: true)
            }
        }
    }
}

/// Plaintext a man in the middle sends after `+OK` to STLS, in a segment of its own that has
/// reached the client before TLS is put in place, is never read as the server's answer over TLS.
@Suite struct STLSInjectionTests {
    @Test func plaintextAfterTheSTLSReplyFailsTheSession() async throws {
        var behavior = ScriptedPOP3Server.Behavior()
        behavior.capabilities = ["USER", "STLS"]
        behavior.override = { $0 == "STLS" ? "+OK Begin TLS negotiation" : nil }
        let injected = "+OK forged capabilities\r\nSASL PLAIN\r\n.\r\n"
        behavior.injectAfter = { $0 == "STLS" ? injected : nil }
        let server = ScriptedPOP3Server(messages: [], behavior: behavior)
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let configuration = POP3ConnectionConfiguration(host: "127.0.0.1", port: port, security: .starttls, readTimeout: .seconds(30))
        let error = await #expect(throws: POP3Error.self) {
            try await POP3Client.withSession(configuration, logger: Logger(label: "test")) { session in
                _ = try await session.loadCapabilities()
                // The +OK was read alone; now the injection is sent, and the session waits, by
                // the bytes counted, not by time, until it is in its stream: the very case that
                // raced before.
                session.beforeTLSUpgrade = { silence, read in
                    server.sendInjections()
                    while silence.bytesDeliveredSoFar < read + injected.utf8.count { try? await Task.sleep(for: .milliseconds(2)) }
                }
                try await session.startTLS()
            }
        }
        guard case .protocolViolation(let what)? = error else {
            Issue.record("expected a protocol violation, got \(String(describing: error))")
            return
        }
        #expect(what.contains("\(injected.utf8.count) bytes of plain text arrived after +OK to STLS"))
    }
}
