import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The POP3 client protocol as a pure state machine: commands in, bytes out; bytes in, events
/// out. No sockets, no clocks, no allocation per byte: multi-line data is handed on as slices of
/// the received buffers with dot-stuffing removed (RFC 1939 section 3).
///
/// Commands are queued in the order sent, so several may be in flight (RFC 2449 PIPELINING); each
/// response is matched to the oldest unanswered command.
public struct POP3ClientStateMachine: Sendable {
    public enum SessionState: Sendable, Hashable {
        case awaitingGreeting
        case authorization
        /// STLS was accepted: nothing may be sent or received until TLS is in place.
        case awaitingTLS
        case transaction
        case closed
    }

    public enum Event: Sendable, Hashable {
        case greeting(POP3Greeting)
        /// The status line answering `command`. For a multi-line command with `+OK`, `data`
        /// events and then `dataEnd` follow.
        case status(POP3Command, POP3StatusLine)
        /// A SASL challenge (`+ base64`) during AUTH: answer with ``sendSASLResponse(_:)``.
        case challenge(POP3Command, String)
        case data(POP3Command, ByteBuffer)
        case dataEnd(POP3Command)
    }

    private enum ParserState: Sendable, Hashable {
        case statusLine
        case data(DotState)
    }

    /// Where the data parser stands relative to RFC 1939 byte-stuffing.
    private enum DotState: Sendable, Hashable {
        case lineStart
        case midLine
        case dot
        case dotCR
    }

    public private(set) var sessionState = SessionState.awaitingGreeting
    private var inFlight: [POP3Command] = []
    private var inFlightHead = 0
    private var parser = ParserState.statusLine
    private var partialLine = ByteBuffer()
    private let maxStatusLineLength: Int

    /// - Parameter maxStatusLineLength: RFC 2449 caps responses at 512 octets; a server may be
    ///   generous, but an endless line is a broken or hostile server.
    public init(maxStatusLineLength: Int = 8 * 1024) {
        self.maxStatusLineLength = maxStatusLineLength
    }

    public var hasCommandsInFlight: Bool { inFlightHead < inFlight.count }

    // MARK: - Sending

    /// Queues `command` and writes its line into `buffer`.
    public mutating func send(_ command: POP3Command, into buffer: inout ByteBuffer) throws(POP3Error) {
        switch (sessionState, command) {
        case (.awaitingGreeting, _), (.awaitingTLS, _), (.closed, _):
            throw POP3Error.invalidState("cannot send \(command.logDescription) while \(sessionState)")
        case (.authorization, .stat), (.authorization, .list), (.authorization, .uidl), (.authorization, .retr),
             (.authorization, .top), (.authorization, .dele), (.authorization, .rset), (.authorization, .noop):
            throw POP3Error.invalidState("\(command.logDescription) needs an authenticated session")
        case (.transaction, .user), (.transaction, .pass), (.transaction, .apop), (.transaction, .auth), (.transaction, .stls):
            throw POP3Error.invalidState("\(command.logDescription) is not allowed after authentication")
        default:
            break
        }
        try command.encode(into: &buffer)
        inFlight.append(command)
    }

    /// Answers a SASL challenge of the AUTH command in flight (base64 text, or `*` to cancel).
    public mutating func sendSASLResponse(_ response: String, into buffer: inout ByteBuffer) throws(POP3Error) {
        guard case .auth = currentCommand else {
            throw POP3Error.invalidState("no AUTH exchange in progress")
        }
        guard !response.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A }) else {
            throw POP3Error.invalidArgument("a SASL response contains a line break")
        }
        buffer.writeString(response)
        buffer.writeStaticString("\r\n")
    }

    /// TLS is now in place after STLS: back to the authorization state (RFC 2595 section 4).
    public mutating func tlsEstablished() throws(POP3Error) {
        guard sessionState == .awaitingTLS else { throw POP3Error.invalidState("TLS established without STLS") }
        sessionState = .authorization
    }

    private var currentCommand: POP3Command? {
        inFlightHead < inFlight.count ? inFlight[inFlightHead] : nil
    }

    private mutating func completeCurrentCommand() {
        inFlightHead += 1
        if inFlightHead == inFlight.count {
            inFlight.removeAll(keepingCapacity: true)
            inFlightHead = 0
        }
    }

    // MARK: - Receiving

    /// Consumes all of `buffer` and returns the events it completes.
    public mutating func receive(_ buffer: inout ByteBuffer) throws(POP3Error) -> [Event] {
        var events: [Event] = []
        while buffer.readableBytes > 0 {
            // After +OK to QUIT the session is over and the deletions are done: whatever else
            // the server sends is ignored, never turned into a failed poll.
            if sessionState == .closed {
                buffer.moveReaderIndex(to: buffer.writerIndex)
                break
            }
            switch parser {
            case .statusLine:
                guard let line = try readLine(from: &buffer) else { return events }
                try handleStatusLine(line, remaining: buffer.readableBytes, into: &events)
            case .data(let dot):
                try receiveData(&buffer, state: dot, into: &events)
            }
        }
        return events
    }

    /// The connection ended. Returns an error if that was not expected.
    public mutating func connectionClosed() -> POP3Error? {
        defer { sessionState = .closed }
        if let command = currentCommand {
            if case .quit = command { return nil }
            return .connectionClosed(during: command.logDescription)
        }
        if sessionState == .awaitingGreeting { return .connectionClosed(during: "the greeting") }
        return nil
    }

    private mutating func readLine(from buffer: inout ByteBuffer) throws(POP3Error) -> String? {
        let view = buffer.readableBytesView
        guard let lf = view.firstIndex(of: 0x0A) else {
            partialLine.writeBuffer(&buffer)
            if partialLine.readableBytes > maxStatusLineLength {
                throw POP3Error.protocolViolation("a response line longer than \(maxStatusLineLength) bytes")
            }
            return nil
        }
        let length = lf - view.startIndex + 1
        guard var slice = buffer.readSlice(length: length) else { return nil }
        partialLine.writeBuffer(&slice)
        guard partialLine.readableBytes <= maxStatusLineLength + 2 else {
            throw POP3Error.protocolViolation("a response line longer than \(maxStatusLineLength) bytes")
        }
        var bytes = partialLine.readableBytesView[...]
        partialLine.clear()
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func handleStatusLine(_ line: String, remaining: Int, into events: inout [Event]) throws(POP3Error) {
        if sessionState == .awaitingGreeting {
            guard line.hasPrefix("+OK") else {
                sessionState = .closed
                let status = Self.parseStatus(line) ?? POP3StatusLine(isOK: false, text: line)
                throw POP3Error.serverError(command: "the greeting", status: status)
            }
            sessionState = .authorization
            events.append(.greeting(POP3Greeting(text: String(line.dropFirst(3).drop { $0 == " " }))))
            return
        }
        guard let command = currentCommand else {
            throw POP3Error.protocolViolation("a response nobody asked for: \(line.prefix(80))")
        }
        if case .auth = command, line.hasPrefix("+ ") || line == "+" {
            events.append(.challenge(command, String(line.dropFirst(2))))
            return
        }
        guard let status = Self.parseStatus(line) else {
            throw POP3Error.protocolViolation("expected +OK or -ERR after \(command.logDescription), got \(line.prefix(80))")
        }
        events.append(.status(command, status))
        if status.isOK, command.expectsMultilineData {
            parser = .data(.lineStart)
            return
        }
        completeCurrentCommand()
        guard status.isOK else { return }
        switch command {
        case .stls:
            // Bytes after the STLS answer and before the TLS handshake would be plain text an
            // attacker injected (the STARTTLS command injection class of bugs): refuse them.
            if remaining > 0 || hasCommandsInFlight {
                throw POP3Error.protocolViolation("data received after the STLS response")
            }
            sessionState = .awaitingTLS
        case .pass, .apop, .auth:
            sessionState = .transaction
        case .quit:
            sessionState = .closed
        default:
            break
        }
    }

    static func parseStatus(_ line: String) -> POP3StatusLine? {
        let isOK: Bool
        let rest: Substring
        if line.hasPrefix("+OK") {
            isOK = true
            rest = line.dropFirst(3)
        } else if line.hasPrefix("-ERR") {
            isOK = false
            rest = line.dropFirst(4)
        } else {
            return nil
        }
        var text = rest.drop { $0 == " " }
        var code: String?
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            code = String(text[text.index(after: text.startIndex)..<close]).uppercased()
            text = text[text.index(after: close)...].drop { $0 == " " }
        }
        return POP3StatusLine(isOK: isOK, code: code, text: String(text))
    }

    /// Hands on multi-line data. Runs of lines that do not start with "." pass as one slice.
    private mutating func receiveData(_ buffer: inout ByteBuffer, state: DotState, into events: inout [Event]) throws(POP3Error) {
        guard let command = currentCommand else { throw POP3Error.invalidState("data without a command") }
        var dot = state
        while buffer.readableBytes > 0 {
            switch dot {
            case .lineStart:
                if buffer.readableBytesView.first == UInt8(ascii: ".") {
                    buffer.moveReaderIndex(forwardBy: 1)
                    dot = .dot
                } else {
                    dot = .midLine
                }
            case .dot:
                guard let byte = buffer.readableBytesView.first else { break }
                if byte == 0x0D {
                    buffer.moveReaderIndex(forwardBy: 1)
                    dot = .dotCR
                } else if byte == 0x0A {
                    // A bare-LF terminator: tolerated, as most clients do.
                    buffer.moveReaderIndex(forwardBy: 1)
                    finishData(command, into: &events)
                    return
                } else {
                    // The dot was stuffing: drop it, the rest of the line is data.
                    dot = .midLine
                }
            case .dotCR:
                guard let byte = buffer.readableBytesView.first else { break }
                if byte == 0x0A {
                    buffer.moveReaderIndex(forwardBy: 1)
                    finishData(command, into: &events)
                    return
                }
                // ".\r" followed by something else: the CR was data.
                events.append(.data(command, ByteBuffer(bytes: [0x0D])))
                dot = .midLine
            case .midLine:
                let (length, reachedLineStart) = buffer.withUnsafeReadableBytes(Self.dataRun)
                if let slice = buffer.readSlice(length: length) {
                    events.append(.data(command, slice))
                }
                dot = reachedLineStart ? .lineStart : .midLine
            }
        }
        parser = .data(dot)
    }

    /// The data that can be handed on as it is: up to and including the first line feed that is
    /// followed by a dot (a line to unstuff, or the terminator) or ends the buffer; the whole
    /// buffer if there is none. Whether it ends at the start of a line.
    ///
    /// Over raw bytes: this runs once per line of every message, and a collection view per line
    /// cost more than the rest of the state machine.
    static func dataRun(_ bytes: UnsafeRawBufferPointer) -> (length: Int, reachedLineStart: Bool) {
        guard let base = bytes.baseAddress else { return (0, false) }
        var offset = 0
        while offset < bytes.count, let found = memchr(base + offset, 0x0A, bytes.count - offset) {
            let next = UnsafeRawPointer(found) - base + 1
            if next == bytes.count || bytes[next] == UInt8(ascii: ".") {
                return (next, true)
            }
            offset = next
        }
        return (bytes.count, false)
    }

    private mutating func finishData(_ command: POP3Command, into events: inout [Event]) {
        events.append(.dataEnd(command))
        parser = .statusLine
        completeCurrentCommand()
    }
}
