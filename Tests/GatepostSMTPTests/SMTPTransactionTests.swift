import GatepostWire
import NIOCore
import Testing
@testable import GatepostSMTP

@Suite struct SMTPTransactionTests {
    static let envelope = SMTPEnvelope(from: "sender@example.com", recipients: ["a@example.net", "b@example.net", "c@example.net"])
    static let pipelining = ["PIPELINING", "SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES"]
    static let plain = ["SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES"]

    /// Sends the body the way the session does and checks what went on the wire.
    static func sendBody(_ conversation: inout Conversation, _ body: String) throws {
        var encoder = SMTPDataEncoder()
        var out = ByteBuffer()
        encoder.encode(ByteBuffer(string: body), into: &out)
        encoder.finish(into: &out)
        conversation.sent += String(buffer: out)
        try conversation.machine.messageBodySent()
    }

    @Test(arguments: [1, 3, 1000])
    func pipelinedTransactionSendsOneWriteAndMatchesRepliesInOrder(chunkSize: Int) throws {
        var conversation = try Conversation.ready(Self.pipelining)
        conversation.client(try conversation.machine.beginTransaction(Self.envelope, messageSize: 1234))
        // MAIL FROM, every RCPT TO and DATA in one write (RFC 2920).
        #expect(conversation.logged.count == 1)
        #expect(conversation.takeSent() == """
            MAIL FROM:<sender@example.com> SIZE=1234 BODY=8BITMIME\r
            RCPT TO:<a@example.net>\r
            RCPT TO:<b@example.net>\r
            RCPT TO:<c@example.net>\r
            DATA\r

            """)
        let actions = try conversation.server(
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
            chunkSize: chunkSize
        )
        #expect(actions == [.sendMessageBody])
        #expect(conversation.machine.state == .sendingMessageBody)
        try Self.sendBody(&conversation, "Subject: x\r\n\r\n.hidden\r\n")
        #expect(conversation.takeSent() == "Subject: x\r\n\r\n..hidden\r\n.\r\n")
        let done = try conversation.server("250 2.0.0 Ok: queued as 4Bx7Yq1Z2\r\n", chunkSize: chunkSize)
        guard case .transactionCompleted(let result)? = done.first else {
            Issue.record("expected completion, got \(done)")
            return
        }
        #expect(result.acceptedRecipients == Self.envelope.recipients)
        #expect(result.refusedRecipients.isEmpty)
        #expect(result.finalReply == reply(250, "2.0.0", "Ok: queued as 4Bx7Yq1Z2"))
        #expect(conversation.machine.state == .ready)
    }

    @Test func deliveryReportsAreAskedForOnlyFromAServerOfferingDSN() throws {
        var envelope = SMTPEnvelope(from: "sender@example.com", recipients: ["a+b@example.net", "c@example.net"])
        envelope.deliveryStatus = DeliveryStatusRequest(envelopeID: "T1 x=y+z")
        var offering = try Conversation.ready(Self.pipelining + ["DSN"])
        offering.client(try offering.machine.beginTransaction(envelope, messageSize: nil))
        #expect(offering.takeSent() == """
            MAIL FROM:<sender@example.com> BODY=8BITMIME RET=HDRS ENVID=T1+20x+3Dy+2Bz\r
            RCPT TO:<a+b@example.net> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;a+2Bb@example.net\r
            RCPT TO:<c@example.net> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;c@example.net\r
            DATA\r

            """)
        // Command by command too.
        var unpipelined = try Conversation.ready(Self.plain + ["DSN"])
        unpipelined.client(try unpipelined.machine.beginTransaction(envelope, messageSize: nil))
        #expect(unpipelined.takeSent() == "MAIL FROM:<sender@example.com> BODY=8BITMIME RET=HDRS ENVID=T1+20x+3Dy+2Bz\r\n")
        #expect(try unpipelined.server("250 2.1.0 Ok\r\n").isEmpty)
        #expect(unpipelined.takeSent() == "RCPT TO:<a+b@example.net> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;a+2Bb@example.net\r\n")
        // A server without DSN would refuse the parameters: the message goes without them.
        var withoutDSN = try Conversation.ready(Self.pipelining)
        withoutDSN.client(try withoutDSN.machine.beginTransaction(envelope, messageSize: nil))
        #expect(withoutDSN.takeSent().hasPrefix("MAIL FROM:<sender@example.com> BODY=8BITMIME\r\nRCPT TO:<a+b@example.net>\r\n"))
    }

    @Test func unpipelinedTransactionGoesCommandByCommand() throws {
        var conversation = try Conversation.ready(Self.plain)
        conversation.client(try conversation.machine.beginTransaction(Self.envelope, messageSize: 99))
        #expect(conversation.takeSent() == "MAIL FROM:<sender@example.com> SIZE=99 BODY=8BITMIME\r\n")
        #expect(try conversation.server("250 2.1.0 Ok\r\n").isEmpty)
        #expect(conversation.takeSent() == "RCPT TO:<a@example.net>\r\n")
        #expect(try conversation.server("250 2.1.5 Ok\r\n").isEmpty)
        #expect(conversation.takeSent() == "RCPT TO:<b@example.net>\r\n")
        #expect(try conversation.server("250 2.1.5 Ok\r\n").isEmpty)
        #expect(conversation.takeSent() == "RCPT TO:<c@example.net>\r\n")
        #expect(try conversation.server("250 2.1.5 Ok\r\n").isEmpty)
        #expect(conversation.takeSent() == "DATA\r\n")
        #expect(try conversation.server("354 go ahead\r\n") == [.sendMessageBody])
        try Self.sendBody(&conversation, "hello")
        #expect(conversation.takeSent() == "hello\r\n.\r\n")
        let done = try conversation.server("250 2.0.0 queued as ABC\r\n")
        #expect(done == [.transactionCompleted(SMTPSendResult(
            recipients: Self.envelope.recipients.map { SMTPRecipientResult(recipient: $0, reply: reply(250, "2.1.5", "Ok")) },
            finalReply: reply(250, "2.0.0", "queued as ABC")
        ))])
    }

    @Test(arguments: [true, false])
    func mixedRecipientResultsStillDeliver(pipelined: Bool) throws {
        var conversation = try Conversation.ready(pipelined ? Self.pipelining : Self.plain)
        conversation.client(try conversation.machine.beginTransaction(Self.envelope, messageSize: nil))
        let replies = [
            "250 2.1.0 Ok\r\n",
            "550 5.1.1 <a@example.net>: Recipient address rejected: User unknown\r\n",
            "250 2.1.5 Ok\r\n",
            "450 4.2.0 <c@example.net>: Recipient address rejected: Greylisted\r\n",
            "354 go ahead\r\n",
        ]
        var actions: [SMTPClientStateMachine.Action] = []
        for text in replies { actions += try conversation.server(text) }
        #expect(actions == [.sendMessageBody])
        #expect(conversation.takeSent().hasSuffix("DATA\r\n"))
        try Self.sendBody(&conversation, "x\r\n")
        let done = try conversation.server("250 2.0.0 Ok: queued as Q1\r\n")
        guard case .transactionCompleted(let result)? = done.first else {
            Issue.record("expected completion, got \(done)")
            return
        }
        #expect(result.recipients.map(\.status) == [.refusedPermanently, .accepted, .refusedTemporarily])
        #expect(result.acceptedRecipients == ["b@example.net"])
        #expect(result.refusedRecipients.map(\.recipient) == ["a@example.net", "c@example.net"])
        #expect(result.recipients[0].reply.enhancedStatusCode == SMTPEnhancedStatusCode(statusClass: 5, subject: 1, detail: 1))
        // MAIL FROM without SIZE: the size was not known.
        #expect(conversation.logged.first?.hasPrefix("MAIL FROM:<sender@example.com> BODY=8BITMIME") == true)
    }

    @Test func allRecipientsRefusedWithoutPipeliningResetsAndFails() throws {
        var conversation = try Conversation.ready(Self.plain)
        conversation.client(try conversation.machine.beginTransaction(Self.envelope, messageSize: nil))
        _ = try conversation.server("250 Ok\r\n")
        _ = try conversation.server("550 5.1.1 no a\r\n")
        _ = try conversation.server("550 5.1.1 no b\r\n")
        #expect(try conversation.server("551 5.1.6 no c\r\n").isEmpty)
        // No DATA: RSET ends the transaction MAIL FROM started.
        #expect(conversation.takeSent().hasSuffix("RCPT TO:<c@example.net>\r\nRSET\r\n"))
        #expect(conversation.machine.state == .resetting)
        let actions = try conversation.server("250 2.0.0 Ok\r\n")
        guard case .transactionFailed(let failure)? = actions.first else {
            Issue.record("expected failure, got \(actions)")
            return
        }
        #expect(failure.stage == .recipients)
        #expect(failure.recipients.map(\.status) == [.refusedPermanently, .refusedPermanently, .refusedPermanently])
        #expect(!failure.isTransient)
        #expect(!SMTPError.messageRefused(failure).isTransient)
        #expect(conversation.machine.state == .ready)
        // The session goes on with the next message.
        conversation.client(try conversation.machine.beginTransaction(SMTPEnvelope(from: "", recipients: ["d@example.net"]), messageSize: nil))
        #expect(conversation.takeSent() == "MAIL FROM:<> BODY=8BITMIME\r\n")
    }

    @Test func allRecipientsRefusedWithPipeliningAndDATARefused() throws {
        var conversation = try Conversation.ready(Self.pipelining)
        conversation.client(try conversation.machine.beginTransaction(Self.envelope, messageSize: nil))
        _ = conversation.takeSent()
        let actions = try conversation.server("250 Ok\r\n450 4.2.1 busy a\r\n550 5.1.1 no b\r\n550 5.1.1 no c\r\n554 5.5.1 Error: no valid recipients\r\n")
        #expect(actions.isEmpty)
        #expect(conversation.takeSent() == "RSET\r\n")
        let failed = try conversation.server("250 2.0.0 Ok\r\n")
        guard case .transactionFailed(let failure)? = failed.first else {
            Issue.record("expected failure, got \(failed)")
            return
        }
        #expect(failure.stage == .recipients)
        #expect(failure.reply.code == 450)
        // a@ was refused only for now: the message is worth sending again later.
        #expect(failure.isTransient)
    }

    @Test func pipelinedDATAAcceptedDespiteNoRecipientGetsALoneDot() throws {
        var conversation = try Conversation.ready(Self.pipelining)
        conversation.client(try conversation.machine.beginTransaction(SMTPEnvelope(from: "s@x", recipients: ["a@y"]), messageSize: nil))
        _ = conversation.takeSent()
        #expect(try conversation.server("250 Ok\r\n550 5.1.1 no a\r\n354 go ahead\r\n").isEmpty)
        // RFC 2920 section 3.1: end the (empty) data rather than send the message.
        #expect(conversation.takeSent() == ".\r\n")
        let failed = try conversation.server("554 5.5.1 no valid recipients\r\n")
        guard case .transactionFailed(let failure)? = failed.first else {
            Issue.record("expected failure, got \(failed)")
            return
        }
        #expect(failure.stage == .recipients)
        #expect(conversation.machine.state == .ready)
    }

    @Test(arguments: [(451, true), (550, false), (552, false), (421, true)])
    func mailFromRefusalIsClassified(code: Int, transient: Bool) throws {
        var conversation = try Conversation.ready(Self.plain)
        conversation.client(try conversation.machine.beginTransaction(Self.envelope, messageSize: nil))
        do {
            let actions = try conversation.server("\(code) \(code / 100).7.1 refused\r\n")
            guard case .transactionFailed(let failure)? = actions.first else {
                Issue.record("expected failure, got \(actions)")
                return
            }
            #expect(code != 421)
            #expect(failure.stage == .mailFrom)
            #expect(failure.isTransient == transient)
            #expect(SMTPError.messageRefused(failure).isTransient == transient)
            // No transaction was started: no RSET.
            #expect(conversation.takeSent() == "MAIL FROM:<sender@example.com> BODY=8BITMIME\r\n")
            #expect(conversation.machine.state == .ready)
        } catch {
            #expect(code == 421)
            #expect(error.isTransient == transient)
        }
    }

    @Test func pipelinedMailFromRefusalWaitsForTheWholeGroup() throws {
        var conversation = try Conversation.ready(Self.pipelining)
        conversation.client(try conversation.machine.beginTransaction(SMTPEnvelope(from: "s@x", recipients: ["a@y", "b@y"]), messageSize: nil))
        _ = conversation.takeSent()
        #expect(try conversation.server("553 5.7.1 sender rejected\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n").isEmpty)
        #expect(try conversation.server("503 5.5.1 need RCPT\r\n").isEmpty)
        #expect(conversation.takeSent() == "RSET\r\n")
        let failed = try conversation.server("250 Ok\r\n")
        guard case .transactionFailed(let failure)? = failed.first else {
            Issue.record("expected failure, got \(failed)")
            return
        }
        #expect(failure.stage == .mailFrom)
        #expect(failure.reply.code == 553)
    }

    @Test(arguments: [(452, true), (554, false)])
    func endOfDataRefusalIsClassified(code: Int, transient: Bool) throws {
        var conversation = try Conversation.ready(Self.pipelining)
        conversation.client(try conversation.machine.beginTransaction(SMTPEnvelope(from: "s@x", recipients: ["a@y", "b@y"]), messageSize: nil))
        _ = try conversation.server("250 Ok\r\n250 Ok\r\n550 no b\r\n354 go\r\n")
        try Self.sendBody(&conversation, "body\r\n")
        _ = conversation.takeSent()
        let actions = try conversation.server("\(code) \(code / 100).3.0 not now or never\r\n")
        guard case .transactionFailed(let failure)? = actions.first else {
            Issue.record("expected failure, got \(actions)")
            return
        }
        #expect(failure.stage == .endOfData)
        #expect(failure.isTransient == transient)
        #expect(failure.recipients.map(\.status) == [.accepted, .refusedPermanently])
        // The end-of-data reply ends the transaction on the server: no RSET.
        #expect(conversation.takeSent().isEmpty)
        #expect(conversation.machine.state == .ready)
    }

    @Test func dataRefusedWithoutPipeliningResets() throws {
        var conversation = try Conversation.ready(Self.plain)
        conversation.client(try conversation.machine.beginTransaction(SMTPEnvelope(from: "s@x", recipients: ["a@y"]), messageSize: nil))
        _ = try conversation.server("250 Ok\r\n")
        _ = try conversation.server("250 Ok\r\n")
        #expect(try conversation.server("451 4.3.0 try later\r\n").isEmpty)
        #expect(conversation.takeSent().hasSuffix("DATA\r\nRSET\r\n"))
        let failed = try conversation.server("250 Ok\r\n")
        guard case .transactionFailed(let failure)? = failed.first else {
            Issue.record("expected failure, got \(failed)")
            return
        }
        #expect(failure.stage == .data && failure.isTransient)
    }

    @Test func explicitResetAndQuit() throws {
        var conversation = try Conversation.ready(Self.plain)
        conversation.client(try conversation.machine.reset())
        #expect(try conversation.server("250 2.0.0 Ok\r\n") == [.resetCompleted])
        conversation.client(try conversation.machine.quit())
        #expect(conversation.takeSent() == "RSET\r\nQUIT\r\n")
        #expect(try conversation.server("221 2.0.0 Bye\r\n") == [.closeConnection])
        #expect(conversation.machine.state == .closed)
    }

    @Test func sizeLimitIsCheckedBeforeSending() throws {
        var conversation = try Conversation.ready(Self.plain)
        #expect(throws: SMTPError.messageTooLarge(size: 2_000_000, limit: 1_000_000)) {
            try conversation.machine.beginTransaction(Self.envelope, messageSize: 2_000_000)
        }
        #expect(conversation.sent.isEmpty)
        #expect(conversation.machine.state == .ready)
    }

    @Test func internationalAddressesNeedSMTPUTF8() throws {
        let envelope = SMTPEnvelope(from: "jörg@example.de", recipients: ["b@y"])
        var without = try Conversation.ready(Self.plain)
        #expect(throws: SMTPError.self) { try without.machine.beginTransaction(envelope, messageSize: nil) }
        var with = try Conversation.ready(Self.plain + ["SMTPUTF8"])
        with.client(try with.machine.beginTransaction(envelope, messageSize: nil))
        #expect(with.takeSent() == "MAIL FROM:<jörg@example.de> BODY=8BITMIME SMTPUTF8\r\n")
    }

    @Test(arguments: ["a@b\r\nRCPT TO:<evil@x>", "a@b>", "<a@b", "a\u{0}b", ""])
    func unusableRecipientsAreRefusedBeforeAnythingIsSent(recipient: String) throws {
        var conversation = try Conversation.ready(Self.pipelining)
        #expect(throws: SMTPError.self) {
            try conversation.machine.beginTransaction(SMTPEnvelope(from: "s@x", recipients: [recipient]), messageSize: nil)
        }
        #expect(throws: SMTPError.self) {
            try conversation.machine.beginTransaction(SMTPEnvelope(from: "s@x", recipients: []), messageSize: nil)
        }
        #expect(conversation.sent.isEmpty)
    }
}

/// 421 (service not available, closing) may answer any command (RFC 5321 section 3.8).
@Suite struct SMTPServiceClosingTests {
    enum Point: String, CaseIterable, Sendable {
        case greeting, ehlo, startTLS, auth, authChallenge, mailFrom, recipient, pipelinedGroup, data, finalReply, reset, idle
    }

    /// Brings a conversation to `point` and returns it; the next reply answers what is in flight.
    static func conversation(at point: Point) throws -> Conversation {
        var conversation = Conversation()
        if point == .greeting { return conversation }
        _ = try conversation.server("220 ok\r\n")
        if point == .ehlo { return conversation }
        let pipelined = point == .pipelinedGroup
        let extensions = pipelined ? ["PIPELINING", "STARTTLS", "AUTH LOGIN"] : ["STARTTLS", "AUTH LOGIN"]
        _ = try conversation.server("250-mx\r\n" + extensions.dropLast().map { "250-\($0)\r\n" }.joined() + "250 \(extensions.last ?? "")\r\n")
        let envelope = SMTPEnvelope(from: "s@x", recipients: ["a@y", "b@y"])
        let credentials = SASLCredentials(user: "u", password: "p")
        switch point {
        case .greeting, .ehlo, .idle:
            break
        case .startTLS:
            conversation.client(try conversation.machine.startTLS())
        case .auth:
            conversation.client(try conversation.machine.authenticate(try SASLClient(mechanism: .login, credentials: credentials, host: "mx", port: 25), allowInsecure: true))
        case .authChallenge:
            conversation.client(try conversation.machine.authenticate(try SASLClient(mechanism: .login, credentials: credentials, host: "mx", port: 25), allowInsecure: true))
            _ = try conversation.server("334 VXNlcm5hbWU6\r\n")
        case .mailFrom:
            conversation.client(try conversation.machine.beginTransaction(envelope, messageSize: nil))
        case .recipient:
            conversation.client(try conversation.machine.beginTransaction(envelope, messageSize: nil))
            _ = try conversation.server("250 ok\r\n")
        case .pipelinedGroup:
            conversation.client(try conversation.machine.beginTransaction(envelope, messageSize: nil))
            _ = try conversation.server("250 ok\r\n250 ok\r\n")
        case .data:
            conversation.client(try conversation.machine.beginTransaction(envelope, messageSize: nil))
            _ = try conversation.server("250 ok\r\n250 ok\r\n250 ok\r\n")
        case .finalReply:
            conversation.client(try conversation.machine.beginTransaction(envelope, messageSize: nil))
            _ = try conversation.server("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
            try conversation.machine.messageBodySent()
        case .reset:
            conversation.client(try conversation.machine.reset())
        }
        return conversation
    }

    @Test(arguments: Point.allCases)
    func serviceClosingEndsTheSessionAsTransient(point: Point) throws {
        var conversation = try Self.conversation(at: point)
        do {
            _ = try conversation.server("421 4.3.2 Service shutting down, closing transmission channel\r\n")
            Issue.record("421 must throw at \(point)")
        } catch {
            guard case .serviceNotAvailable(_, let reply) = error else {
                Issue.record("unexpected \(error) at \(point)")
                return
            }
            #expect(reply.code == 421)
            #expect(error.isTransient)
        }
        #expect(conversation.machine.state == .closed)
        #expect(throws: SMTPError.self) { try conversation.machine.quit() }
    }
}
