import NIOCore
import GatepostTestSupport
import Testing
@testable import GatepostSMTP


@Suite struct SMTPDataEncoderTests {
    static func encode(_ input: [UInt8], chunkSize: Int) -> [UInt8] {
        var encoder = SMTPDataEncoder()
        var output = ByteBuffer()
        var offset = 0
        while offset < input.count {
            let end = min(input.count, offset + chunkSize)
            encoder.encode(ByteBuffer(bytes: input[offset..<end]), into: &output)
            offset = end
        }
        encoder.finish(into: &output)
        return Array(output.readableBytesView)
    }

    static func encode(_ text: String) -> String {
        String(decoding: encode(Array(text.utf8), chunkSize: .max), as: UTF8.self)
    }

    /// A plain, line-at-a-time statement of the rules, to hold the streaming encoder against.
    static func reference(_ input: [UInt8]) -> [UInt8] {
        var lines: [[UInt8]] = []
        var line: [UInt8] = []
        var index = 0
        var endsWithLineBreak = true
        while index < input.count {
            let byte = input[index]
            if byte == 0x0D || byte == 0x0A {
                lines.append(line)
                line = []
                // CRLF is one line break; a lone CR or LF is one too.
                if byte == 0x0D, index + 1 < input.count, input[index + 1] == 0x0A { index += 1 }
                endsWithLineBreak = true
            } else {
                line.append(byte)
                endsWithLineBreak = false
            }
            index += 1
        }
        if !endsWithLineBreak { lines.append(line) }
        var out: [UInt8] = []
        for line in lines {
            if line.first == UInt8(ascii: ".") { out.append(UInt8(ascii: ".")) }
            out += line + [0x0D, 0x0A]
        }
        return out + Array(".\r\n".utf8)
    }

    @Test func examples() {
        #expect(Self.encode("") == ".\r\n")
        #expect(Self.encode("a") == "a\r\n.\r\n")
        #expect(Self.encode("a\r\n") == "a\r\n.\r\n")
        #expect(Self.encode(".") == "..\r\n.\r\n")
        #expect(Self.encode(".\r\n") == "..\r\n.\r\n")
        #expect(Self.encode("a\n.b\nc") == "a\r\n..b\r\nc\r\n.\r\n")
        #expect(Self.encode("..x\r\n") == "...x\r\n.\r\n")
        #expect(Self.encode("a.b\r\n .c\r\n") == "a.b\r\n .c\r\n.\r\n")
        #expect(Self.encode("a\r\r\nb") == "a\r\n\r\nb\r\n.\r\n")
        #expect(Self.encode("a\rb") == "a\r\nb\r\n.\r\n")
        #expect(Self.encode("a\r") == "a\r\n.\r\n")
        #expect(Self.encode("\n\n") == "\r\n\r\n.\r\n")
        // The SMTP smuggling sequence cannot end the data early.
        #expect(Self.encode("x\n.\r\nMAIL FROM:<evil@x>\r\n") == "x\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n")
        #expect(Self.encode("x\r\n.\rnext") == "x\r\n..\r\nnext\r\n.\r\n")
    }

    /// Random inputs rich in the bytes that matter, in every chunking: the output is the same and
    /// follows the rules. It yields between rounds: the tests share a small thread pool with the
    /// session tests, whose timeouts must not suffer from a busy neighbour.
    @Test func chunkInvariantAndCorrect() async {
        var generator = SplitMix64(state: 0x5EED_2920)
        let alphabet: [UInt8] = Array(".\r\n.\n\r.a b\u{7F}".utf8) + [0xC3, 0xA9, 0x00]
        for round in 0..<200 {
            let length = round < 50 ? round : Int.random(in: 0...5000, using: &generator)
            let input = (0..<length).map { _ in alphabet.randomElement(using: &generator) ?? 0x61 }
            let whole = Self.encode(input, chunkSize: max(1, input.count))
            #expect(whole == Self.reference(input), "round \(round)")
            for chunkSize in [1, 7, 4096] {
                #expect(Self.encode(input, chunkSize: chunkSize) == whole, "round \(round), chunk size \(chunkSize)")
            }
            Self.checkWireRules(whole)
            await Task.yield()
        }
    }

    /// Every line ends in CRLF, no CR or LF stands alone, and the only line that is a lone "."
    /// is the last.
    static func checkWireRules(_ output: [UInt8]) {
        #expect(output.suffix(3) == Array(".\r\n".utf8))
        var lineStart = 0
        var index = 0
        var lines: [ArraySlice<UInt8>] = []
        while index < output.count {
            if output[index] == 0x0D {
                #expect(index + 1 < output.count && output[index + 1] == 0x0A)
                lines.append(output[lineStart..<index])
                index += 2
                lineStart = index
            } else {
                #expect(output[index] != 0x0A)
                index += 1
            }
        }
        #expect(lineStart == output.count)
        #expect(lines.last.map(Array.init) == [UInt8(ascii: ".")])
        for line in lines.dropLast() {
            #expect(Array(line) != [UInt8(ascii: ".")])
            // A leading dot is always doubled.
            if line.first == UInt8(ascii: ".") { #expect(line.dropFirst().first == UInt8(ascii: ".")) }
        }
    }

    @Test func largeInputStreamsInBoundedPieces() {
        // 8 MiB of lines: each chunk's output is proportional to the chunk, not the message.
        var encoder = SMTPDataEncoder()
        let chunk = ByteBuffer(string: String(repeating: ".line of text\n", count: 4681))
        var largestOutput = 0
        for _ in 0..<128 {
            var output = ByteBuffer()
            encoder.encode(chunk, into: &output)
            largestOutput = max(largestOutput, output.readableBytes)
        }
        var end = ByteBuffer()
        encoder.finish(into: &end)
        #expect(largestOutput == chunk.readableBytes + 2 * 4681)
        #expect(String(buffer: end) == ".\r\n")
    }
}
