import Crypto
import Foundation
import GatepostWire
import Logging
import NIOCore
import NIOSSL
import GatepostTestSupport
import Testing
import X509
@testable import GatepostSMTP

@Suite struct SMTPTLSTests {
    static let logger = Logger(label: "smtp-tls-test")
    static let credentials = SASLCredentials(user: "mailer", password: "s3cret-Pa55")

    static func configuration(port: Int, security: SMTPConnectionConfiguration.Security, pki: TestPKI) -> SMTPConnectionConfiguration {
        // "localhost" so that the host name is checked against the certificate.
        SMTPConnectionConfiguration(
            host: "localhost", port: port, security: security, tls: pki.clientTLS(),
            connectTimeout: .seconds(5), readTimeout: .seconds(10), clientName: "client.test"
        )
    }

    static func send(_ session: SMTPSession) async throws -> SMTPSendResult {
        try await session.send(
            envelope: SMTPEnvelope(from: "a@x", recipients: ["b@y"]),
            message: AsyncStream { continuation in
                continuation.yield(ByteBuffer(string: "Subject: tls\r\n\r\nhello\r\n"))
                continuation.finish()
            }
        )
    }

    @Test func startTLSThenEHLOAgainThenAuthWithoutTheInsecureOptIn() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        var script = ScriptedSMTPServer.Script()
        script.startTLS = try pki.serverContext(hostName: "localhost")
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }

        let result = try await SMTPClient.withSession(
            Self.configuration(port: port, security: .starttls, pki: pki), credentials: Self.credentials, logger: Self.logger
        ) { session in
            #expect(session.isEncrypted)
            #expect(session.isAuthenticated)
            // The capabilities are the ones given over TLS.
            #expect(!session.capabilities.supportsStartTLS)
            return try await Self.send(session)
        }
        #expect(result.acceptedRecipients == ["b@y"])
        let recorded = server.recorded
        #expect(recorded.commands.prefix(3) == ["EHLO client.test", "STARTTLS", "EHLO client.test"])
        // The password went over TLS only.
        #expect(recorded.encryptedCommands.first == "EHLO client.test")
        #expect(recorded.encryptedCommands.contains { $0.hasPrefix("AUTH PLAIN ") })
        #expect(!recorded.commands.prefix(2).contains { $0.hasPrefix("AUTH") })
    }

    /// Plaintext injected after the 220 to STARTTLS, in a segment of its own that has reached
    /// the client before TLS is in place, is never read as the server's answer over TLS.
    @Test func plaintextAfterTheStartTLSReplyFailsTheSession() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        var script = ScriptedSMTPServer.Script()
        script.startTLS = try pki.serverContext(hostName: "localhost")
        let injected = "250-forged.example\r\n250 AUTH PLAIN\r\n"
        script.injectAfterStartTLS = injected
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient.withSession(
                Self.configuration(port: port, security: .starttls, pki: pki), credentials: Self.credentials, logger: Self.logger,
                prepare: { session in
                    // The 220 was read alone; now the injection is sent, and the session waits,
                    // by the bytes counted, not by time, until it is in its stream: the very case
                    // that raced before.
                    session.beforeTLSUpgrade = { silence, read in
                        server.sendInjections()
                        while silence.bytesDeliveredSoFar < read + injected.utf8.count { try? await Task.sleep(for: .milliseconds(2)) }
                    }
                }
            ) { _ in }
        }
        guard case .protocolViolation(let what)? = error else {
            Issue.record("expected a protocol violation, got \(String(describing: error))")
            return
        }
        #expect(what.contains("\(injected.utf8.count) bytes of plain text arrived after the STARTTLS reply"))
        #expect(!server.recorded.commands.contains { $0.hasPrefix("AUTH") }, "no password after a failed upgrade")
    }

    @Test func implicitTLS() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        var script = ScriptedSMTPServer.Script()
        script.implicitTLS = try pki.serverContext(hostName: "localhost")
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }

        let result = try await SMTPClient.withSession(
            Self.configuration(port: port, security: .tls, pki: pki), credentials: Self.credentials, logger: Self.logger
        ) { session in
            #expect(session.isEncrypted && session.isAuthenticated)
            return try await Self.send(session)
        }
        #expect(result.finalReply.code == 250)
        #expect(server.recorded.encryptedCommands.first == "EHLO client.test")
    }

    @Test func aCertificateForAnotherHostIsRefused() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        var script = ScriptedSMTPServer.Script()
        script.startTLS = try pki.serverContext(hostName: "other.example")
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }

        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient.withSession(
                Self.configuration(port: port, security: .starttls, pki: pki), credentials: Self.credentials, logger: Self.logger
            ) { _ in }
        }
        guard case .tlsFailed? = error else {
            Issue.record("expected a TLS failure, got \(String(describing: error))")
            return
        }
        #expect(error?.description.contains("not valid for this host name") == true, "\(String(describing: error))")
        #expect(!server.recorded.commands.contains { $0.hasPrefix("AUTH") })
    }

    @Test func anUntrustedIssuerIsRefused() async throws {
        let serverPKI = try TestPKI()
        let clientPKI = try TestPKI()
        defer {
            serverPKI.remove()
            clientPKI.remove()
        }
        var script = ScriptedSMTPServer.Script()
        script.implicitTLS = try serverPKI.serverContext(hostName: "localhost")
        let server = ScriptedSMTPServer(script: script)
        let port = try await server.start()
        defer { Task { await server.stop() } }

        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient.withSession(
                Self.configuration(port: port, security: .tls, pki: clientPKI), credentials: nil, logger: Self.logger
            ) { _ in }
        }
        guard case .tlsFailed? = error else {
            Issue.record("expected a TLS failure, got \(String(describing: error))")
            return
        }
        #expect(error?.description.contains("could not be verified") == true, "\(String(describing: error))")
        #expect(server.recorded.commands.isEmpty)
    }
}
