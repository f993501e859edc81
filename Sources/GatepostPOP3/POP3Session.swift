import Foundation
import GatepostWire
import Logging
import X509
import NIOCore
import NIOPosix
import NIOSSL

/// One entry of a UIDL or LIST listing.
public struct POP3ListingEntry: Sendable, Hashable {
    public var number: Int
    public var value: String

    public init(number: Int, value: String) {
        self.number = number
        self.value = value
    }
}

/// The server certificate as `gatepost site test` shows it.
public struct POP3TLSSummary: Sendable {
    public var subject: String
    public var issuer: String?
    /// Seconds since 1970.
    public var notValidAfter: Int
    public var version: String?
}

/// What CAPA reported (RFC 2449).
public struct POP3Capabilities: Sendable, Hashable {
    public var lines: [String]

    public init(lines: [String]) {
        self.lines = lines
    }

    private func has(_ name: String) -> Bool {
        lines.contains { $0.split(separator: " ").first?.uppercased() == name }
    }

    public var supportsSTLS: Bool { has("STLS") }
    public var supportsUIDL: Bool { has("UIDL") }
    public var supportsPipelining: Bool { has("PIPELINING") }
    public var supportsUSER: Bool { has("USER") }
    /// RFC 2449 LOGIN-DELAY: the minimum seconds the server wants between logins.
    public var loginDelay: Int? {
        guard let line = lines.first(where: { $0.uppercased().hasPrefix("LOGIN-DELAY") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    public var saslMechanisms: [String] {
        guard let line = lines.first(where: { $0.uppercased().hasPrefix("SASL") }) else { return [] }
        return line.split(separator: " ").dropFirst().map { $0.uppercased() }
    }
}

/// An open POP3 connection, driven from one task. Obtain one with ``POP3Client/withSession``.
///
/// Each method sends a command and waits for its answer; `-ERR` becomes a thrown `POP3Error`.
/// Message data is handed to the caller's consumer as it arrives, so nothing is buffered whole.
public final class POP3Session {
    public let configuration: POP3ConnectionConfiguration
    public private(set) var greeting: POP3Greeting?
    public private(set) var capabilities: POP3Capabilities?
    public private(set) var isEncrypted: Bool

    private var machine = POP3ClientStateMachine()
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let channel: any Channel
    private var events: [POP3ClientStateMachine.Event] = []
    private var eventHead = 0
    private let logger: Logger

    private let readTimeout: ServerSilenceTimeout
    /// Bytes read from the connection so far, to tell injected plaintext at STLS.
    private var bytesRead = 0
    /// For tests: runs after +OK to STLS, before TLS is put in place (to wait until injected
    /// plaintext has reached the session's stream, so the test does not depend on timing).
    /// It gets the bytes the session has read so far.
    var beforeTLSUpgrade: ((ServerSilenceTimeout, Int) async -> Void)?

    init(
        configuration: POP3ConnectionConfiguration,
        channel: any Channel,
        readTimeout: ServerSilenceTimeout,
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        logger: Logger
    ) {
        self.configuration = configuration
        self.channel = channel
        self.readTimeout = readTimeout
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.logger = logger
        isEncrypted = configuration.security == .tls
    }

    // MARK: - Events

    private func nextEvent(during phase: @autoclosure () -> String) async throws(POP3Error) -> POP3ClientStateMachine.Event {
        while eventHead == events.count {
            events.removeAll(keepingCapacity: true)
            eventHead = 0
            let received: ByteBuffer?
            // The read timeout counts only while we wait here (and the server sends nothing).
            readTimeout.beginWaiting()
            do {
                received = try await inbound.next()
                readTimeout.endWaiting()
            } catch {
                readTimeout.endWaiting()
                throw mapTransportError(error, during: phase())
            }
            guard var buffer = received else {
                // Our own read timeout closed the connection: that is the cause to report.
                if readTimeout.hasFired { throw POP3Error.timeout(during: phase()) }
                // A failed TLS handshake closes the connection: its error is the cause.
                if let error = readTimeout.caughtError { throw mapTransportError(error, during: phase()) }
                throw machine.connectionClosed() ?? POP3Error.connectionClosed(during: phase())
            }
            bytesRead += buffer.readableBytes
            events = try machine.receive(&buffer)
        }
        defer { eventHead += 1 }
        return events[eventHead]
    }

    private func mapTransportError(_ error: any Error, during phase: String) -> POP3Error {
        if let error = error as? POP3Error { return error }
        if error is ServerSilenceTimeout.Fired || readTimeout.hasFired { return .timeout(during: phase) }
        // A write onto a connection a failed TLS handshake closed: the handshake is the cause.
        let error = Self.isTLSError(error) ? error : (readTimeout.caughtError.flatMap { Self.isTLSError($0) ? $0 : nil } ?? error)
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return .tlsFailed(POP3Transport.describeTLS(error))
        }
        if let error = error as? IOError { return .connectionClosed(during: "\(phase) (\(error.description))") }
        return .connectionClosed(during: "\(phase) (\(error))")
    }

    private func write(_ command: POP3Command) async throws(POP3Error) {
        try await write([command])
    }

    /// Several commands in one write (one system call, one TCP segment for a pipelined burst).
    private func write(_ commands: [POP3Command]) async throws(POP3Error) {
        guard let first = commands.first else { return }
        var buffer = channel.allocator.buffer(capacity: 32 * commands.count)
        for command in commands {
            try machine.send(command, into: &buffer)
            logger.trace("POP3 >", metadata: ["command": "\(command.logDescription)"])
        }
        do {
            try await outbound.write(buffer)
        } catch {
            throw mapTransportError(error, during: first.logDescription)
        }
    }

    /// Sends `command` and returns its `+OK` status line; `-ERR` throws.
    @discardableResult
    public func execute(_ command: POP3Command) async throws(POP3Error) -> POP3StatusLine {
        precondition(!command.expectsMultilineData, "use executeMultiline for \(command.logDescription)")
        try await write(command)
        let status = try await awaitStatus(of: command)
        guard status.isOK else { throw POP3Error.serverError(command: command.logDescription, status: status) }
        return status
    }

    private func awaitStatus(of command: POP3Command) async throws(POP3Error) -> POP3StatusLine {
        switch try await nextEvent(during: command.logDescription) {
        case .status(_, let status):
            return status
        case .greeting, .challenge, .data, .dataEnd:
            throw POP3Error.protocolViolation("unexpected response to \(command.logDescription)")
        }
    }

    /// Sends a multi-line command and passes its data, dot-unstuffed, to `consumer` chunk by chunk.
    public func executeMultiline(
        _ command: POP3Command,
        consumer: (ByteBuffer) async throws -> Void
    ) async throws -> POP3StatusLine {
        try await write(command)
        let status = try await awaitStatus(of: command)
        guard status.isOK else { throw POP3Error.serverError(command: command.logDescription, status: status) }
        while true {
            switch try await nextEvent(during: command.logDescription) {
            case .data(_, let chunk):
                try await consumer(chunk)
            case .dataEnd:
                return status
            case .greeting, .status, .challenge:
                throw POP3Error.protocolViolation("unexpected response inside \(command.logDescription) data")
            }
        }
    }

    /// When the server's TLS certificate expires, as it showed it on this connection; nil
    /// without TLS. (Dates only, no parsing: every poll asks.)
    public func serverCertificateExpiry() async -> Date? {
        guard isEncrypted, let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(certificate.notValidAfter))
    }

    /// What the server's TLS certificate says, for `gatepost site test`: subject and names,
    /// issuer (from the verified chain), expiry and protocol version. Nil without TLS.
    public func tlsSummary() async -> POP3TLSSummary? {
        guard isEncrypted, let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        let version = try? await channel.nioSSL_tlsVersion().get()
        // NIOSSL exposes names and dates but not the issuer; the parsed certificate has both.
        let parsed = (try? certificate.toDERBytes()).flatMap { try? Certificate(derEncoded: $0) }
        var subject = parsed.map { "\($0.subject)" } ?? "unparsed certificate"
        var names: [String] = []
        let alternativeNames: SubjectAlternativeNames? = (try? parsed?.extensions.subjectAlternativeNames) ?? nil
        for name in alternativeNames.map(Array.init) ?? [] {
            switch name {
            case .dnsName(let dns): names.append(dns)
            case .ipAddress(let address) where address.bytes.count == 4: names.append(address.bytes.map(String.init).joined(separator: "."))
            default: break
            }
        }
        if !names.isEmpty { subject += " (\(names.joined(separator: ", ")))" }
        return POP3TLSSummary(
            subject: subject,
            issuer: parsed.map { "\($0.issuer)" },
            notValidAfter: certificate.notValidAfter,
            version: version.map { "\($0)" }
        )
    }

    // MARK: - Pipelining (RFC 2449 PIPELINING)

    /// Sends `command` without waiting for its answer. Answers come back in order: collect each
    /// with ``awaitPipelinedStatus(of:)`` (and ``receivePipelinedData(of:consumer:)`` for RETR).
    public func sendPipelined(_ command: POP3Command) async throws(POP3Error) {
        try await write(command)
    }

    /// Sends `commands` in one write without waiting for their answers.
    public func sendPipelined(_ commands: [POP3Command]) async throws(POP3Error) {
        try await write(commands)
    }

    /// The status line answering the oldest pipelined command, which must be `command`.
    public func awaitPipelinedStatus(of command: POP3Command) async throws(POP3Error) -> POP3StatusLine {
        switch try await nextEvent(during: command.logDescription) {
        case .status(let answered, let status) where answered == command:
            return status
        default:
            throw POP3Error.protocolViolation("answers out of order while waiting for \(command.logDescription)")
        }
    }

    /// The data after a positive answer to a pipelined multi-line command.
    public func receivePipelinedData(of command: POP3Command, consumer: (ByteBuffer) async throws -> Void) async throws {
        while true {
            switch try await nextEvent(during: command.logDescription) {
            case .data(_, let chunk):
                try await consumer(chunk)
            case .dataEnd:
                return
            case .greeting, .status, .challenge:
                throw POP3Error.protocolViolation("unexpected response inside \(command.logDescription) data")
            }
        }
    }

    /// A multi-line answer made of short lines (CAPA, UIDL, LIST), collected with a size cap.
    private func collectLines(_ command: POP3Command, maxBytes: Int = 64 * 1024 * 1024) async throws(POP3Error) -> [String] {
        var collected = ByteBuffer()
        do {
            _ = try await executeMultiline(command) { chunk in
                var chunk = chunk
                guard collected.readableBytes + chunk.readableBytes <= maxBytes else {
                    throw POP3Error.protocolViolation("\(command.logDescription) answer larger than \(maxBytes) bytes")
                }
                collected.writeBuffer(&chunk)
            }
        } catch let error as POP3Error {
            throw error
        } catch {
            throw POP3Error.protocolViolation("\(error)")
        }
        let text = String(decoding: collected.readableBytesView, as: UTF8.self)
        return text.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" || $0 == "\r" }).map(String.init)
    }

    // MARK: - Session steps

    func readGreeting() async throws(POP3Error) {
        switch try await nextEvent(during: "the greeting") {
        case .greeting(let greeting):
            self.greeting = greeting
        default:
            throw POP3Error.protocolViolation("expected a greeting")
        }
    }

    /// CAPA; a server without it (RFC 1939 only) gets an empty capability list.
    @discardableResult
    public func loadCapabilities() async throws(POP3Error) -> POP3Capabilities {
        do {
            let capabilities = POP3Capabilities(lines: try await collectLines(.capa))
            self.capabilities = capabilities
            return capabilities
        } catch .serverError {
            let capabilities = POP3Capabilities(lines: [])
            self.capabilities = capabilities
            return capabilities
        }
    }

    /// STLS and the TLS handshake; capabilities are read again afterwards, as RFC 2595 requires.
    public func startTLS() async throws(POP3Error) {
        try await execute(.stls)
        await beforeTLSUpgrade?(readTimeout, bytesRead)
        let inClear = try await POP3Transport.upgradeToTLS(channel, configuration: configuration, silence: readTimeout)
        // Bytes that came after +OK and before TLS are not the server's answer over TLS.
        guard inClear == bytesRead else {
            throw POP3Error.protocolViolation("\(inClear - bytesRead) bytes of plain text arrived after +OK to STLS, before the TLS handshake (an injection attempt?)")
        }
        try machine.tlsEstablished()
        isEncrypted = true
        try await loadCapabilities()
    }

    /// One SASL exchange (RFC 5034): AUTH, then an answer to each `+ challenge` until the
    /// server says +OK or -ERR.
    func saslExchange(_ exchange: SASLClient) async throws(POP3Error) {
        var exchange = exchange
        let phase = "AUTH \(exchange.mechanism.rawValue)"
        try await write(.auth(mechanism: exchange.mechanism.rawValue, initialResponse: exchange.initialResponse))
        while true {
            switch try await nextEvent(during: phase) {
            case .challenge(_, let challenge):
                let answer = exchange.respond(to: challenge)
                var buffer = channel.allocator.buffer(capacity: answer.utf8.count + 2)
                try machine.sendSASLResponse(answer, into: &buffer)
                do { try await outbound.write(buffer) } catch { throw mapTransportError(error, during: phase) }
            case .status(_, let status):
                guard status.isOK else {
                    var error = Self.authenticationError(status)
                    if case .authenticationFailed(let text) = error, let detail = exchange.serverDetail {
                        error = .authenticationFailed("\(text) (\(detail))")
                    }
                    throw error
                }
                return
            default:
                throw POP3Error.protocolViolation("unexpected response to \(phase)")
            }
        }
    }

    static func isTLSError(_ error: any Error) -> Bool {
        error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError
    }

    static func authenticationError(_ status: POP3StatusLine) -> POP3Error {
        // [IN-USE], [LOGIN-DELAY] and [SYS/TEMP] are temporary conditions, not wrong credentials.
        if let code = status.code, ["IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"].contains(code) {
            return .serverError(command: "authentication", status: status)
        }
        return .authenticationFailed(status.text)
    }

    /// STAT: message count and total size in octets.
    public func stat() async throws(POP3Error) -> (count: Int, size: Int) {
        let status = try await execute(.stat)
        let fields = status.text.split(separator: " ")
        guard fields.count >= 2, let count = Int(fields[0]), let size = Int(fields[1]), count >= 0, size >= 0 else {
            throw POP3Error.protocolViolation("STAT answer is not 'count size': \(status.text.prefix(80))")
        }
        return (count, size)
    }

    /// UIDL: message numbers and their unique ids (RFC 1939 section 7).
    public func uniqueIDs() async throws(POP3Error) -> [POP3ListingEntry] {
        try Self.parseListing(try await collectLines(.uidl(nil)), command: "UIDL") { value in
            // RFC 1939: 1 to 70 characters in 0x21-0x7E.
            !value.isEmpty && value.utf8.count <= 70 && value.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }
        }
    }

    /// LIST: message numbers and sizes.
    public func sizes() async throws(POP3Error) -> [POP3ListingEntry] {
        try Self.parseListing(try await collectLines(.list(nil)), command: "LIST") { Int($0) != nil }
    }

    static func parseListing(_ lines: [String], command: String, isValid: (String) -> Bool) throws(POP3Error) -> [POP3ListingEntry] {
        var entries: [POP3ListingEntry] = []
        entries.reserveCapacity(lines.count)
        for line in lines {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let number = Int(fields[0]), number > 0, isValid(String(fields[1])) else {
                throw POP3Error.protocolViolation("malformed \(command) line: \(line.prefix(80))")
            }
            entries.append(POP3ListingEntry(number: number, value: String(fields[1])))
        }
        return entries
    }

    /// RETR: the message, dot-unstuffed, chunk by chunk.
    public func retrieve(_ number: Int, consumer: (ByteBuffer) async throws -> Void) async throws {
        _ = try await executeMultiline(.retr(number), consumer: consumer)
    }

    /// TOP n lines: the header and the first lines of the body, collected up to `maxBytes`.
    public func top(_ number: Int, lines: Int, maxBytes: Int = 256 * 1024) async throws(POP3Error) -> [UInt8] {
        var collected: [UInt8] = []
        do {
            _ = try await executeMultiline(.top(number, lines: lines)) { chunk in
                guard collected.count + chunk.readableBytes <= maxBytes else {
                    throw POP3Error.protocolViolation("TOP \(number) answer larger than \(maxBytes) bytes")
                }
                collected += chunk.readableBytesView
            }
        } catch let error as POP3Error {
            throw error
        } catch {
            throw POP3Error.protocolViolation("\(error)")
        }
        return collected
    }

    public func delete(_ number: Int) async throws(POP3Error) {
        try await execute(.dele(number))
    }

    /// QUIT: the server applies the deletions (RFC 1939 UPDATE state) only after this succeeds.
    public func quit() async throws(POP3Error) {
        try await execute(.quit)
    }
}

/// Entry point: connect, read the greeting, run `body`, close.
public enum POP3Client {
    public static func withSession<Result: Sendable>(
        _ configuration: POP3ConnectionConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        _ body: (POP3Session) async throws -> Result
    ) async throws -> Result {
        let readTimeout = ServerSilenceTimeout(timeout: configuration.readTimeout)
        let connection = try await POP3Transport.connect(configuration, group: group, readTimeout: readTimeout)
        let channel = connection.channel
        return try await connection.executeThenClose { inbound, outbound in
            let session = POP3Session(
                configuration: configuration, channel: channel, readTimeout: readTimeout,
                inbound: inbound, outbound: outbound, logger: logger
            )
            // A cancelled task (a daemon shutting down) closes the connection, which ends any
            // read in progress at once; what was not committed stays on the server.
            return try await withTaskCancellationHandler {
                try await session.readGreeting()
                return try await body(session)
            } onCancel: {
                channel.close(promise: nil)
            }
        }
    }
}
