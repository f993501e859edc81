import Testing
@testable import GatepostMIME

/// Collects what the parser reports, so tests can compare whole results.
struct CollectingHandler: MIMEPartHandler {
    var parts: [MIMEPart] = []
    var bodies: [Int: [UInt8]] = [:]
    var ended: [Int] = []

    mutating func partDidBegin(_ part: MIMEPart) throws { parts.append(part) }
    mutating func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {
        bodies[index, default: []].append(contentsOf: bytes)
    }
    mutating func partDidEnd(_ index: Int) throws { ended.append(index) }

    func text(_ index: Int) -> String { String(decoding: bodies[index] ?? [], as: UTF8.self) }
}

func parse(_ message: String, chunkSize: Int? = nil, limits: MIMELimits = .default) throws -> CollectingHandler {
    try parse(Array(message.utf8), chunkSize: chunkSize, limits: limits)
}

func parse(_ bytes: [UInt8], chunkSize: Int? = nil, limits: MIMELimits = .default) throws -> CollectingHandler {
    var parser = MIMEStreamParser(limits: limits)
    var handler = CollectingHandler()
    let size = chunkSize ?? max(bytes.count, 1)
    var offset = 0
    while offset < bytes.count {
        let end = min(offset + size, bytes.count)
        try parser.feed(Array(bytes[offset..<end]), into: &handler)
        offset = end
    }
    try parser.finish(into: &handler)
    return handler
}

func crlf(_ text: String) -> String { text.replacingOccurrences(of: "\n", with: "\r\n") }

let mixedWithAttachment = crlf("""
From: a@example.com
To: b@example.com
Subject: =?UTF-8?B?w5xiZXJzaWNodA==?= for
 March
Message-ID: <abc@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="==outer=="

This is the preamble.
--==outer==
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello =C3=9Cbersicht, see attached.=20
A soft=
 break.
.leading dot
--==outer==
Content-Type: application/octet-stream
Content-Disposition: attachment;
 filename*=utf-8''%C3%9Cbersicht%202026.csv
Content-Transfer-Encoding: base64

YSxiLGMKMSwy
LDMK
--==outer==--
epilogue
""")

@Suite struct MIMEStreamParserTests {
    @Test func parsesMultipartWithAttachment() throws {
        let result = try parse(mixedWithAttachment)
        #expect(result.parts.count == 3)
        let top = try #require(result.parts.first)
        #expect(top.contentType.mimeType == "multipart/mixed")
        #expect(top.isMultipart)
        #expect(top.header.messageID == "abc@example.com")
        #expect(top.header["Subject"].map(EncodedWords.decode) == "Übersicht for March")
        #expect(result.text(1) == "Hello Übersicht, see attached. \r\nA soft break.\r\n.leading dot")
        #expect(result.parts[2].fileName == "Übersicht 2026.csv")
        #expect(result.parts[2].disposition?.isAttachment == true)
        #expect(result.text(2) == "a,b,c\n1,2,3\n")
        #expect(result.ended == [1, 2, 0])
    }

    @Test(arguments: [1, 2, 3, 7, 64, 4096])
    func chunkSizeDoesNotChangeTheResult(chunkSize: Int) throws {
        let whole = try parse(mixedWithAttachment)
        let chunked = try parse(mixedWithAttachment, chunkSize: chunkSize)
        #expect(chunked.parts == whole.parts)
        #expect(chunked.bodies == whole.bodies)
        #expect(chunked.ended == whole.ended)
    }

    @Test func bareLineFeedsWork() throws {
        let message = mixedWithAttachment.replacingOccurrences(of: "\r\n", with: "\n")
        let result = try parse(message)
        #expect(result.parts.count == 3)
        #expect(result.text(2) == "a,b,c\n1,2,3\n")
    }

    @Test func singlePartBodyKeepsItsBytes() throws {
        let result = try parse(crlf("Subject: hi\n\nline one\nline two\n"))
        #expect(result.parts.count == 1)
        #expect(result.text(0) == "line one\r\nline two\r\n")
    }

    @Test func missingFinalBoundaryClosesEverything() throws {
        let message = crlf("""
        Content-Type: multipart/mixed; boundary=a

        --a
        Content-Type: multipart/alternative; boundary=b

        --b
        Content-Type: text/plain

        plain
        --b
        Content-Type: text/html

        <p>html</p>
        --a
        Content-Type: text/plain
        Content-Disposition: attachment; filename=notes.txt

        notes
        """)
        let result = try parse(message)
        #expect(result.parts.map(\.contentType.mimeType) == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/plain"])
        #expect(result.parts.map(\.depth) == [0, 1, 2, 2, 1])
        #expect(result.text(3) == "<p>html</p>")
        #expect(result.text(4) == "notes")
        #expect(Set(result.ended) == Set(0...4))
    }

    @Test func boundaryMatchingToleratesPaddingAndIgnoresPrefixLines() throws {
        let message = crlf("""
        Content-Type: multipart/mixed; boundary="b"

        --b  
        Content-Type: text/plain

        --bogus is content
        --b--
        """)
        let result = try parse(message)
        #expect(result.parts.count == 2)
        #expect(result.text(1) == "--bogus is content")
    }

    @Test func longBodyLinesStreamInPieces() throws {
        let long = String(repeating: "x", count: 100_000)
        let message = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n\(long)\nend\n--b--\n")
        for chunk in [1000, 70_000] {
            let result = try parse(message, chunkSize: chunk)
            #expect(result.text(1) == long + "\r\nend")
        }
    }

    @Test func headerLimitsThrow() throws {
        let hugeHeader = "X-Junk: " + String(repeating: "a", count: 2_000) + "\r\n\r\nbody"
        #expect(throws: MIMEError.limitExceeded(.headerLineLength)) {
            try parse(hugeHeader, chunkSize: 100, limits: MIMELimits(maxHeaderLineLength: 1_000))
        }
        let manyLines = String(repeating: "X-A: b\r\n", count: 200) + "\r\nbody"
        #expect(throws: MIMEError.limitExceeded(.headerBytes)) {
            try parse(manyLines, limits: MIMELimits(maxHeaderBytes: 1_000))
        }
    }

    @Test func nestingAndPartLimitsThrow() throws {
        var message = ""
        for level in 0..<10 {
            message += "Content-Type: multipart/mixed; boundary=b\(level)\r\n\r\n--b\(level)\r\n"
        }
        message += "\r\nleaf\r\n"
        #expect(throws: MIMEError.limitExceeded(.depth)) {
            try parse(message, limits: MIMELimits(maxDepth: 5))
        }
        let parts = "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + String(repeating: "--b\r\n\r\nx\r\n", count: 50) + "--b--\r\n"
        #expect(throws: MIMEError.limitExceeded(.parts)) {
            try parse(parts, limits: MIMELimits(maxParts: 10))
        }
    }

    @Test func digestPartsDefaultToMessageRFC822() throws {
        let message = crlf("""
        Content-Type: multipart/digest; boundary=d

        --d

        Subject: inner

        inner body
        --d--
        """)
        let result = try parse(message)
        #expect(result.parts[1].contentType == .messageRFC822)
        #expect(result.text(1) == "Subject: inner\r\n\r\ninner body")
    }
}

@Suite struct FieldParsingTests {
    @Test func contentTypeParametersWithQuotesCommentsAndCase() throws {
        let type = try #require(ContentType(parsing: "Multipart/Mixed (comment); Boundary=\"a b\\\"c\"; charset=UTF-8 (x)"))
        #expect(type.mimeType == "multipart/mixed")
        #expect(type.boundary == "a b\"c")
        #expect(type.charset == "UTF-8")
    }

    @Test func rfc2231ContinuationsAndCharsets() throws {
        let disposition = try #require(ContentDisposition(parsing:
            "attachment; filename*0*=iso-8859-1'de'%FCber; filename*1=sicht; filename*2*=%2Ecsv; filename=fallback.csv"))
        #expect(disposition.fileName == "übersicht.csv")
        #expect(disposition.isAttachment)
    }

    @Test func anRFC2231ValueInQuotesIsDecodedWhenItHasACharset() throws {
        // Invalid, but Pine and others send it; Python, MimeKit and mime4j decode it.
        let quoted = try #require(ContentDisposition(parsing: "attachment; filename*=\"iso-8859-1''HasenundFr%F6sche.txt\""))
        #expect(quoted.fileName == "HasenundFrösche.txt")
        let continued = try #require(ContentDisposition(parsing: "attachment; filename*0*=\"utf-8''Gr%C3%BC\"; filename*1*=\"%C3%9Fe.txt\""))
        #expect(continued.fileName == "Grüße.txt")
        // Without the charset'language' prefix, a quoted value is taken as written.
        let literal = try #require(ContentDisposition(parsing: "attachment; filename*=\"50%25 off.txt\""))
        #expect(literal.fileName == "50%25 off.txt")
    }

    @Test func encodedWordsInEveryForm() {
        #expect(EncodedWords.decode("=?iso-8859-1?Q?Gr=FC=DFe_aus?= =?UTF-8?B?S8O2bG4=?=") == "Grüße ausKöln")
        #expect(EncodedWords.decode("plain =?broken") == "plain =?broken")
        #expect(EncodedWords.decode("a =?utf-8?q?x?= b") == "a x b")
    }

    @Test func headerUnfoldingAndJunkLines() {
        let header = MessageHeader.parse(Array("Subject: one\r\n two\r\nnot a header\r\nX-Empty:\r\nFrom: a@b\r\n".utf8))
        #expect(header["subject"] == "one two")
        #expect(header["X-Empty"] == "")
        #expect(header["FROM"] == "a@b")
        #expect(header.fields.count == 3)
    }

    @Test func base64ToleratesJunkAndSplitQuanta() {
        var decoder = Base64Decoder()
        var out: [UInt8] = []
        decoder.decode(Array("SGVs\r\n bG8g*".utf8), into: &out)
        decoder.decode(Array("d29y".utf8), into: &out)
        decoder.decode(Array("bGQ".utf8), into: &out)
        decoder.finish(into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "Hello world")
    }

    @Test func quotedPrintableSoftBreaksAndMalformedEscapes() {
        var decoder = QuotedPrintableDecoder()
        var out: [UInt8] = []
        for piece in ["a=3D", "b=", "\r\nc  \r\n", "d=Zz=", "4", "1 = \r\ne"] {
            Array(piece.utf8).withUnsafeBytes { decoder.decode($0, into: &out) }
        }
        decoder.finish(into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "a=bc\r\nd=ZzA e")
    }
}
