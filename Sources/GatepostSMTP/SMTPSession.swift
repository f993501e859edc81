import Foundation
import GatepostWire
import Logging
import NIOCore
import NIOFileSystem
import NIOPosix
import NIOSSL

/// An open SMTP connection, driven from one task. Obtain one with ``SMTPClient/withSession``,
/// which has already read the greeting, sent EHLO, started TLS and authenticated as configured.
public final class SMTPSession {
    public let configuration: SMTPConnectionConfiguration
    public var greeting: SMTPReply? { machine.greeting }
    /// What the latest EHLO reply offered (after STARTTLS: the reply over TLS).
    public var capabilities: SMTPCapabilities { machine.capabilities }
    public var isEncrypted: Bool { machine.isEncrypted }
    public var isAuthenticated: Bool { machine.isAuthenticated }

    /// Encoded message data is written in pieces of about this size: large enough to keep the
    /// connection busy, small enough to keep memory flat whatever the message size.
    static let writeChunkSize = 64 * 1024

    private var machine: SMTPClientStateMachine
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let channel: any Channel
    private var actions: [SMTPClientStateMachine.Action] = []
    private var actionHead = 0
    private let logger: Logger
    private let timeout: ServerSilenceTimeout
    /// Bytes read from the connection so far, to tell injected plaintext at STARTTLS.
    private var bytesRead = 0
    /// For tests: runs after the 220 to STARTTLS, before TLS is put in place (to wait until
    /// injected plaintext has reached the session's stream); it gets the bytes read so far.
    var beforeTLSUpgrade: ((ServerSilenceTimeout, Int) async -> Void)?

    init(
        configuration: SMTPConnectionConfiguration,
        clientName: String,
        channel: any Channel,
        timeout: ServerSilenceTimeout,
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        logger: Logger
    ) {
        self.configuration = configuration
        machine = SMTPClientStateMachine(
            clientName: clientName, connectionIsEncrypted: configuration.security == .tls, limits: configuration.limits
        )
        self.channel = channel
        self.timeout = timeout
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.logger = logger
    }

    // MARK: - Driving the state machine

    /// The next action the caller has to act on; writes are carried out on the way.
    private func nextAction() async throws(SMTPError) -> SMTPClientStateMachine.Action {
        while true {
            while actionHead < actions.count {
                let action = actions[actionHead]
                actionHead += 1
                guard case .write(let bytes, let description) = action else { return action }
                try await write(bytes, logDescription: description)
            }
            actions.removeAll(keepingCapacity: true)
            actionHead = 0
            let received: ByteBuffer?
            // The timeout counts only while we wait here (and the server sends nothing).
            timeout.beginWaiting()
            do {
                received = try await inbound.next()
                timeout.endWaiting()
            } catch {
                timeout.endWaiting()
                throw mapTransportError(error, during: machine.currentPhase)
            }
            guard var buffer = received else {
                let phase = machine.currentPhase
                // Our own timeout closed the connection: that is the cause to report.
                if timeout.hasFired { throw SMTPError.timeout(during: phase) }
                // A failed TLS handshake closes the connection: its error is the cause.
                if let error = timeout.caughtError { throw mapTransportError(error, during: phase) }
                throw machine.connectionClosed() ?? SMTPError.connectionClosed(during: phase)
            }
            bytesRead += buffer.readableBytes
            actions = try machine.receive(&buffer)
        }
    }

    /// Carries out the write a command call returned.
    private func perform(_ action: SMTPClientStateMachine.Action) async throws(SMTPError) {
        guard case .write(let bytes, let description) = action else {
            throw SMTPError.invalidState("expected bytes to write, got \(action)")
        }
        try await write(bytes, logDescription: description)
    }

    private func write(_ bytes: ByteBuffer, logDescription: String) async throws(SMTPError) {
        logger.trace("SMTP >", metadata: ["command": "\(logDescription)"])
        do {
            try await outbound.write(bytes)
        } catch {
            let phase = machine.currentPhase
            throw await reasonTheChannelClosed(during: phase) ?? mapTransportError(error, during: phase)
        }
    }

    /// A write fails once the channel is closed, but why it closed (a failed TLS handshake, a
    /// timeout) was delivered to the reading side: that is what the operator needs to see.
    private func reasonTheChannelClosed(during phase: String) async -> SMTPError? {
        guard !channel.isActive else { return nil }
        do {
            // Whatever the server sent before the failure no longer matters.
            while try await inbound.next() != nil {}
            return nil
        } catch {
            let reason = mapTransportError(error, during: phase)
            switch reason {
            case .tlsFailed, .timeout: return reason
            default: return nil
            }
        }
    }

    private func mapTransportError(_ error: any Error, during phase: String) -> SMTPError {
        if let error = error as? SMTPError { return error }
        if error is ServerSilenceTimeout.Fired || timeout.hasFired { return .timeout(during: phase) }
        // A write onto a connection a failed TLS handshake closed: the handshake is the cause.
        let isTLS: (any Error) -> Bool = { $0 is NIOSSLError || $0 is BoringSSLError || $0 is NIOSSLExtraError }
        let error = isTLS(error) ? error : (timeout.caughtError.flatMap { isTLS($0) ? $0 : nil } ?? error)
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return .tlsFailed(SMTPTransport.describeTLS(error))
        }
        if let error = error as? IOError { return .connectionClosed(during: "\(phase) (\(error.description))") }
        return .connectionClosed(during: "\(phase) (\(error))")
    }

    private func unexpected(_ action: SMTPClientStateMachine.Action, during phase: String) -> SMTPError {
        .invalidState("unexpected \(action) during \(phase)")
    }

    // MARK: - Session steps

    /// Greeting, EHLO, STARTTLS and AUTH as configured.
    func open(credentials: SASLCredentials?) async throws(SMTPError) {
        try await awaitReady(during: "the greeting")
        logger.debug("SMTP server ready", metadata: [
            "greeting": "\(greeting?.description ?? "")", "extensions": "\(capabilities.lines.joined(separator: ", "))",
        ])
        if configuration.security == .starttls {
            guard capabilities.supportsStartTLS else {
                throw SMTPError.notSupported("STARTTLS, which the configuration requires (security: starttls)")
            }
            try await startTLS()
        }
        if let credentials {
            try await authenticate(credentials)
        }
    }

    private func awaitReady(during phase: String) async throws(SMTPError) {
        let action = try await nextAction()
        guard case .ready = action else { throw unexpected(action, during: phase) }
    }

    /// STARTTLS, the TLS handshake (certificate chain and host name verified), and EHLO again.
    public func startTLS() async throws(SMTPError) {
        try await perform(try machine.startTLS())
        let action = try await nextAction()
        guard case .startTLS = action else { throw unexpected(action, during: "STARTTLS") }
        await beforeTLSUpgrade?(timeout, bytesRead)
        let inClear = try await SMTPTransport.upgradeToTLS(channel, configuration: configuration, silence: timeout)
        // Bytes that came after 220 and before TLS are not the server's answer over TLS.
        guard inClear == bytesRead else {
            throw SMTPError.protocolViolation("\(inClear - bytesRead) bytes of plain text arrived after the STARTTLS reply, before the TLS handshake (an injection attempt?)")
        }
        try await perform(try machine.tlsEstablished())
        // The handshake runs when EHLO is written; its failure surfaces on this read.
        try await awaitReady(during: "EHLO after STARTTLS")
        logger.debug("SMTP TLS established", metadata: ["extensions": "\(capabilities.lines.joined(separator: ", "))"])
    }

    /// AUTH with the configured mechanism, or the best one the server offers for `credentials`
    /// (the rule POP3 uses too: ``AuthenticationChoice``).
    public func authenticate(_ credentials: SASLCredentials) async throws(SMTPError) {
        let offered = capabilities.authMechanisms
        let encrypted = isEncrypted
        guard !offered.isEmpty else { throw SMTPError.notSupported("AUTH (the EHLO reply offers no mechanism)") }
        let mechanism: SASLMechanism
        let exchange: SASLClient
        do {
            mechanism = try AuthenticationChoice.choose(
                from: configuration.authMechanism.map { [$0] } ?? SASLMechanism.defaultPreference(connectionIsEncrypted: encrypted),
                available: [credentials.secret.kind],
                isOffered: { offered.contains($0.rawValue) && ($0 != .external || encrypted) },
                offeredDescription: offered.joined(separator: " "),
                connectionIsEncrypted: encrypted,
                allowCleartext: configuration.allowInsecureAuth
            )
            exchange = try SASLClient(mechanism: mechanism, credentials: credentials, host: configuration.host, port: configuration.port)
        } catch {
            throw SMTPError(error)
        }
        try await perform(try machine.authenticate(exchange, allowInsecure: configuration.allowInsecureAuth))
        let action = try await nextAction()
        guard case .authenticated = action else { throw unexpected(action, during: "AUTH") }
        logger.debug("SMTP authenticated", metadata: ["user": "\(credentials.user)", "mechanism": "\(mechanism.rawValue)"])
    }

    /// Sends one message. `message` is the message as RFC 5322 bytes (header, blank line, body),
    /// in chunks of any size; it is dot-stuffed and line-end normalised on the way and never held
    /// whole. `messageSize` (octets), when known, is declared with SIZE=.
    ///
    /// Returns when the server took the message for at least one recipient; the result lists
    /// every recipient's reply. Throws ``SMTPError/messageRefused(_:)`` when it took it for none
    /// (the session stays usable), other ``SMTPError``s when the session broke, and the message
    /// sequence's own error when reading the message failed (the connection is dropped then,
    /// since ending the data would deliver a truncated message).
    public func send<Message: AsyncSequence>(
        envelope: SMTPEnvelope, message: Message, messageSize: Int? = nil
    ) async throws -> SMTPSendResult where Message.Element == ByteBuffer {
        try await perform(try machine.beginTransaction(envelope, messageSize: messageSize))
        switch try await nextAction() {
        case .sendMessageBody:
            break
        case .transactionFailed(let failure):
            throw SMTPError.messageRefused(failure)
        case let action:
            throw unexpected(action, during: "MAIL FROM")
        }
        try await streamMessage(message)
        try machine.messageBodySent()
        timeout.setTimeout(configuration.finalReplyTimeout)
        let action = try await nextAction()
        timeout.setTimeout(configuration.readTimeout)
        switch action {
        case .transactionCompleted(let result):
            logger.debug("SMTP message accepted", metadata: [
                "accepted": "\(result.acceptedRecipients.count)", "refused": "\(result.refusedRecipients.count)",
                "reply": "\(result.finalReply)",
            ])
            return result
        case .transactionFailed(let failure):
            throw SMTPError.messageRefused(failure)
        default:
            throw unexpected(action, during: "the end of the message data")
        }
    }

    /// Sends the file at `path`, read from disk in chunks while it is sent; its size is declared
    /// with SIZE=.
    public func send(envelope: SMTPEnvelope, messageFileAt path: String, chunkSize: Int = 128 * 1024) async throws(SMTPError) -> SMTPSendResult {
        do {
            return try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
                let size = try await handle.info().size
                return try await send(
                    envelope: envelope,
                    message: handle.readChunks(chunkLength: .bytes(Int64(chunkSize))),
                    messageSize: Int(size)
                )
            }
        } catch let error as SMTPError {
            throw error
        } catch {
            throw SMTPError.messageSourceFailed("\(path): \(error)")
        }
    }

    /// Sends the file `url` names, streamed from disk like ``send(envelope:messageFileAt:chunkSize:)``.
    public func send(envelope: SMTPEnvelope, messageFile url: URL, chunkSize: Int = 128 * 1024) async throws(SMTPError) -> SMTPSendResult {
        guard url.isFileURL else { throw SMTPError.invalidArgument("\(url) is not a file URL") }
        return try await send(envelope: envelope, messageFileAt: url.path, chunkSize: chunkSize)
    }

    private func streamMessage<Message: AsyncSequence>(_ message: Message) async throws where Message.Element == ByteBuffer {
        var encoder = SMTPDataEncoder()
        var pending = channel.allocator.buffer(capacity: Self.writeChunkSize + 1024)
        var chunks = message.makeAsyncIterator()
        var bytesRead = 0
        while true {
            let chunk: ByteBuffer?
            do {
                chunk = try await chunks.next()
            } catch {
                // Half a message must not be delivered: drop the connection instead of ending the data.
                logger.warning("SMTP message source failed, dropping the connection", metadata: ["error": "\(error)"])
                machine.abandon()
                try? await channel.close()
                throw error
            }
            guard let chunk else { break }
            bytesRead += chunk.readableBytes
            encoder.encode(chunk, into: &pending)
            if pending.readableBytes >= Self.writeChunkSize {
                try await write(pending, logDescription: "(message data)")
                pending = channel.allocator.buffer(capacity: Self.writeChunkSize + 1024)
            }
        }
        encoder.finish(into: &pending)
        try await write(pending, logDescription: "(message data, end: \(bytesRead) bytes)")
    }

    /// RSET: clears the server's transaction state.
    public func reset() async throws(SMTPError) {
        try await perform(try machine.reset())
        let action = try await nextAction()
        guard case .resetCompleted = action else { throw unexpected(action, during: "RSET") }
    }

    /// QUIT, when the session is in a state that allows it.
    public func quit() async throws(SMTPError) {
        try await perform(try machine.quit())
        let action = try await nextAction()
        guard case .closeConnection = action else { throw unexpected(action, during: "QUIT") }
    }

    /// Ends the session politely if it still can; a failure to do so changes nothing for the caller.
    func quitIfPossible() async {
        guard machine.state == .ready else { return }
        do {
            try await quit()
        } catch {
            logger.debug("SMTP QUIT failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Entry point: connect, greet, secure, authenticate, run `body`, QUIT, close.
public enum SMTPClient {
    /// - Parameters:
    ///   - credentials: nil to send without AUTH (a relay that trusts the network).
    ///   - body: sends messages with ``SMTPSession/send(envelope:message:messageSize:)``.
    public static func withSession<Result: Sendable>(
        _ configuration: SMTPConnectionConfiguration,
        credentials: SASLCredentials?,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        _ body: (SMTPSession) async throws -> Result
    ) async throws -> Result {
        try await withSession(configuration, credentials: credentials, group: group, logger: logger, prepare: { _ in }, body)
    }

    /// `prepare` gets the session before it is opened (tests set their hooks there).
    static func withSession<Result: Sendable>(
        _ configuration: SMTPConnectionConfiguration,
        credentials: SASLCredentials?,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        prepare: (SMTPSession) -> Void,
        _ body: (SMTPSession) async throws -> Result
    ) async throws -> Result {
        let timeout = ServerSilenceTimeout(timeout: configuration.readTimeout)
        let connection = try await SMTPTransport.connect(configuration, group: group, timeout: timeout)
        let channel = connection.channel
        let clientName = configuration.clientName ?? SMTPTransport.defaultClientName(localAddress: channel.localAddress)
        return try await connection.executeThenClose { inbound, outbound in
            let session = SMTPSession(
                configuration: configuration, clientName: clientName, channel: channel, timeout: timeout,
                inbound: inbound, outbound: outbound, logger: logger
            )
            prepare(session)
            // A cancelled task closes the connection, which ends any read or write in progress
            // at once; a message whose data was not ended is not delivered.
            return try await withTaskCancellationHandler {
                let result: Result
                do {
                    try await session.open(credentials: credentials)
                    result = try await body(session)
                } catch {
                    await session.quitIfPossible()
                    throw error
                }
                await session.quitIfPossible()
                return result
            } onCancel: {
                channel.close(promise: nil)
            }
        }
    }
}
