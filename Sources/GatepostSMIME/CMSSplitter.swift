#if canImport(Glibc)
import Glibc
#endif

/// What a CMS ContentInfo holds, by its content type.
public enum CMSKind: Sendable, Hashable, CustomStringConvertible {
    /// EnvelopedData (RFC 5652 section 6): encrypted, CBC and the like.
    case enveloped
    /// AuthEnvelopedData (RFC 5083): encrypted and authenticated (AES-GCM).
    case authEnveloped
    /// SignedData (RFC 5652 section 5).
    case signed
    /// CompressedData (RFC 3274).
    case compressed
    case other(objectIdentifier: String)

    public var description: String {
        switch self {
        case .enveloped: "enveloped-data"
        case .authEnveloped: "authEnveloped-data"
        case .signed: "signed-data"
        case .compressed: "compressed-data"
        case .other(let oid): "CMS content \(oid)"
        }
    }
}

/// A CMS structure taken apart in one pass: everything but the content, re-encoded with the
/// content left out (detached, as RFC 5652 allows for both EnvelopedData and SignedData), and
/// the content's bytes written to a file.
///
/// Why: OpenSSL parses a CMS structure whole into memory (`d2i_CMS_bio`), content included; a
/// 1 GiB attachment would cost 1 GiB. Its detached-content interfaces stream instead, so the
/// structure is handed over without its content and the content as a file.
public struct SplitCMS: Sendable {
    public var kind: CMSKind
    /// The ContentInfo in DER (definite lengths), without its content: small.
    public var detachedStructure: [UInt8]
    /// Whether the structure had content (an opaque signed-data or an enveloped-data that
    /// carries its encrypted content, as mail does).
    public var hadContent: Bool
    /// Bytes written to the content file.
    public var contentSize: Int64
}

/// A CMS structure that cannot be read: its BER is broken or exceeds a limit.
public struct CMSStructureError: Error, Sendable, CustomStringConvertible {
    public var description: String

    init(_ description: String) {
        self.description = "malformed CMS structure: " + description
    }
}

public enum CMSSplitter {
    /// The structure without its content: certificates, recipients and signatures. Real ones
    /// are a few KiB; this much is a hostile one.
    public static let maxStructureBytes = 4 << 20
    /// Nesting of constructed elements.
    public static let maxDepth = 48

    /// Reads the ContentInfo in `input` (BER or DER, as `openssl cms` and mailers write it) and
    /// writes its content to `contentOutput` (created, or emptied).
    public static func split(input: String, contentOutput: String) throws -> SplitCMS {
        let reader = try BERFileReader(path: input)
        let writer = try ContentFileWriter(path: contentOutput)
        var splitter = Splitter(reader: reader, writer: writer)
        let split = try splitter.run()
        try writer.close()
        return split
    }

    /// The kind of a ContentInfo, from its first bytes (no more than the content type is read).
    public static func kind(of input: String) throws -> CMSKind {
        let reader = try BERFileReader(path: input)
        let outer = try reader.header()
        guard outer.identifier == [0x30] else { throw CMSStructureError("not a ContentInfo (no SEQUENCE)") }
        var budget = 1024
        let oid = try reader.element(try reader.header(), depth: 1, budget: &budget)
        return try Splitter.kind(of: oid)
    }
}

/// One element read whole: identifier bytes and either its value or its children.
struct BERElement: Equatable {
    var identifier: [UInt8]
    var value: [UInt8]
    var children: [BERElement]?

    var isConstructed: Bool { children != nil }

    /// DER's length form (definite, shortest) around the same identifier and content.
    func encode(into out: inout [UInt8]) {
        out += identifier
        if let children {
            var content: [UInt8] = []
            for child in children { child.encode(into: &content) }
            Self.appendLength(content.count, to: &out)
            out += content
        } else {
            Self.appendLength(value.count, to: &out)
            out += value
        }
    }

    static func appendLength(_ length: Int, to out: inout [UInt8]) {
        if length < 0x80 {
            out.append(UInt8(length))
            return
        }
        var bytes: [UInt8] = []
        var remaining = length
        while remaining > 0 {
            bytes.insert(UInt8(remaining & 0xFF), at: 0)
            remaining >>= 8
        }
        out.append(0x80 | UInt8(bytes.count))
        out += bytes
    }
}

struct BERHeader {
    var identifier: [UInt8]
    var isConstructed: Bool
    /// nil: indefinite (ended by an end-of-contents element).
    var length: Int64?

    var isEndOfContents: Bool { identifier == [0x00] && length == 0 }
    /// Context-specific class, tag number `number`.
    func isContext(_ number: UInt8) -> Bool { identifier == [0x80 | number] || identifier == [0xA0 | number] }
}

/// Buffered reads from a file, counting the offset: the splitter's only input.
final class BERFileReader {
    private let descriptor: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)
    private var start = 0
    private var end = 0
    private(set) var offset: Int64 = 0

    init(path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SMIMEError.file("open", path: path, errno: errno) }
    }

    deinit { Glibc.close(descriptor) }

    private func fill() throws -> Bool {
        start = 0
        end = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw CMSStructureError("read failed: \(String(cString: strerror(errno)))")
            }
            end = count
            return count > 0
        }
    }

    func byte() throws -> UInt8 {
        if start == end, try !fill() { throw CMSStructureError("it ends early, at byte \(offset)") }
        let value = buffer[start]
        start += 1
        offset += 1
        return value
    }

    /// `count` bytes, in the chunks they come in.
    func read(_ count: Int64, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var remaining = count
        while remaining > 0 {
            if start == end, try !fill() { throw CMSStructureError("it ends early, at byte \(offset)") }
            let take = Int(min(Int64(end - start), remaining))
            try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start ..< start + take])) }
            start += take
            offset += Int64(take)
            remaining -= Int64(take)
        }
    }

    func header() throws -> BERHeader {
        let first = try byte()
        var identifier = [first]
        if first & 0x1F == 0x1F {
            // High tag numbers: base-128, at most four bytes (no CMS tag needs more).
            repeat {
                guard identifier.count <= 4 else { throw CMSStructureError("a tag number too long at byte \(offset)") }
                identifier.append(try byte())
            } while identifier[identifier.count - 1] & 0x80 != 0
        }
        let isConstructed = first & 0x20 != 0
        let lengthByte = try byte()
        if lengthByte < 0x80 { return BERHeader(identifier: identifier, isConstructed: isConstructed, length: Int64(lengthByte)) }
        if lengthByte == 0x80 {
            guard isConstructed else { throw CMSStructureError("an indefinite length on a primitive element at byte \(offset)") }
            return BERHeader(identifier: identifier, isConstructed: isConstructed, length: nil)
        }
        let count = Int(lengthByte & 0x7F)
        guard count <= 7 else { throw CMSStructureError("a length of \(count) bytes at byte \(offset)") }
        var length: Int64 = 0
        for _ in 0 ..< count { length = length << 8 | Int64(try byte()) }
        return BERHeader(identifier: identifier, isConstructed: isConstructed, length: length)
    }

    /// What an element held in memory costs beyond its bytes (its node and identifier).
    static let elementCost = 64

    /// Reads the element whose header was just read, whole, within `budget` bytes.
    func element(_ header: BERHeader, depth: Int, budget: inout Int) throws -> BERElement {
        guard depth <= CMSSplitter.maxDepth else { throw CMSStructureError("nested deeper than \(CMSSplitter.maxDepth)") }
        // Every element kept costs memory whatever its length (an empty one too): charged a
        // fixed share, so a stream of empty elements cannot grow the structure without bound.
        budget -= Self.elementCost
        guard budget >= 0 else { throw CMSStructureError("more than \(CMSSplitter.maxStructureBytes) bytes besides the content") }
        guard header.isConstructed else {
            guard let length = header.length, length <= Int64(budget) else {
                throw CMSStructureError("more than \(CMSSplitter.maxStructureBytes) bytes besides the content")
            }
            budget -= Int(length)
            var value: [UInt8] = []
            value.reserveCapacity(Int(length))
            try read(length) { value.append(contentsOf: $0) }
            return BERElement(identifier: header.identifier, value: value, children: nil)
        }
        var children: [BERElement] = []
        try forEachChild(of: header) { child in
            children.append(try element(child, depth: depth + 1, budget: &budget))
        }
        return BERElement(identifier: header.identifier, value: [], children: children)
    }

    /// Calls `body` with the header of each child of the constructed element `header`; `body`
    /// must consume the child.
    func forEachChild(of header: BERHeader, _ body: (BERHeader) throws -> Void) throws {
        if let length = header.length {
            let end = offset + length
            while offset < end {
                try body(try self.header())
                guard offset <= end else { throw CMSStructureError("an element runs past its parent at byte \(offset)") }
            }
        } else {
            while true {
                let child = try self.header()
                if child.isEndOfContents { return }
                try body(child)
            }
        }
    }
}

/// Writes the content to its file through a buffer.
final class ContentFileWriter {
    private let descriptor: Int32
    private let path: String
    private var buffer: [UInt8] = []
    private(set) var size: Int64 = 0

    init(path: String) throws {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SMIMEError.file("create", path: path, errno: errno) }
        buffer.reserveCapacity(256 << 10)
    }

    deinit { Glibc.close(descriptor) }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        size += Int64(bytes.count)
        buffer.append(contentsOf: bytes)
        if buffer.count >= 192 << 10 { try flush() }
    }

    func flush() throws {
        var written = 0
        while written < buffer.count {
            let count = buffer.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SMIMEError.file("write", path: path, errno: errno)
            }
            written += count
        }
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        try flush()
    }
}

private struct Splitter {
    let reader: BERFileReader
    let writer: ContentFileWriter
    var budget = CMSSplitter.maxStructureBytes

    init(reader: BERFileReader, writer: ContentFileWriter) {
        self.reader = reader
        self.writer = writer
    }

    // DER of the content-type identifiers (value bytes only).
    static let envelopedData: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03]
    static let signedData: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02]
    static let authEnvelopedData: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x17]
    static let compressedData: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x09]

    static func kind(of oid: BERElement) throws -> CMSKind {
        guard oid.identifier == [0x06], !oid.isConstructed else { throw CMSStructureError("no content type") }
        switch oid.value {
        case envelopedData: return .enveloped
        case authEnvelopedData: return .authEnveloped
        case signedData: return .signed
        case compressedData: return .compressed
        default: return .other(objectIdentifier: dotted(oid.value))
        }
    }

    static func dotted(_ bytes: [UInt8]) -> String {
        guard let first = bytes.first else { return "" }
        var parts = [String(first / 40), String(first % 40)]
        var value: UInt64 = 0
        for byte in bytes.dropFirst() {
            value = value << 7 | UInt64(byte & 0x7F)
            if byte & 0x80 == 0 {
                parts.append(String(value))
                value = 0
            }
        }
        return parts.joined(separator: ".")
    }

    mutating func run() throws -> SplitCMS {
        let outer = try reader.header()
        guard outer.identifier == [0x30], outer.isConstructed else { throw CMSStructureError("not a ContentInfo (no SEQUENCE)") }
        var outerChildren: [BERElement] = []
        var kind: CMSKind?
        var hadContent = false
        try reader.forEachChild(of: outer) { header in
            if kind == nil {
                let oid = try reader.element(header, depth: 1, budget: &budget)
                kind = try Self.kind(of: oid)
                outerChildren.append(oid)
                return
            }
            guard header.isContext(0), header.isConstructed, let kind, [.enveloped, .authEnveloped, .signed].contains(kind) else {
                outerChildren.append(try reader.element(header, depth: 1, budget: &budget))
                return
            }
            var explicitChildren: [BERElement] = []
            try reader.forEachChild(of: header) { innerHeader in
                guard innerHeader.identifier == [0x30] else {
                    explicitChildren.append(try reader.element(innerHeader, depth: 2, budget: &budget))
                    return
                }
                let (inner, content) = try readData(innerHeader)
                hadContent = hadContent || content
                explicitChildren.append(inner)
            }
            outerChildren.append(BERElement(identifier: header.identifier, value: [], children: explicitChildren))
        }
        guard let kind else { throw CMSStructureError("an empty ContentInfo") }
        var structure: [UInt8] = []
        BERElement(identifier: [0x30], value: [], children: outerChildren).encode(into: &structure)
        return SplitCMS(kind: kind, detachedStructure: structure, hadContent: hadContent, contentSize: writer.size)
    }

    /// EnvelopedData, AuthEnvelopedData or SignedData: the first SEQUENCE among its fields is
    /// the one that holds the content (EncryptedContentInfo, EncapsulatedContentInfo).
    mutating func readData(_ header: BERHeader) throws -> (BERElement, Bool) {
        var children: [BERElement] = []
        var found = false
        var hadContent = false
        try reader.forEachChild(of: header) { child in
            if !found, child.identifier == [0x30] {
                found = true
                let (info, content) = try readContentInfo(child)
                hadContent = content
                children.append(info)
            } else {
                children.append(try reader.element(child, depth: 3, budget: &budget))
            }
        }
        return (BERElement(identifier: header.identifier, value: [], children: children), hadContent)
    }

    /// Keeps the content type and algorithm; streams the `[0]` content out.
    mutating func readContentInfo(_ header: BERHeader) throws -> (BERElement, Bool) {
        var children: [BERElement] = []
        var hadContent = false
        try reader.forEachChild(of: header) { child in
            if child.isContext(0) {
                guard !hadContent else { throw CMSStructureError("content given twice") }
                hadContent = true
                try streamString(child, depth: 4)
            } else {
                children.append(try reader.element(child, depth: 4, budget: &budget))
            }
        }
        return (BERElement(identifier: header.identifier, value: [], children: children), hadContent)
    }

    /// The value bytes of an OCTET STRING, primitive or constructed from segments (BER), or of an
    /// explicit tag around one.
    func streamString(_ header: BERHeader, depth: Int) throws {
        guard depth <= CMSSplitter.maxDepth else { throw CMSStructureError("nested deeper than \(CMSSplitter.maxDepth)") }
        guard header.isConstructed else {
            guard let length = header.length else { throw CMSStructureError("an indefinite primitive") }
            try reader.read(length) { try writer.write($0) }
            return
        }
        try reader.forEachChild(of: header) { segment in
            try streamString(segment, depth: depth + 1)
        }
    }
}
