import Foundation
import Testing
@testable import GatepostMIME

/// Everything a parse produced, comparable: part structure, each body's length and bytes (as a
/// checksum), the error if any.
struct ParseTranscript: Equatable, CustomStringConvertible {
    var events: [String] = []
    var description: String { events.joined(separator: "\n") }
}

struct TranscriptHandler: MIMEPartHandler {
    var transcript = ParseTranscript()
    var bodies: [Int: [UInt8]] = [:]

    mutating func partDidBegin(_ part: MIMEPart) throws {
        transcript.events.append(
            "begin \(part.index) parent=\(part.parent.map(String.init) ?? "-") \(part.contentType.mimeType) "
                + "file=\(part.fileName ?? "-") fields=\(part.header.fields.count)"
        )
    }

    mutating func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {
        bodies[index, default: []].append(contentsOf: bytes)
    }

    mutating func partDidEnd(_ index: Int) throws {
        let body = bodies.removeValue(forKey: index) ?? []
        let checksum = body.reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
        transcript.events.append("end \(index) bytes=\(body.count) fnv=\(String(checksum, radix: 16))")
    }
}

enum Corpus {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus")

    static func messages() throws -> [(name: String, bytes: [UInt8])] {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".eml") }.sorted()
        return try names.map { ($0, [UInt8](try Data(contentsOf: folder.appendingPathComponent($0)))) }
    }

    /// Parses `bytes` fed in chunks of `chunkSize` (nil: all at once).
    static func transcript(of bytes: [UInt8], chunkSize: Int?) -> ParseTranscript {
        var parser = MIMEStreamParser()
        var handler = TranscriptHandler()
        do {
            let size = chunkSize ?? max(1, bytes.count)
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + size)
                try parser.feed(Array(bytes[offset..<end]), into: &handler)
                offset = end
            }
            try parser.finish(into: &handler)
        } catch {
            handler.transcript.events.append("error \(error)")
        }
        return handler.transcript
    }
}

@Suite struct CorpusPropertyTests {
    @Test func theCorpusIsThere() throws {
        #expect(try Corpus.messages().count >= 20)
    }

    /// The parser's promise: chunk boundaries never change the result.
    @Test(arguments: [1, 7, 4096])
    func everyCorpusMessageParsesTheSameInChunks(chunkSize: Int) throws {
        for (name, bytes) in try Corpus.messages() {
            let whole = Corpus.transcript(of: bytes, chunkSize: nil)
            let chunked = Corpus.transcript(of: bytes, chunkSize: chunkSize)
            #expect(chunked == whole, "\(name) in chunks of \(chunkSize)")
            let first = whole.events.first ?? ""
            #expect(first.hasPrefix("begin 0") || first.hasPrefix("error"), "\(name) has a top-level part")
        }
    }

    @Test func limitsEndTheParseWithAnError() throws {
        let messages = Dictionary(uniqueKeysWithValues: try Corpus.messages().map { ($0.name, $0.bytes) })
        let deep = Corpus.transcript(of: try #require(messages["nesting-past-limit.eml"]), chunkSize: 7)
        #expect(deep.events.last == "error \(MIMEError.limitExceeded(.depth))")
        let long = Corpus.transcript(of: try #require(messages["header-line-past-limit.eml"]), chunkSize: 4096)
        #expect(long.events.last == "error \(MIMEError.limitExceeded(.headerLineLength))")
    }
}

/// Collects what a ``UUEncodedFileExtractor`` finds.
struct UUCollector: UUEncodedFileHandler {
    var text: [UInt8] = []
    var files: [(name: String, bytes: [UInt8], complete: Bool)] = []
    var current: (name: String, bytes: [UInt8])?

    mutating func text(_ bytes: UnsafeRawBufferPointer) throws { text.append(contentsOf: bytes) }
    mutating func fileDidBegin(name: String) throws { current = (name, []) }
    mutating func file(didReceive bytes: UnsafeRawBufferPointer) throws { current?.bytes.append(contentsOf: bytes) }
    mutating func fileDidEnd(complete: Bool) throws {
        if let current { files.append((current.name, current.bytes, complete)) }
        current = nil
    }
}

@Suite struct UUEncodedFileTests {
    static func extract(_ text: String, chunkSize: Int) throws -> UUCollector {
        let bytes = Array(text.utf8)
        var extractor = UUEncodedFileExtractor()
        var collector = UUCollector()
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunkSize)
            try Array(bytes[offset..<end]).withUnsafeBytes { try extractor.feed($0, into: &collector) }
            offset = end
        }
        try extractor.finish(into: &collector)
        return collector
    }

    @Test(arguments: [1, 7, 4096])
    func findsAUUEncodedFileAndKeepsTheText(chunkSize: Int) throws {
        // `uuencode` of "Hello, world!\n" (Python's binascii.b2a_uu with backticks).
        let text = "Here it is:\r\n\r\nbegin 644 hello.txt\r\n.2&5L;&\\L('=O<FQD(0H`\r\n`\r\nend\r\nbye\r\n"
        let result = try Self.extract(text, chunkSize: chunkSize)
        #expect(result.files.count == 1)
        #expect(result.files.first?.name == "hello.txt")
        #expect(result.files.first.map { String(decoding: $0.bytes, as: UTF8.self) } == "Hello, world!\n")
        #expect(result.files.first?.complete == true)
        #expect(String(decoding: result.text, as: UTF8.self) == "Here it is:\r\n\r\nbye\r\n")
    }

    @Test func findsABase64EncodedFile() throws {
        let text = "begin-base64 600 data.bin\nSGVsbG8=\n====\n"
        let result = try Self.extract(text, chunkSize: 3)
        #expect(result.files.map(\.name) == ["data.bin"])
        #expect(result.files.first.map { String(decoding: $0.bytes, as: UTF8.self) } == "Hello")
    }

    @Test func aFileWithoutEndIsIncompleteAndNotABeginLineIsText() throws {
        let result = try Self.extract("begin now, please\nbegin 644 a.txt\n#86)C\n", chunkSize: 5)
        #expect(String(decoding: result.text, as: UTF8.self) == "begin now, please\n")
        #expect(result.files.map(\.name) == ["a.txt"])
        #expect(result.files.first.map { String(decoding: $0.bytes, as: UTF8.self) } == "abc")
        #expect(result.files.first?.complete == false)
    }
}

@Suite struct CharsetTests {
    @Test func foundationCharsetsByIANAName() {
        #expect(Charset.decode([0xD0, 0xD2, 0xC9, 0xD7, 0xC5, 0xD4], charset: "KOI8-R") == "привет")
        #expect(Charset.decode([0xA4], charset: "iso-8859-15") == "€")
        #expect(Charset.decode([0x80], charset: "windows-1252") == "€")
        #expect(Charset.decode([0xAF, 0xE0, 0xA8, 0xA2, 0xA5, 0xE2], charset: "cp866") == "привет")
        #expect(Charset.decode([0xA1], charset: "windows-874") == "ก")
        #expect(Charset.decode([0xC4, 0xE3, 0xBA, 0xC3], charset: "gb2312") == "你好")
        // Unknown charsets keep every byte (Latin-1) rather than failing.
        #expect(Charset.decode([0x41, 0xE9], charset: "x-unknown") == "Aé")
    }
}
