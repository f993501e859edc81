// Parse + decode + hash throughput of GatepostMIME on one core, with peak memory.
//
//   swift run -c release gatepost-mime-benchmark [--attachment-mib 100] [--messages 10000]
//
// Input is fed in 64 KiB chunks, as reads from a socket arrive. Every leaf part's decoded body
// is hashed with SHA-256 (as the spool writer does); `+raw` rows also hash the raw message, as
// the poll does for the copy it keeps. Each case checks its result, so a fast wrong parser fails.
import Crypto
import Foundation
import GatepostMIME

#if canImport(Glibc)
import Glibc
#endif

struct HashingSink: MIMEPartHandler {
    var hashers: [Int: SHA256] = [:]
    var digests: [Int: [UInt8]] = [:]
    var bytes: [Int: Int] = [:]

    mutating func partDidBegin(_ part: MIMEPart) throws {
        if !part.isMultipart { hashers[part.index] = SHA256() }
    }

    mutating func part(_ index: Int, didReceive chunk: UnsafeRawBufferPointer) throws {
        hashers[index]?.update(bufferPointer: chunk)
        bytes[index, default: 0] += chunk.count
    }

    mutating func partDidEnd(_ index: Int) throws {
        if let hasher = hashers.removeValue(forKey: index) {
            digests[index] = Array(hasher.finalize())
        }
    }
}

/// Deterministic bytes, so runs are comparable.
struct XorShift {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count)
        while out.count < count {
            withUnsafeBytes(of: next()) { out.append(contentsOf: $0.prefix(count - out.count)) }
        }
        return out
    }
}

/// base64 in 76-character lines with CRLF, as mailers write it.
func base64Lines(_ data: [UInt8]) -> [UInt8] {
    Array(Data(data).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed]).utf8) + [13, 10]
}

func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

struct Measurement {
    var name: String
    var inputBytes: Int
    var seconds: Double
    var cpu: Double
    var messages: Int

    var line: String {
        let mbps = Double(inputBytes) / 1_000_000 / seconds
        let rate = Double(messages) / seconds
        return String(
            format: "%@ %9.1f MB  %7.3f s  %7.3f cpu-s  %8.1f MB/s  %9.0f msg/s",
            name.padding(toLength: 40, withPad: " ", startingAt: 0) as NSString, Double(inputBytes) / 1_000_000, seconds, cpu, mbps, rate
        )
    }
}

func measure(_ name: String, messages: Int, _ body: () throws -> Int) rethrows -> Measurement {
    let cpu0 = cpuSeconds()
    let start = ContinuousClock.now
    let bytes = try body()
    let elapsed = start.duration(to: .now)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return Measurement(name: name, inputBytes: bytes, seconds: seconds, cpu: cpuSeconds() - cpu0, messages: messages)
}

/// Feeds `segments` (some repeated) through one parser in 64 KiB chunks.
func parse(_ segments: [(bytes: [UInt8], repeats: Int)], hashRaw: Bool) throws -> (HashingSink, Int) {
    var parser = MIMEStreamParser()
    var sink = HashingSink()
    var raw = SHA256()
    var chunk = [UInt8]()
    chunk.reserveCapacity(65536)
    var total = 0
    func flush() throws {
        try chunk.withUnsafeBytes { bytes in
            if hashRaw { raw.update(bufferPointer: bytes) }
            try parser.feed(bytes, into: &sink)
        }
        total += chunk.count
        chunk.removeAll(keepingCapacity: true)
    }
    for segment in segments {
        for _ in 0..<segment.repeats {
            var offset = 0
            while offset < segment.bytes.count {
                let take = min(65536 - chunk.count, segment.bytes.count - offset)
                chunk.append(contentsOf: segment.bytes[offset..<offset + take])
                offset += take
                if chunk.count == 65536 { try flush() }
            }
        }
    }
    try flush()
    try parser.finish(into: &sink)
    if hashRaw { _ = raw.finalize() }
    return (sink, total)
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("benchmark check failed: \(message)\n".utf8))
    exit(1)
}

// MARK: - Arguments

var attachmentMiB = 100
var messageCount = 10_000
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--attachment-mib": attachmentMiB = arguments.popFirst().flatMap(Int.init) ?? attachmentMiB
    case "--messages": messageCount = arguments.popFirst().flatMap(Int.init) ?? messageCount
    default: fail("unknown argument \(argument)")
    }
}

var random = XorShift()
var results: [Measurement] = []

// MARK: - One large base64 attachment

// The attachment is a 3 MiB block (a multiple of 3 bytes, so its base64 has no padding)
// repeated; it decodes to the block repeated, whose hash is computed independently below.
let block = random.bytes(3 * 1024 * 1024)
let blockRepeats = (attachmentMiB + 2) / 3
let blockBase64 = base64Lines(block)
let header = Array("""
From: partner@example.com\r
To: gateway@example.com\r
Subject: large file\r
Message-ID: <bench-large@example.com>\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary="=_bench_boundary"\r
\r
--=_bench_boundary\r
Content-Type: text/plain; charset=utf-8\r
\r
The file is attached.\r
--=_bench_boundary\r
Content-Type: application/octet-stream; name="data.bin"\r
Content-Disposition: attachment; filename="data.bin"\r
Content-Transfer-Encoding: base64\r
\r

""".utf8)
let trailer = Array("--=_bench_boundary--\r\n".utf8)
var expected = SHA256()
for _ in 0..<blockRepeats { expected.update(data: block) }
let expectedDigest = Array(expected.finalize())

for hashRaw in [false, true] {
    var sink = HashingSink()
    let name = "base64 attachment of \(blockRepeats * 3) MiB" + (hashRaw ? " +raw" : "")
    results.append(try measure(name, messages: 1) {
        let (result, total) = try parse([(header, 1), (blockBase64, blockRepeats), (trailer, 1)], hashRaw: hashRaw)
        sink = result
        return total
    })
    guard sink.digests[2] == expectedDigest else { fail("the attachment's sha256 is not the block's") }
}

// MARK: - A large quoted-printable text

let qpLine = Array("Gr=C3=BC=C3=9Fe aus K=C3=B6ln, invoice line with some text and a soft break=\r\n continues here.\r\n".utf8)
let qpHeader = Array("From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".utf8)
let qpRepeats = attachmentMiB * 1024 * 1024 / 4 / qpLine.count
do {
    var sink = HashingSink()
    results.append(try measure("quoted-printable \(attachmentMiB / 4) MiB text", messages: 1) {
        let (result, total) = try parse([(qpHeader, 1), (qpLine, qpRepeats)], hashRaw: false)
        sink = result
        return total
    })
    let decodedLine = "Grüße aus Köln, invoice line with some text and a soft break continues here.\r\n".utf8.count
    guard sink.bytes[0] == decodedLine * qpRepeats else { fail("quoted-printable decoded \(sink.bytes[0] ?? 0) bytes") }
}

// MARK: - Many small messages

// 100 distinct messages of about 8 KiB (a text part and a 5 KiB base64 attachment), each
// parsed messageCount/100 times with a fresh parser, as the poll does per message.
var smallMessages: [[UInt8]] = []
for number in 0..<100 {
    let payload = random.bytes(5 * 1024)
    let message = Array("""
    Return-Path: <partner@example.com>\r
    Received: from mx.example.com by pop.example.net; Tue, 24 Nov 2026 10:00:00 +0000\r
    From: "Partner \(number)" <partner@example.com>\r
    To: gateway@example.com\r
    Subject: =?utf-8?q?Rechnung_Nr=2E_\(number)?=\r
    Date: Tue, 24 Nov 2026 10:00:00 +0000\r
    Message-ID: <bench-\(number)@example.com>\r
    MIME-Version: 1.0\r
    Content-Type: multipart/mixed; boundary="b\(number)"\r
    \r
    --b\(number)\r
    Content-Type: text/plain; charset=utf-8\r
    Content-Transfer-Encoding: quoted-printable\r
    \r
    Please find invoice \(number) attached.=\r
     Best regards\r
    --b\(number)\r
    Content-Type: application/pdf; name*=utf-8''Rechnung%20\(number).pdf\r
    Content-Disposition: attachment; filename*=utf-8''Rechnung%20\(number).pdf\r
    Content-Transfer-Encoding: base64\r
    \r

    """.utf8) + base64Lines(payload) + Array("--b\(number)--\r\n".utf8)
    smallMessages.append(message)
}
let rounds = max(1, messageCount / smallMessages.count)
for hashRaw in [false, true] {
    var parsedParts = 0
    let name = "\(rounds * smallMessages.count) small messages" + (hashRaw ? " +raw" : "")
    results.append(try measure(name, messages: rounds * smallMessages.count) {
        var total = 0
        for _ in 0..<rounds {
            for message in smallMessages {
                var parser = MIMEStreamParser()
                var sink = HashingSink()
                var raw = SHA256()
                try message.withUnsafeBytes { bytes in
                    if hashRaw { raw.update(bufferPointer: bytes) }
                    try parser.feed(bytes, into: &sink)
                }
                try parser.finish(into: &sink)
                if hashRaw { _ = raw.finalize() }
                parsedParts += parser.parts.count
                total += message.count
            }
        }
        return total
    })
    guard parsedParts == 3 * rounds * smallMessages.count else { fail("small messages gave \(parsedParts) parts") }
}

print("GatepostMIME parse+decode+hash, one core, 64 KiB chunks")
for result in results { print(result.line) }
print(String(format: "peak RSS %.1f MiB (the input blocks themselves take about 3 MiB)", peakRSSMiB()))
