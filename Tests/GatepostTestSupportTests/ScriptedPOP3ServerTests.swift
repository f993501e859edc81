import GatepostPOP3
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
