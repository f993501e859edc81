// libFuzzer target over GatepostMIME's streaming parser (scripts/fuzz builds and runs it).
//
// Each input is parsed twice: whole, and in chunks whose sizes come from the input's first
// bytes. Beyond "no crash, no hang", the two runs must agree part for part and byte for byte,
// which is the parser's chunk-invariance promise. Limits are small so that deep nesting and
// huge headers are reached quickly.
//
// Built with `-sanitize=fuzzer -D FUZZING` this is the libFuzzer entry point; built normally it
// is a replay tool: `gatepost-mime-fuzzer FILE...` runs the same check on each file, which is how
// a crash the fuzzer found is reproduced.
import GatepostMIME

struct RecordingHandler: MIMEPartHandler {
    var events: [String] = []
    var checksums: [Int: (count: Int, sum: UInt64)] = [:]

    mutating func partDidBegin(_ part: MIMEPart) throws {
        events.append("begin \(part.index) \(part.contentType.mimeType) \(part.depth) \(part.fileName ?? "-")")
    }

    mutating func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {
        var entry = checksums[index] ?? (0, 0xCBF2_9CE4_8422_2325)
        for byte in bytes {
            entry.sum = (entry.sum ^ UInt64(byte)) &* 0x100_0000_01B3  // FNV-1a: order-sensitive
        }
        entry.count += bytes.count
        checksums[index] = entry
    }

    mutating func partDidEnd(_ index: Int) throws {
        let entry = checksums[index] ?? (0, 0)
        events.append("end \(index) \(entry.count) \(entry.sum)")
    }
}

let fuzzLimits = MIMELimits(maxHeaderBytes: 4096, maxHeaderLineLength: 1024, maxDepth: 8, maxParts: 64)

/// Hands `data` to `feed` in chunks of the given sizes, cycling (empty: all at once).
func inChunks(_ data: UnsafeRawBufferPointer, _ chunkSizes: [Int], _ feed: (UnsafeRawBufferPointer) throws -> Void) rethrows {
    var offset = 0
    var next = 0
    while offset < data.count {
        let size = chunkSizes.isEmpty ? data.count : max(1, chunkSizes[next % chunkSizes.count])
        next += 1
        let end = min(data.count, offset + size)
        try feed(UnsafeRawBufferPointer(rebasing: data[offset..<end]))
        offset = end
    }
}

func parse(_ data: UnsafeRawBufferPointer, chunkSizes: [Int]) -> [String] {
    var parser = MIMEStreamParser(limits: fuzzLimits)
    var handler = RecordingHandler()
    do {
        try inChunks(data, chunkSizes) { try parser.feed($0, into: &handler) }
        try parser.finish(into: &handler)
    } catch {
        handler.events.append("error \(error)")
    }
    return handler.events
}

/// What a ``UUEncodedFileExtractor`` made of a text body: its events, in order.
struct UUEventRecorder: UUEncodedFileHandler {
    var events: [String] = []
    var text: [UInt8] = []
    var file: [UInt8] = []

    mutating func text(_ bytes: UnsafeRawBufferPointer) throws { text.append(contentsOf: bytes) }
    mutating func fileDidBegin(name: String) throws {
        events.append("text \(text.count) \(text.hashValue)")
        text = []
        events.append("begin \(name)")
    }
    mutating func file(didReceive bytes: UnsafeRawBufferPointer) throws { file.append(contentsOf: bytes) }
    mutating func fileDidEnd(complete: Bool) throws {
        events.append("end \(complete) \(file.count) \(file.hashValue)")
        file = []
    }
}

func extract(_ data: UnsafeRawBufferPointer, chunkSizes: [Int]) -> [String] {
    var extractor = UUEncodedFileExtractor()
    var recorder = UUEventRecorder()
    do {
        try inChunks(data, chunkSizes) { try extractor.feed($0, into: &recorder) }
        try extractor.finish(into: &recorder)
    } catch {
        recorder.events.append("error \(error)")
    }
    recorder.events.append("text \(recorder.text.count) \(recorder.text.hashValue)")
    return recorder.events
}

func check(_ data: UnsafeRawBufferPointer) {
    // The uuencode extractor sees the same input as a text body, with the same promise.
    let chunkSizesForText = data.prefix(4).map { Int($0 % 97) + 1 }
    let wholeText = extract(data, chunkSizes: [])
    let chunkedText = extract(data, chunkSizes: chunkSizesForText)
    if wholeText != chunkedText {
        print("uuencode extractor: chunk invariance broken with chunk sizes \(chunkSizesForText)")
        print("whole:   \(wholeText)")
        print("chunked: \(chunkedText)")
        fatalError("chunked extraction differs from whole extraction")
    }

    let chunkSizes = data.prefix(4).map { Int($0 % 97) + 1 }
    let whole = parse(data, chunkSizes: [])
    let chunked = parse(data, chunkSizes: chunkSizes)
    if whole != chunked {
        print("chunk invariance broken with chunk sizes \(chunkSizes)")
        print("whole:   \(whole)")
        print("chunked: \(chunked)")
        fatalError("chunked parse differs from whole parse")
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's entry point under this name; hand control to libFuzzer's driver.
@_cdecl("gatepost_mime_fuzzer_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzOneInput)
}
#else
import Foundation

@main
struct Replay {
    static func main() throws {
        let files = CommandLine.arguments.dropFirst()
        guard !files.isEmpty else {
            print("usage: gatepost-mime-fuzzer FILE...   (replays inputs; scripts/fuzz runs the fuzzer)")
            return
        }
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            data.withUnsafeBytes(check)
            print("ok \(file)")
        }
    }
}
#endif
