import GatepostWire
import NIOCore

/// The SMTP client protocol as a pure state machine: calls and server bytes in, actions out. No
/// sockets, no clocks: the caller writes what ``Action/write(_:logDescription:)`` carries, puts TLS
/// in place on ``Action/startTLS``, streams the message on ``Action/sendMessageBody``.
///
/// Replies are matched to commands in the order sent, so a PIPELINING group (RFC 2920: MAIL FROM,
/// every RCPT TO and DATA in one write) is answered reply by reply like single commands.
///
/// An error thrown by ``receive(_:)`` leaves ``state`` at ``State/ready`` when the session can
/// still be used (AUTH or STARTTLS refused: QUIT is polite) and at ``State/closed`` otherwise.
/// A refused message is no error of the session: it is reported as
/// ``Action/transactionFailed(_:)`` once the server is ready for the next one.
public struct SMTPClientStateMachine: Sendable {
    public enum State: Sendable, Hashable {
        case awaitingGreeting
        /// EHLO (or HELO after EHLO was not recognised) is in flight.
        case identifying
        /// Ready for STARTTLS, AUTH, a transaction or QUIT.
        case ready
        case startingTLS
        /// STARTTLS was accepted: nothing may be sent or received until TLS is in place.
        case awaitingTLS
        case authenticating
        /// MAIL FROM, RCPT TO and DATA are in flight.
        case transaction
        /// DATA was accepted: the caller streams the message, then calls ``messageBodySent()``.
        case sendingMessageBody
        case awaitingFinalReply
        case resetting
        case quitting
        case closed
    }

    /// Printing an action never shows the bytes of a write, which may carry SASL data.
    public enum Action: Sendable, Hashable, CustomStringConvertible {
        /// Bytes to send now. `logDescription` names the commands with secrets masked.
        case write(ByteBuffer, logDescription: String)
        /// Greeting and EHLO (or HELO) are done, again after STARTTLS: the server offers these.
        case ready(SMTPCapabilities)
        /// The server took STARTTLS: put TLS in front of everything, then call ``tlsEstablished()``.
        case startTLS
        case authenticated
        /// DATA was accepted: stream the message through ``SMTPDataEncoder``, then call
        /// ``messageBodySent()``.
        case sendMessageBody
        case transactionCompleted(SMTPSendResult)
        /// The message was not taken; the session is ready for the next one.
        case transactionFailed(SMTPTransactionFailure)
        case resetCompleted
        /// QUIT was answered: close the connection.
        case closeConnection

        public var description: String {
            switch self {
            case .write(let bytes, let logDescription): "write(\(bytes.readableBytes) bytes: \(logDescription))"
            case .ready(let capabilities): "ready(\(capabilities.lines.joined(separator: ", ")))"
            case .startTLS: "startTLS"
            case .authenticated: "authenticated"
            case .sendMessageBody: "sendMessageBody"
            case .transactionCompleted(let result): "transactionCompleted(\(result.finalReply))"
            case .transactionFailed(let failure): "transactionFailed(\(failure))"
            case .resetCompleted: "resetCompleted"
            case .closeConnection: "closeConnection"
            }
        }
    }

    /// What the next reply answers.
    private enum Expected: Sendable, Hashable, CustomStringConvertible {
        case greeting, ehlo, helo, startTLS, auth(String), mailFrom, recipient(Int), data
        /// The lone "." RFC 2920 says to send when DATA got 354 although the transaction had failed.
        case endOfRefusedData
        case finalReply, reset, quit

        var description: String {
            switch self {
            case .greeting: "the greeting"
            case .ehlo: "EHLO"
            case .helo: "HELO"
            case .startTLS: "STARTTLS"
            case .auth(let mechanism): "AUTH \(mechanism)"
            case .mailFrom: "MAIL FROM"
            case .recipient(let index): "RCPT TO (recipient \(index + 1))"
            case .data: "DATA"
            case .endOfRefusedData, .finalReply: "the end of the message data"
            case .reset: "RSET"
            case .quit: "QUIT"
            }
        }
    }

    private struct Transaction: Sendable {
        var envelope: SMTPEnvelope
        var pipelined: Bool
        /// What was asked for in MAIL FROM: the envelope's request when the server offers DSN.
        var deliveryStatus: DeliveryStatusRequest?
        var mailFromReply: SMTPReply?
        var recipientReplies: [SMTPReply] = []
        /// Set once the transaction cannot succeed; reported when the server is ready again.
        var failure: SMTPTransactionFailure?

        var recipientResults: [SMTPRecipientResult] {
            zip(envelope.recipients, recipientReplies).map { SMTPRecipientResult(recipient: $0, reply: $1) }
        }

        func recipientCommand(_ index: Int) -> SMTPCommand {
            let recipient = envelope.recipients[index]
            return .recipient(recipient, parameters: deliveryStatus?.recipientParameters(recipient) ?? [])
        }
    }

    public private(set) var state = State.awaitingGreeting
    public private(set) var greeting: SMTPReply?
    /// What the latest EHLO reply offered; ``SMTPCapabilities/none`` before it and after HELO.
    public private(set) var capabilities = SMTPCapabilities.none
    public private(set) var isEncrypted: Bool
    public private(set) var isAuthenticated = false

    private let clientName: String
    private var parser: SMTPReplyParser
    private var expected: [Expected] = [.greeting]
    private var expectedHead = 0
    private var sasl: SASLClient?
    private var transaction: Transaction?

    /// - Parameters:
    ///   - clientName: The name for EHLO/HELO: the client's fully qualified domain name, or an
    ///     address literal such as `[192.0.2.1]` (RFC 5321 section 4.1.4).
    ///   - connectionIsEncrypted: True with implicit TLS (port 465).
    public init(clientName: String, connectionIsEncrypted: Bool = false, limits: SMTPReplyParser.Limits = .init()) {
        self.clientName = clientName
        isEncrypted = connectionIsEncrypted
        parser = SMTPReplyParser(limits: limits)
    }

    /// What the session is waiting for, for timeouts and errors.
    public var currentPhase: String {
        if let current = currentExpected { return current.description }
        return state == .sendingMessageBody ? "the message data" : "an idle session"
    }

    // MARK: - Commands

    /// STARTTLS (RFC 3207).
    public mutating func startTLS() throws(SMTPError) -> Action {
        try requireReady(for: "STARTTLS")
        guard !isEncrypted else { throw SMTPError.invalidState("STARTTLS on a connection that is already encrypted") }
        guard capabilities.supportsStartTLS else { throw SMTPError.notSupported("STARTTLS") }
        state = .startingTLS
        return try send([.startTLS], expecting: [.startTLS])
    }

    /// TLS is in place after STARTTLS: what the server said before is forgotten (an attacker may
    /// have written it) and EHLO is sent again, as RFC 3207 section 4.2 requires.
    public mutating func tlsEstablished() throws(SMTPError) -> Action {
        guard state == .awaitingTLS else { throw SMTPError.invalidState("TLS established without STARTTLS") }
        isEncrypted = true
        capabilities = .none
        state = .identifying
        return try send([.ehlo(clientName)], expecting: [.ehlo])
    }

    /// AUTH (RFC 4954) with `exchange`'s mechanism; 334 challenges are answered by the exchange
    /// without the caller. A mechanism that sends the secret readable is refused over an
    /// unencrypted connection unless `allowInsecure`.
    public mutating func authenticate(_ exchange: SASLClient, allowInsecure: Bool) throws(SMTPError) -> Action {
        try requireReady(for: "AUTH")
        guard !isAuthenticated else { throw SMTPError.invalidState("AUTH after a successful AUTH (RFC 4954 forbids it)") }
        let mechanism = exchange.mechanism
        guard isEncrypted || allowInsecure || !mechanism.sendsSecretInClear else { throw SMTPError.insecureAuthenticationRefused }
        guard capabilities.authMechanisms.contains(mechanism.rawValue) else {
            throw SMTPError.notSupported("AUTH \(mechanism.rawValue)")
        }
        let action = try send([.auth(mechanism: mechanism.rawValue, initialResponse: exchange.initialResponse)], expecting: [.auth(mechanism.rawValue)])
        sasl = exchange
        state = .authenticating
        return action
    }

    /// MAIL FROM and the RCPT TOs; with PIPELINING, DATA goes in the same write. `messageSize`
    /// (octets) is declared with SIZE= when the server offers SIZE, and checked against its limit.
    public mutating func beginTransaction(_ envelope: SMTPEnvelope, messageSize: Int?) throws(SMTPError) -> Action {
        try requireReady(for: "MAIL FROM")
        try envelope.validate()
        var parameters: [String] = []
        if let messageSize, capabilities.supportsSize {
            if let limit = capabilities.maximumMessageSize, messageSize > limit {
                throw SMTPError.messageTooLarge(size: messageSize, limit: limit)
            }
            parameters.append("SIZE=\(messageSize)")
        }
        // The content is the partner's: it may well be 8-bit, and declaring 8BITMIME for 7-bit
        // content is harmless (RFC 6152).
        if capabilities.supports8BitMIME { parameters.append("BODY=8BITMIME") }
        if envelope.needsSMTPUTF8 {
            guard capabilities.supportsSMTPUTF8 else {
                throw SMTPError.notSupported("SMTPUTF8, which the envelope's non-ASCII addresses need")
            }
            parameters.append("SMTPUTF8")
        }
        // Asked for only where the server can carry it: RFC 3461 parameters sent to a server
        // without DSN are refused (555), and the message is worth more than the report.
        let deliveryStatus = capabilities.supportsDeliveryStatusNotifications ? envelope.deliveryStatus : nil
        if let deliveryStatus { parameters += deliveryStatus.mailParameters }
        let pipelined = capabilities.supportsPipelining
        var commands: [SMTPCommand] = [.mailFrom(envelope.from, parameters: parameters)]
        var replies: [Expected] = [.mailFrom]
        if pipelined {
            for (index, recipient) in envelope.recipients.enumerated() {
                commands.append(.recipient(recipient, parameters: deliveryStatus?.recipientParameters(recipient) ?? []))
                replies.append(.recipient(index))
            }
            commands.append(.data)
            replies.append(.data)
        }
        let action = try send(commands, expecting: replies)
        transaction = Transaction(envelope: envelope, pipelined: pipelined, deliveryStatus: deliveryStatus)
        state = .transaction
        return action
    }

    /// The caller has written the whole message, terminator included (``SMTPDataEncoder/finish(into:)``).
    public mutating func messageBodySent() throws(SMTPError) {
        guard state == .sendingMessageBody else { throw SMTPError.invalidState("message data sent without DATA accepted") }
        expected.append(.finalReply)
        state = .awaitingFinalReply
    }

    /// RSET: ends nothing but the current (finished) transaction state on the server.
    public mutating func reset() throws(SMTPError) -> Action {
        try requireReady(for: "RSET")
        state = .resetting
        return try send([.reset], expecting: [.reset])
    }

    public mutating func quit() throws(SMTPError) -> Action {
        try requireReady(for: "QUIT")
        state = .quitting
        return try send([.quit], expecting: [.quit])
    }

    /// The caller gave up on the connection (a message source failed in the middle of DATA: ending
    /// the data would deliver a truncated message, so the connection is dropped instead).
    public mutating func abandon() {
        state = .closed
    }

    /// The connection ended. Returns the error to report if the server should have said more.
    public mutating func connectionClosed() -> SMTPError? {
        defer { state = .closed }
        if let current = currentExpected {
            if current == .quit { return nil }
            return .connectionClosed(during: current.description)
        }
        if state == .sendingMessageBody { return .connectionClosed(during: "the message data") }
        return nil
    }

    private func requireReady(for command: String) throws(SMTPError) {
        guard state == .ready else { throw SMTPError.invalidState("cannot send \(command) while \(state)") }
    }

    private mutating func send(_ commands: [SMTPCommand], expecting replies: [Expected]) throws(SMTPError) -> Action {
        var buffer = ByteBuffer()
        for command in commands { try command.encode(into: &buffer) }
        expected += replies
        return .write(buffer, logDescription: commands.map(\.logDescription).joined(separator: ", "))
    }

    private var currentExpected: Expected? {
        expectedHead < expected.count ? expected[expectedHead] : nil
    }

    private mutating func completeExpected() {
        expectedHead += 1
        if expectedHead == expected.count {
            expected.removeAll(keepingCapacity: true)
            expectedHead = 0
        }
    }

    // MARK: - Replies

    /// Consumes all of `buffer` and returns what the replies in it call for.
    public mutating func receive(_ buffer: inout ByteBuffer) throws(SMTPError) -> [Action] {
        guard state != .closed else { throw SMTPError.invalidState("data received after the session ended") }
        var actions: [Action] = []
        while true {
            let parsed: SMTPReply?
            do {
                parsed = try parser.nextReply(from: &buffer)
            } catch {
                state = .closed
                throw SMTPError.malformedReply(error)
            }
            guard let reply = parsed else { return actions }
            do {
                try handle(reply, bytesAfterReply: buffer.readableBytes, into: &actions)
            } catch {
                if state != .ready { state = .closed }
                throw error
            }
        }
    }

    private mutating func handle(_ reply: SMTPReply, bytesAfterReply: Int, into actions: inout [Action]) throws(SMTPError) {
        guard let current = currentExpected else {
            state = .closed
            if reply.code == 421 { throw SMTPError.serviceNotAvailable(during: "an idle session", reply: reply) }
            throw SMTPError.protocolViolation("a reply nobody asked for: \(reply)")
        }
        // 421 may come as the answer to anything (RFC 5321 section 3.8): the server is closing.
        if reply.code == 421 && current != .quit {
            state = .closed
            throw SMTPError.serviceNotAvailable(during: current.description, reply: reply)
        }
        if case .auth = current, reply.code == 334 {
            try answerChallenge(reply, into: &actions)
            return
        }
        completeExpected()
        switch current {
        case .greeting:
            guard reply.code == 220 else {
                state = .closed
                throw SMTPError.greetingRefused(reply)
            }
            greeting = reply
            state = .identifying
            actions.append(try send([.ehlo(clientName)], expecting: [.ehlo]))
        case .ehlo:
            if reply.isPositiveCompletion {
                capabilities = SMTPCapabilities(ehloReply: reply)
                state = .ready
                actions.append(.ready(capabilities))
            } else if reply.code == 500 || reply.code == 502 {
                // A server from before ESMTP (RFC 5321 section 3.2): HELO, without extensions.
                actions.append(try send([.helo(clientName)], expecting: [.helo]))
            } else {
                state = .closed
                throw SMTPError.commandFailed(command: "EHLO", reply: reply)
            }
        case .helo:
            guard reply.isPositiveCompletion else {
                state = .closed
                throw SMTPError.commandFailed(command: "HELO", reply: reply)
            }
            capabilities = .none
            state = .ready
            actions.append(.ready(capabilities))
        case .startTLS:
            guard reply.code == 220 else {
                state = .ready
                throw SMTPError.commandFailed(command: "STARTTLS", reply: reply)
            }
            // Bytes after the 220 and before the handshake would be plain text an attacker
            // injected, to be read as if they came over TLS (CVE-2011-0411 and its kin): refuse.
            guard bytesAfterReply == 0, !parser.hasPartialReply, currentExpected == nil else {
                state = .closed
                throw SMTPError.protocolViolation("data received after the STARTTLS reply")
            }
            state = .awaitingTLS
            actions.append(.startTLS)
        case .auth(let mechanism):
            let detail = sasl?.serverDetail
            sasl = nil
            state = .ready
            guard reply.isPositiveCompletion else {
                throw SMTPError.authenticationFailed(mechanism: mechanism, reply: reply, serverDetail: detail)
            }
            isAuthenticated = true
            actions.append(.authenticated)
        case .mailFrom:
            try handleMailFrom(reply, into: &actions)
        case .recipient(let index):
            try handleRecipient(reply, index: index, into: &actions)
        case .data:
            try handleData(reply, into: &actions)
        case .endOfRefusedData:
            // Whatever the server says to the empty message, the transaction is over.
            finishTransaction(with: reply, into: &actions)
        case .finalReply:
            finishTransaction(with: reply, into: &actions)
        case .reset:
            guard reply.isPositiveCompletion else {
                state = .closed
                throw SMTPError.commandFailed(command: "RSET", reply: reply)
            }
            state = .ready
            if let failure = transaction?.failure {
                actions.append(.transactionFailed(failure))
            } else {
                actions.append(.resetCompleted)
            }
            transaction = nil
        case .quit:
            state = .closed
            actions.append(.closeConnection)
        }
    }

    private mutating func answerChallenge(_ reply: SMTPReply, into actions: inout [Action]) throws(SMTPError) {
        guard var exchange = sasl else { throw SMTPError.invalidState("a SASL challenge without AUTH") }
        let response = SMTPCommand.saslResponse(exchange.respond(to: reply.lines.first ?? ""))
        sasl = exchange
        var buffer = ByteBuffer()
        try response.encode(into: &buffer)
        actions.append(.write(buffer, logDescription: response.logDescription))
    }

    private mutating func handleMailFrom(_ reply: SMTPReply, into actions: inout [Action]) throws(SMTPError) {
        guard var current = transaction else { throw SMTPError.invalidState("a MAIL FROM reply without a transaction") }
        current.mailFromReply = reply
        if reply.isPositiveCompletion {
            transaction = current
            if !current.pipelined {
                actions.append(try send([current.recipientCommand(0)], expecting: [.recipient(0)]))
            }
            return
        }
        let failure = SMTPTransactionFailure(stage: .mailFrom, reply: reply, recipients: [])
        if current.pipelined {
            // The RCPT TO and DATA replies (503, most likely) are still to come.
            current.failure = failure
            transaction = current
        } else {
            // No transaction was started on the server: nothing to reset.
            transaction = nil
            state = .ready
            actions.append(.transactionFailed(failure))
        }
    }

    private mutating func handleRecipient(_ reply: SMTPReply, index: Int, into actions: inout [Action]) throws(SMTPError) {
        guard var current = transaction, index == current.recipientReplies.count else {
            throw SMTPError.invalidState("an RCPT TO reply out of order")
        }
        current.recipientReplies.append(reply)
        transaction = current
        guard !current.pipelined else { return }
        let next = index + 1
        if next < current.envelope.recipients.count {
            actions.append(try send([current.recipientCommand(next)], expecting: [.recipient(next)]))
        } else if current.recipientResults.contains(where: \.isAccepted) {
            actions.append(try send([.data], expecting: [.data]))
        } else {
            // MAIL FROM started a transaction on the server; RSET ends it (RFC 5321 section 4.1.1.5).
            fail(current, SMTPTransactionFailure(stage: .recipients, reply: reply, recipients: current.recipientResults))
            actions.append(try send([.reset], expecting: [.reset]))
        }
    }

    private mutating func handleData(_ reply: SMTPReply, into actions: inout [Action]) throws(SMTPError) {
        guard let current = transaction else { throw SMTPError.invalidState("a DATA reply without a transaction") }
        let results = current.recipientResults
        let mailAccepted = current.mailFromReply?.isPositiveCompletion ?? false
        let someRecipientAccepted = results.contains(where: \.isAccepted)
        if reply.code == 354 && mailAccepted && someRecipientAccepted {
            state = .sendingMessageBody
            actions.append(.sendMessageBody)
            return
        }
        let failure = current.failure
            ?? (someRecipientAccepted
                ? SMTPTransactionFailure(stage: .data, reply: reply, recipients: results)
                : SMTPTransactionFailure(
                    stage: .recipients,
                    reply: results.first(where: { !$0.isAccepted })?.reply ?? reply,
                    recipients: results
                ))
        fail(current, failure)
        if reply.code == 354 {
            // RFC 2920 section 3.1: DATA may be accepted even though no recipient was; a lone
            // "." then ends an empty message that the server cannot deliver to anyone.
            var buffer = ByteBuffer()
            buffer.writeStaticString(".\r\n")
            expected.append(.endOfRefusedData)
            actions.append(.write(buffer, logDescription: "(end of an empty message)"))
        } else {
            actions.append(try send([.reset], expecting: [.reset]))
        }
    }

    /// Records `failure` to be reported once the server has answered the clean-up command.
    private mutating func fail(_ current: Transaction, _ failure: SMTPTransactionFailure) {
        var failed = current
        failed.failure = failure
        transaction = failed
        state = .resetting
    }

    private mutating func finishTransaction(with reply: SMTPReply, into actions: inout [Action]) {
        guard let current = transaction else { return }
        transaction = nil
        state = .ready
        if let failure = current.failure {
            actions.append(.transactionFailed(failure))
        } else if reply.isPositiveCompletion {
            actions.append(.transactionCompleted(SMTPSendResult(recipients: current.recipientResults, finalReply: reply)))
        } else {
            actions.append(.transactionFailed(SMTPTransactionFailure(stage: .endOfData, reply: reply, recipients: current.recipientResults)))
        }
    }
}
