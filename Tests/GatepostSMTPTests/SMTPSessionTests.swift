import Foundation
import GatepostWire
import Logging
import NIOCore
import GatepostTestSupport
import Testing
@testable import GatepostSMTP

/// The session against the in-process scripted server over real sockets on 127.0.0.1.
@Suite struct SMTPSessionTests {
    static func configuration(port: Int, allowInsecureAuth: Bool = true) -> SMTPConnectionConfiguration {
        SMTPConnectionConfiguration(
            host: "127.0.0.1", port: port, security: .none,
            connectTimeout: .seconds(5), readTimeout: .seconds(10),
            clientName: "client.test", allowInsecureAuth: allowInsecureAuth
        )
    }

    static let logger = Logger(label: "smtp-test")

    /// An async sequence of chunks, the way a caller streams a message it produces.
    static func chunks(_ pieces: [String]) -> AsyncStream<ByteBuffer> {
        AsyncStream { continuation in
            for piece in pieces { continuation.yield(ByteBuffer(string: piece)) }
            continuation.finish()
        }
    }

    @Test func sendsToTwoRecipientsWhenOneIsRefused() async throws {
        var script = ScriptedSMTPServer.Script()
        script.refusedRecipients["nobody@partner.example"] = "550 5.1.1 <nobody@partner.example>: Recipient address rejected: User unknown"
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }

        let message = ["Subject: report\r\n", "\r\n.leading dot\nbare", " LF line\r\n..two dots\r\nlast line"]
        let credentials = SASLCredentials(user: "mailer", password: "s3cret-Pa55")
        let result = try await SMTPClient.withSession(Self.configuration(port: port), credentials: credentials, logger: Self.logger) { session in
            #expect(session.isAuthenticated)
            #expect(!session.isEncrypted)
            #expect(session.capabilities.supportsPipelining)
            return try await session.send(
                envelope: SMTPEnvelope(from: "gatepost@sender.example", recipients: ["ops@partner.example", "nobody@partner.example"]),
                message: Self.chunks(message),
                messageSize: message.joined().utf8.count
            )
        }
        #expect(result.recipients.map(\.recipient) == ["ops@partner.example", "nobody@partner.example"])
        #expect(result.recipients.map(\.status) == [.accepted, .refusedPermanently])
        #expect(result.recipients[1].reply.code == 550)
        #expect(result.recipients[1].reply.enhancedStatusCode?.description == "5.1.1")
        #expect(result.acceptedRecipients == ["ops@partner.example"])
        #expect(result.finalReply.code == 250)
        #expect(result.finalReply.text.contains("queued as 4Bx7Yq1Z2"))

        let recorded = await server.recordedThroughQuit()
        #expect(recorded.commands == [
            "EHLO client.test",
            "AUTH PLAIN \(Data("\0mailer\0s3cret-Pa55".utf8).base64EncodedString())",
            "MAIL FROM:<gatepost@sender.example> SIZE=\(message.joined().utf8.count) BODY=8BITMIME",
            "RCPT TO:<ops@partner.example>",
            "RCPT TO:<nobody@partner.example>",
            "DATA",
            "QUIT",
        ])
        #expect(recorded.messages.count == 1)
        let expected = "Subject: report\r\n\r\n.leading dot\r\nbare LF line\r\n..two dots\r\nlast line\r\n"
        #expect(String(decoding: unstuffed(recorded.messages.first ?? []), as: UTF8.self) == expected)
        #expect(String(decoding: recorded.messages.first ?? [], as: UTF8.self).contains("\r\n..leading dot\r\n"))
    }

    @Test func streamsAFileFromDisk() async throws {
        let server = ScriptedSMTPServer()
        let port = try await server.start()
        defer { Task { await server.stop() } }
        // About 3 MiB with a dot at the start of every other line.
        var content = "Subject: big\r\n\r\n"
        for index in 0..<60_000 {
            content += index.isMultiple(of: 2) ? ".line \(index) of the report with some padding text\r\n" : "line \(index) of the report\r\n"
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("gatepost-smtp-\(UUID().uuidString).eml")
        try Data(content.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        let result = try await SMTPClient.withSession(Self.configuration(port: port), credentials: nil, logger: Self.logger) { session in
            try await session.send(envelope: SMTPEnvelope(from: "a@x", recipients: ["b@y"]), messageFile: url, chunkSize: 64 * 1024)
        }
        #expect(result.acceptedRecipients == ["b@y"])
        let recorded = server.recorded
        #expect(recorded.commands.contains("MAIL FROM:<a@x> SIZE=\(content.utf8.count) BODY=8BITMIME"))
        #expect(unstuffed(recorded.messages.first ?? []) == Array(content.utf8))
    }

    @Test func allRecipientsRefusedThrowsAndTheSessionGoesOn() async throws {
        var script = ScriptedSMTPServer.Script()
        script.refusedRecipients["x@y"] = "450 4.2.0 <x@y>: Recipient address rejected: Greylisted"
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }

        let second = try await SMTPClient.withSession(Self.configuration(port: port), credentials: nil, logger: Self.logger) { session in
            do {
                _ = try await session.send(envelope: SMTPEnvelope(from: "a@x", recipients: ["x@y"]), message: Self.chunks(["hi"]))
                Issue.record("a message without any accepted recipient must throw")
            } catch let error as SMTPError {
                guard case .messageRefused(let failure) = error else { throw error }
                #expect(failure.stage == .recipients)
                #expect(error.isTransient)
            }
            return try await session.send(envelope: SMTPEnvelope(from: "a@x", recipients: ["ok@y"]), message: Self.chunks(["hi"]))
        }
        #expect(second.acceptedRecipients == ["ok@y"])
        // The refused transaction was reset and the next one went through on the same session.
        // (Whether the server has read the closing QUIT yet depends on scheduling; not the point.)
        let commands = await server.recordedThroughQuit().commands
        let expected = ["RSET", "MAIL FROM:<a@x> BODY=8BITMIME", "RCPT TO:<ok@y>", "DATA"]
        let start = commands.firstIndex(of: "RSET")
        #expect(start.map { Array(commands[$0...].prefix(4)) } == expected, "\(commands)")
    }

    @Test func authOverPlainTextIsRefusedWithoutTheOptIn() async throws {
        let server = ScriptedSMTPServer()
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let credentials = SASLCredentials(user: "mailer", password: "s3cret-Pa55")
        await #expect(throws: SMTPError.insecureAuthenticationRefused) {
            try await SMTPClient.withSession(Self.configuration(port: port, allowInsecureAuth: false), credentials: credentials, logger: Self.logger) { _ in }
        }
        let recorded = await server.recordedThroughQuit()
        #expect(!recorded.commands.contains { $0.hasPrefix("AUTH") })
        #expect(recorded.commands.last == "QUIT")
    }

    @Test func startTLSRequiredButNotOfferedIsRefused() async throws {
        let server = ScriptedSMTPServer()
        let port = try await server.start()
        defer { Task { await server.stop() } }
        var configuration = Self.configuration(port: port)
        configuration.security = .starttls
        await #expect(throws: SMTPError.notSupported("STARTTLS, which the configuration requires (security: starttls)")) {
            try await SMTPClient.withSession(configuration, credentials: nil, logger: Self.logger) { _ in }
        }
    }

    @Test func aSilentServerTimesOut() async throws {
        var script = ScriptedSMTPServer.Script()
        script.silentFrom = "MAIL FROM"
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }
        var configuration = Self.configuration(port: port)
        // Long enough that a loaded machine (the whole suite on two cores) still gets through
        // the greeting and EHLO; the silence at MAIL FROM is what must time out.
        configuration.readTimeout = .seconds(5)
        let started = ContinuousClock.now
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient.withSession(configuration, credentials: nil, logger: Self.logger) { session in
                try await session.send(envelope: SMTPEnvelope(from: "a@x", recipients: ["b@y"]), message: Self.chunks(["hi"]))
            }
        }
        #expect(error == .timeout(during: "MAIL FROM"))
        // Far below the 300 s default, with room for a machine busy with the 1 GiB test.
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func anEndlessReplyLineIsRefusedInBoundedMemory() async throws {
        var script = ScriptedSMTPServer.Script()
        script.endlessReplyOn = "MAIL FROM"
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient.withSession(Self.configuration(port: port), credentials: nil, logger: Self.logger) { session in
                try await session.send(envelope: SMTPEnvelope(from: "a@x", recipients: ["b@y"]), message: Self.chunks(["hi"]))
            }
        }
        guard case .malformedReply(.lineTooLong)? = error else {
            Issue.record("expected a reply line that is too long, got \(String(describing: error))")
            return
        }
        #expect(error?.isTransient == false)
    }

    @Test func aServerThatShutsDownInTheMiddleOfTheDataIsATemporaryFailure() async throws {
        var script = ScriptedSMTPServer.Script()
        script.closeWith421AfterDataLines = 3
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let lines = (1...2000).map { "line \($0) of a message that is long enough to be sent in several writes\r\n" }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient.withSession(Self.configuration(port: port), credentials: nil, logger: Self.logger) { session in
                try await session.send(envelope: SMTPEnvelope(from: "a@x", recipients: ["b@y"]), message: Self.chunks(lines))
            }
        }
        // Not delivered, and worth another try later: the outbox keeps the message.
        #expect(error?.isTransient == true, "\(String(describing: error))")
        #expect(server.recorded.messages.isEmpty)
    }

    @Test func aFailingMessageSourceDropsTheConnectionWithoutEndingTheData() async throws {
        struct SourceBroke: Error {}
        let server = ScriptedSMTPServer()
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let source = AsyncThrowingStream<ByteBuffer, any Error> { continuation in
            continuation.yield(ByteBuffer(string: "Subject: half\r\n\r\nfirst half\r\n"))
            continuation.finish(throwing: SourceBroke())
        }
        await #expect(throws: SourceBroke.self) {
            try await SMTPClient.withSession(Self.configuration(port: port), credentials: nil, logger: Self.logger) { session in
                try await session.send(envelope: SMTPEnvelope(from: "a@x", recipients: ["b@y"]), message: source)
            }
        }
        // Give the server a moment to see the connection go.
        try await Task.sleep(for: .milliseconds(100))
        #expect(server.recorded.messages.isEmpty)
        #expect(!server.recorded.commands.contains("QUIT"))
    }
}

/// Unstuffs what the server received, the way a server does.
func unstuffed(_ data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var atLineStart = true
    for byte in data {
        if atLineStart && byte == UInt8(ascii: ".") {
            atLineStart = false
            continue
        }
        out.append(byte)
        atLineStart = byte == 0x0A
    }
    return out
}
