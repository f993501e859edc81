import NIOCore
import Testing
@testable import GatepostPOP3

/// Drives the state machine with byte fixtures, no sockets.
struct Harness {
    var machine = POP3ClientStateMachine()
    var sent = ""

    mutating func send(_ command: POP3Command) throws {
        var buffer = ByteBuffer()
        try machine.send(command, into: &buffer)
        sent += String(buffer: buffer)
    }

    /// Feeds `text` in chunks of `chunkSize` and returns events with data chunks merged.
    mutating func receive(_ text: String, chunkSize: Int = .max) throws -> [POP3ClientStateMachine.Event] {
        var events: [POP3ClientStateMachine.Event] = []
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunkSize)
            var buffer = ByteBuffer(bytes: bytes[offset..<end])
            events += try machine.receive(&buffer)
            offset = end
        }
        return Self.mergeData(events)
    }

    static func mergeData(_ events: [POP3ClientStateMachine.Event]) -> [POP3ClientStateMachine.Event] {
        var merged: [POP3ClientStateMachine.Event] = []
        for event in events {
            if case .data(let command, var chunk) = event, case .data(_, var previous)? = merged.last {
                previous.writeBuffer(&chunk)
                merged[merged.count - 1] = .data(command, previous)
            } else {
                merged.append(event)
            }
        }
        return merged
    }
}

@Suite struct POP3ClientStateMachineTests {
    @Test func greetingCarriesTheAPOPTimestamp() throws {
        var harness = Harness()
        let events = try harness.receive("+OK Dovecot ready. <1896.697170952@dbc.mtview.ca.us>\r\n")
        #expect(events == [.greeting(POP3Greeting(text: "Dovecot ready. <1896.697170952@dbc.mtview.ca.us>"))])
        #expect(POP3Greeting(text: "Dovecot ready. <1896.697170952@dbc.mtview.ca.us>").apopTimestamp == "<1896.697170952@dbc.mtview.ca.us>")
        #expect(harness.machine.sessionState == .authorization)
    }

    @Test func negativeGreetingThrows() {
        var harness = Harness()
        #expect(throws: POP3Error.self) { try harness.receive("-ERR [SYS/TEMP] go away\r\n") }
    }

    @Test(arguments: [1, 2, 5, 1000])
    func retrUnstuffsDotsAndEndsAtTheTerminator(chunkSize: Int) throws {
        var harness = Harness()
        _ = try harness.receive("+OK hi\r\n")
        try harness.send(.user("u"))
        try harness.send(.pass("p"))
        _ = try harness.receive("+OK\r\n+OK logged in\r\n")
        #expect(harness.machine.sessionState == .transaction)
        try harness.send(.retr(1))
        // "..\r\n" is a stuffed lone dot: content, not the terminator.
        let events = try harness.receive(
            "+OK 30 octets\r\nSubject: x\r\n\r\n..dot line\r\n..\r\nend\r\n.\r\n",
            chunkSize: chunkSize
        )
        #expect(events == [
            .status(.retr(1), POP3StatusLine(isOK: true, text: "30 octets")),
            .data(.retr(1), ByteBuffer(string: "Subject: x\r\n\r\n.dot line\r\n.\r\nend\r\n")),
            .dataEnd(.retr(1)),
        ])
        #expect(!harness.machine.hasCommandsInFlight)
    }

    @Test func pipelinedResponsesMatchTheirCommands() throws {
        var harness = Harness()
        _ = try harness.receive("+OK\r\n")
        try harness.send(.user("u"))
        try harness.send(.pass("secret"))
        _ = try harness.receive("+OK\r\n+OK\r\n")
        try harness.send(.retr(1))
        try harness.send(.retr(2))
        try harness.send(.dele(1))
        let events = try harness.receive("+OK\r\na\r\n.\r\n+OK\r\nb\r\n.\r\n-ERR [SYS/PERM] no\r\n")
        #expect(events == [
            .status(.retr(1), POP3StatusLine(isOK: true, text: "")),
            .data(.retr(1), ByteBuffer(string: "a\r\n")),
            .dataEnd(.retr(1)),
            .status(.retr(2), POP3StatusLine(isOK: true, text: "")),
            .data(.retr(2), ByteBuffer(string: "b\r\n")),
            .dataEnd(.retr(2)),
            .status(.dele(1), POP3StatusLine(isOK: false, code: "SYS/PERM", text: "no")),
        ])
        #expect(!harness.machine.hasCommandsInFlight)
        #expect(harness.sent == "USER u\r\nPASS secret\r\nRETR 1\r\nRETR 2\r\nDELE 1\r\n")
    }

    @Test func errOnAMultilineCommandHasNoData() throws {
        var harness = Harness()
        _ = try harness.receive("+OK\r\n")
        try harness.send(.capa)
        let events = try harness.receive("-ERR unknown command\r\n")
        #expect(events == [.status(.capa, POP3StatusLine(isOK: false, text: "unknown command"))])
    }

    @Test func stlsRefusesInjectedPlaintext() throws {
        var harness = Harness()
        _ = try harness.receive("+OK\r\n")
        try harness.send(.stls)
        #expect(throws: POP3Error.protocolViolation("data received after the STLS response")) {
            try harness.receive("+OK begin TLS\r\n+OK injected\r\n")
        }
    }

    @Test func strayBytesAfterTheAnswerToQUITAreIgnored() throws {
        var harness = Harness()
        _ = try harness.receive("+OK\r\n")
        try harness.send(.quit)
        let events = try harness.receive("+OK bye\r\ngarbage the server should not have sent\r\n+OK\r\n")
        #expect(events.count == 1)
        #expect(harness.machine.sessionState == .closed)
        #expect(try harness.receive("more\r\n").isEmpty)
    }

    @Test func stlsWaitsForTLS() throws {
        var harness = Harness()
        _ = try harness.receive("+OK\r\n")
        try harness.send(.stls)
        _ = try harness.receive("+OK begin TLS\r\n")
        #expect(harness.machine.sessionState == .awaitingTLS)
        #expect(throws: POP3Error.self) { try harness.send(.capa) }
        try harness.machine.tlsEstablished()
        try harness.send(.capa)
    }

    @Test func endlessLineIsAProtocolViolation() throws {
        var harness = Harness()
        let long = String(repeating: "x", count: 20_000)
        #expect(throws: POP3Error.self) { try harness.receive("+OK " + long, chunkSize: 1000) }
    }

    @Test func commandsAreCheckedAgainstTheSessionState() throws {
        var harness = Harness()
        #expect(throws: POP3Error.self) { try harness.send(.capa) }
        _ = try harness.receive("+OK\r\n")
        #expect(throws: POP3Error.self) { try harness.send(.retr(1)) }
        #expect(throws: POP3Error.invalidArgument("a command argument contains a line break")) {
            try harness.send(.user("evil\r\nDELE 1"))
        }
    }

    @Test func responseCodesAreParsed() {
        #expect(POP3ClientStateMachine.parseStatus("-ERR [LOGIN-DELAY] wait") == POP3StatusLine(isOK: false, code: "LOGIN-DELAY", text: "wait"))
        #expect(POP3ClientStateMachine.parseStatus("+OK") == POP3StatusLine(isOK: true, text: ""))
        #expect(POP3ClientStateMachine.parseStatus("OK") == nil)
    }

    @Test func connectionClosedMidCommandIsAnError() throws {
        var harness = Harness()
        _ = try harness.receive("+OK\r\n")
        try harness.send(.capa)
        #expect(harness.machine.connectionClosed() == .connectionClosed(during: "CAPA"))
    }

    @Test func secretsAreMaskedInLogDescriptions() {
        #expect(POP3Command.pass("hunter2").logDescription == "PASS ****")
        #expect(!POP3Command.apop(user: "u", digest: "abc").logDescription.contains("abc"))
    }

    @Test func listingsAreValidated() throws {
        let entries = try POP3Session.parseListing(["1 abc", "2 def"], command: "UIDL") { !$0.isEmpty }
        #expect(entries == [POP3ListingEntry(number: 1, value: "abc"), POP3ListingEntry(number: 2, value: "def")])
        #expect(throws: POP3Error.self) { try POP3Session.parseListing(["x abc"], command: "UIDL") { _ in true } }
    }
}

import Foundation

@Suite struct POP3AuthenticationTests {
    @Test func apopDigestMatchesRFC1939() {
        #expect(POP3Session.apopDigest(timestamp: "<1896.697170952@dbc.mtview.ca.us>", password: "tanstaaf")
            == "c4c9334bac560ecc979e58001b3e22fb")
    }

    @Test func onlyChallengeResponseAndCertificatesKeepSecretsOffTheWire() {
        #expect(POP3AuthMechanism.allCases.filter { !$0.sendsSecretInClear } == [.apop, .cramMD5, .external])
    }

    @Test func theDefaultOrderEndsWithUserAndNeverGuessesAPOP() {
        #expect(POP3AuthMechanism.defaultPreference(connectionIsEncrypted: false) == [.external, .xoauth2, .oauthbearer, .cramMD5, .plain, .login, .user])
        #expect(POP3AuthMechanism.defaultPreference(connectionIsEncrypted: true).last == .user)
        #expect(!POP3AuthMechanism.defaultPreference(connectionIsEncrypted: true).contains(.apop))
    }
}
