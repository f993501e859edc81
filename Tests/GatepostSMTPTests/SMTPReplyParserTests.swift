import NIOCore
import Testing
@testable import GatepostSMTP

@Suite struct SMTPReplyParserTests {
    /// Feeds `text` in chunks of `chunkSize` and collects every reply.
    static func parse(_ text: String, chunkSize: Int = .max, limits: SMTPReplyParser.Limits = .init()) throws(SMTPReplyParserError) -> [SMTPReply] {
        var parser = SMTPReplyParser(limits: limits)
        var replies: [SMTPReply] = []
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunkSize)
            var buffer = ByteBuffer(bytes: bytes[offset..<end])
            while let reply = try parser.nextReply(from: &buffer) { replies.append(reply) }
            #expect(buffer.readableBytes == 0)
            offset = end
        }
        #expect(!parser.hasPartialReply)
        return replies
    }

    @Test func singleLineReply() throws {
        #expect(try Self.parse("220 mx.example.com ESMTP Postfix\r\n") == [SMTPReply(code: 220, lines: ["mx.example.com ESMTP Postfix"])])
    }

    @Test(arguments: [1, 2, 7, 1000])
    func multiLineReplyInAnyChunking(chunkSize: Int) throws {
        let replies = try Self.parse(
            "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n354 go ahead\r\n",
            chunkSize: chunkSize
        )
        #expect(replies == [
            SMTPReply(code: 250, lines: ["mx.example.com", "PIPELINING", "SIZE 10240000", "8BITMIME"]),
            SMTPReply(code: 354, lines: ["go ahead"]),
        ])
    }

    @Test func enhancedStatusCodesAreSplitOff() throws {
        let replies = try Self.parse("550-5.1.1 <nobody@example.com>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n")
        #expect(replies == [SMTPReply(
            code: 550,
            enhancedStatusCode: SMTPEnhancedStatusCode(statusClass: 5, subject: 1, detail: 1),
            lines: ["<nobody@example.com>: Recipient address rejected:", "User unknown"]
        )])
        #expect(replies[0].description == "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown")
        #expect(replies[0].isPermanentFailure)
    }

    @Test func enhancedCodeMustMatchTheReplyClassAndShape() throws {
        // A 4.x.x under a 250 is text, and so is a version number or a date.
        #expect(try Self.parse("250 4.2.0 odd\r\n")[0].enhancedStatusCode == nil)
        #expect(try Self.parse("250 2.0 not three fields\r\n")[0].enhancedStatusCode == nil)
        #expect(try Self.parse("250 2.1234.0 too many digits\r\n")[0].enhancedStatusCode == nil)
        #expect(try Self.parse("451 4.7.1\r\n")[0] == SMTPReply(code: 451, enhancedStatusCode: .init(statusClass: 4, subject: 7, detail: 1), lines: [""]))
        #expect(try Self.parse("250 2.0.0Ok\r\n")[0].enhancedStatusCode == nil)
    }

    @Test func bareCodeAndBareLFAreAccepted() throws {
        #expect(try Self.parse("250\r\n") == [SMTPReply(code: 250, lines: [""])])
        #expect(try Self.parse("250-a\n250 b\n") == [SMTPReply(code: 250, lines: ["a", "b"])])
    }

    @Test func categoriesFollowTheFirstDigit() throws {
        let replies = try Self.parse("250 ok\r\n354 go\r\n451 later\r\n554 no\r\n")
        #expect(replies.map(\.category) == [.positiveCompletion, .positiveIntermediate, .transientNegative, .permanentNegative])
        #expect(replies[2].isTransientFailure && !replies[2].isPermanentFailure)
    }

    @Test(arguments: ["hello\r\n", "25\r\n", "250x ok\r\n", "650 not a class\r\n", "2a0 ok\r\n", "\r\n"])
    func malformedLinesAreTypedErrors(text: String) {
        #expect(throws: SMTPReplyParserError.self) { try Self.parse(text) }
    }

    @Test func mixedCodesInOneReplyAreRefused() {
        #expect(throws: SMTPReplyParserError.inconsistentCode(first: 250, line: 251)) {
            try Self.parse("250-a\r\n251 b\r\n")
        }
    }

    @Test func lineLengthIsLimited() throws {
        let limits = SMTPReplyParser.Limits(maxLineLength: 2048, maxLinesPerReply: 256)
        let longest = "250 " + String(repeating: "x", count: 2044) + "\r\n"
        #expect(try Self.parse(longest, limits: limits).count == 1)
        let tooLong = "250 " + String(repeating: "x", count: 2045) + "\r\n"
        #expect(throws: SMTPReplyParserError.lineTooLong(limit: 2048)) { try Self.parse(tooLong, limits: limits) }
        // An endless line is refused before it ends, whatever the chunking.
        let endless = "250 " + String(repeating: "x", count: 10_000)
        #expect(throws: SMTPReplyParserError.lineTooLong(limit: 2048)) { try Self.parse(endless, chunkSize: 100, limits: limits) }
    }

    @Test func linesPerReplyAreLimited() throws {
        let limits = SMTPReplyParser.Limits(maxLineLength: 2048, maxLinesPerReply: 256)
        let allowed = String(repeating: "250-x\r\n", count: 255) + "250 x\r\n"
        #expect(try Self.parse(allowed, limits: limits)[0].lines.count == 256)
        let tooMany = String(repeating: "250-x\r\n", count: 256) + "250 x\r\n"
        #expect(throws: SMTPReplyParserError.tooManyLines(limit: 256)) { try Self.parse(tooMany, limits: limits) }
    }

    @Test func bytesAfterAReplyStayInTheBuffer() throws {
        var parser = SMTPReplyParser()
        var buffer = ByteBuffer(string: "220 ready\r\n250 next")
        #expect(try parser.nextReply(from: &buffer) == SMTPReply(code: 220, lines: ["ready"]))
        #expect(buffer.readableBytes == 8)
        #expect(try parser.nextReply(from: &buffer) == nil)
        #expect(parser.hasPartialReply)
    }

    @Test func descriptionsNeutraliseControlCharacters() {
        let reply = SMTPReply(code: 250, lines: ["ok\u{1B}[31m"])
        #expect(!reply.description.contains("\u{1B}"))
    }
}
