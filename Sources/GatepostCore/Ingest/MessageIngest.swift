import Crypto
import Foundation
import GatepostWire
import Synchronization
import GatepostMIME
import GatepostCatalog
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A leaf part's decoded body: in memory while it is small, else in a file in `tmp/`. A body in
/// memory costs no file until its batch's commit writes the ones that are kept; a message text
/// goes into the catalog row and never becomes a file at all.
struct PartBody: Sendable, Hashable {
    enum Storage: Sendable, Hashable {
        case memory([UInt8])
        /// The file's full path.
        case file(String)
    }

    var storage: Storage
    var size: Int64
    /// Hex SHA-256, computed as the body was written.
    var sha256: String

    /// The bytes, for bodies small enough to handle whole (texts, reports): from memory, or read
    /// from the file up to `limit` bytes.
    func bytes(limit: Int) throws -> [UInt8] {
        switch storage {
        case .memory(let bytes):
            return bytes.count <= limit ? bytes : Array(bytes.prefix(limit))
        case .file(let path):
            return try SpoolFileReader.read(path, limit: limit)
        }
    }
}

/// Writes one body, hashing it: into memory up to `memoryLimit` bytes, then into `spillPath`
/// (everything written so far first).
final class PartBodyWriter {
    private var buffer: [UInt8] = []
    private var file: SpoolFileWriter?
    private var hasher = SHA256()
    private var size: Int64 = 0
    private let spillPath: String
    private let memoryLimit: Int

    init(spillPath: String, memoryLimit: Int) throws(SpoolError) {
        self.spillPath = spillPath
        self.memoryLimit = max(0, memoryLimit)
        if memoryLimit <= 0 { file = try SpoolFileWriter(path: spillPath, hashing: false) }
    }

    /// Whether the body went to its file (which then exists and is the caller's to keep or remove).
    var isInFile: Bool { file != nil }

    /// The memory the body holds (its buffer's capacity), while it is in memory.
    var heldBytes: Int { file == nil ? buffer.capacity : 0 }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SpoolError) {
        hasher.update(bufferPointer: bytes)
        size += Int64(bytes.count)
        if let file {
            try file.write(bytes)
        } else if buffer.count + bytes.count > memoryLimit {
            let file = try SpoolFileWriter(path: spillPath, hashing: false)
            self.file = file
            try file.write(contentsOf: buffer)
            buffer = []
            try file.write(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    func finish() throws(SpoolError) -> PartBody {
        let sha256 = hexString(hasher.finalize())
        if let file {
            _ = try file.finish()
            return PartBody(storage: .file(spillPath), size: size, sha256: sha256)
        }
        return PartBody(storage: .memory(buffer), size: size, sha256: sha256)
    }
}

/// Receives every leaf part of a message as the parser decodes it. Bodies stay in memory within
/// a budget per message (and the process's, ``HeldBodies``) and spill to a file in `tmp/`
/// (`<id>.part-N`) beyond it. The text of a text body goes through a ``UUEncodedFileExtractor``
/// on the way, so files uuencoded in it get files of their own (`<id>.uu-N`) and the text keeps
/// only what is around them.
final class PartFileSink: MIMEPartHandler, UUEncodedFileHandler {
    struct UUEncodedFile {
        var parent: Int
        var name: String
        var body: PartBody
    }

    /// More files than this in one text body is not a transfer; the message is kept whole.
    static let maxUUEncodedFiles = 100
    /// Bytes of bodies held in memory per message; past it, bodies go to files. Bodies in
    /// memory wait for their batch's commit, which writes the kept ones off the receiving path.
    static let memoryBudget = 256 << 10

    /// Every file name starts with this (`tmp/<id>`).
    let filePrefix: String
    private var current: (index: Int, writer: PartBodyWriter)?
    private var extractor: UUEncodedFileExtractor?
    private var uuCurrent: (name: String, writer: SpoolFileWriter)?
    /// Memory held by this message's bodies, counted in ``HeldBodies`` until released.
    private(set) var memoryUsed = 0
    private(set) var bodies: [Int: PartBody] = [:]
    private(set) var uuencodedFiles: [UUEncodedFile] = []
    /// Every file created, kept or not: what is not kept is removed.
    private(set) var createdFiles: [String] = []
    /// The files created, including that of a body still being written (a spilled text).
    var allCreatedFiles: [String] {
        guard let current, current.writer.isInFile else { return createdFiles }
        let path = "\(filePrefix).part-\(current.index)"
        return createdFiles.contains(path) ? createdFiles : createdFiles + [path]
    }

    /// How much more the process may hold (``HeldBodies``); a test passes its own.
    private let processMemoryAvailable: () -> Int

    init(filePrefix: String, processMemoryAvailable: @escaping () -> Int = { HeldBodies.available }) {
        self.filePrefix = filePrefix
        self.processMemoryAvailable = processMemoryAvailable
    }

    /// Text bodies are where old mailers put uuencoded files: text/plain that is not itself an
    /// attached file.
    static func mayHoldUUEncodedFiles(_ part: MIMEPart) -> Bool {
        part.contentType.mimeType == "text/plain" && part.fileName == nil && part.disposition?.isAttachment != true
    }

    func partDidBegin(_ part: MIMEPart) throws {
        guard !part.isMultipart else { return }
        let path = "\(filePrefix).part-\(part.index)"
        let limit = min(Self.memoryBudget - memoryUsed, processMemoryAvailable())
        let writer = try PartBodyWriter(spillPath: path, memoryLimit: limit)
        if writer.isInFile { createdFiles.append(path) }
        current = (part.index, writer)
        extractor = Self.mayHoldUUEncodedFiles(part) ? UUEncodedFileExtractor() : nil
    }

    func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {
        guard let current, current.index == index else { return }
        if var extractor {
            // Moved out while it works, so its buffers are not copied on write.
            self.extractor = nil
            var handler = self
            try extractor.feed(bytes, into: &handler)
            self.extractor = extractor
        } else {
            try current.writer.write(bytes)
        }
    }

    func partDidEnd(_ index: Int) throws {
        guard let current, current.index == index else { return }
        if var extractor {
            self.extractor = nil
            var handler = self
            try extractor.finish(into: &handler)
        }
        let held = current.writer.heldBytes
        let body = try current.writer.finish()
        self.current = nil
        switch body.storage {
        case .memory:
            memoryUsed += held
            HeldBodies.add(held)
        case .file(let path):
            // A text that outgrew the memory budget.
            if !createdFiles.contains(path) { createdFiles.append(path) }
        }
        bodies[index] = body
    }

    // MARK: UUEncodedFileHandler

    func text(_ bytes: UnsafeRawBufferPointer) throws {
        try current?.writer.write(bytes)
    }

    func fileDidBegin(name: String) throws {
        guard uuencodedFiles.count < Self.maxUUEncodedFiles else { throw MIMEError.limitExceeded(.parts) }
        let path = "\(filePrefix).uu-\(uuencodedFiles.count)"
        createdFiles.append(path)
        uuCurrent = (name, try SpoolFileWriter(path: path))
    }

    func file(didReceive bytes: UnsafeRawBufferPointer) throws {
        try uuCurrent?.writer.write(bytes)
    }

    func fileDidEnd(complete: Bool) throws {
        guard let uuCurrent, let parent = current?.index else { return }
        self.uuCurrent = nil
        // Without its `end` line the "file" may be prose that began with "begin 644", and the
        // text after it is gone from the message text: the message is kept whole instead.
        guard complete else {
            throw MIMEError.malformedBody("a uuencoded file (\(uuCurrent.name)) that does not end properly")
        }
        let (size, sha256) = try uuCurrent.writer.finish()
        uuencodedFiles.append(UUEncodedFile(
            parent: parent, name: uuCurrent.name,
            body: PartBody(storage: .file(uuCurrent.writer.path), size: size, sha256: sha256)
        ))
    }
}

/// Reads small spool files whole (texts, reports), up to a limit.
enum SpoolFileReader {
    static func read(_ path: String, limit: Int) throws(SpoolError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SpoolError("open", path: path, errno: errno) }
        defer { close(descriptor) }
        // Sized by the file, not the limit: most texts and reports are small.
        var info = stat()
        let size = fstat(descriptor, &info) == 0 ? min(limit, Int(info.st_size)) : limit
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        while filled < size {
            let count = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.read(descriptor, base + filled, size - filled)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw SpoolError("read", path: path, errno: errno)
            }
            if count == 0 { break }
            filled += count
        }
        bytes.removeSubrange(filled...)
        return bytes
    }
}

/// The raw bytes of the message being received: held in memory up to `memoryLimit`, and beyond
/// it in a scratch file in `tmp/` (hashed as they go there). One per poll, reused for every
/// message. Only a message kept whole (RECOVER, DUPLICATE) is written out, by ``move(to:)``;
/// for the others the raw bytes never touch the disk, and are hashed only if asked.
final class RawMessageScratch {
    static let memoryLimit = 1 << 20

    /// The scratch file, for a message larger than `memoryLimit`.
    let path: String
    private var memory: [UInt8] = []
    private var spill: SpoolFileWriter?
    private var hasher = SHA256()
    private var digest: String?
    private var size: Int64 = 0

    init(folder: String) {
        path = folder + "/raw-" + TransferRecord.newID() + ".eml"
    }

    deinit {
        if spill != nil { unlink(path) }
    }

    func begin() {
        memory.removeAll(keepingCapacity: true)
        hasher = SHA256()
        digest = nil
        size = 0
        if let spill {
            _ = try? spill.finish()
            self.spill = nil
            unlink(path)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SpoolError) {
        size += Int64(bytes.count)
        if let spill {
            hasher.update(bufferPointer: bytes)
            try spill.write(bytes)
        } else if memory.count + bytes.count > Self.memoryLimit {
            // Hashed from here on, as it streams: a large message is not read back.
            memory.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            hasher.update(bufferPointer: bytes)
            let spill = try SpoolFileWriter(path: path, hashing: false)
            self.spill = spill
            try spill.write(contentsOf: memory)
            memory.removeAll(keepingCapacity: true)
            try spill.write(bytes)
        } else {
            memory.append(contentsOf: bytes)
        }
    }

    /// The size of the message so far.
    var messageSize: Int64 { size }

    /// The current message's bytes, in chunks (S/MIME reads a signed part's raw bytes again).
    func read(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let spill else {
            try memory.withUnsafeBytes(body)
            return
        }
        try spill.flush()
        guard let handle = FileHandle(forReadingAtPath: path) else { throw SpoolError("open", path: path, errno: errno) }
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: 256 << 10), !chunk.isEmpty {
            try chunk.withUnsafeBytes(body)
        }
    }

    /// The hex SHA-256 of the current message, once it is complete.
    func sha256() -> String {
        if let digest { return digest }
        if spill == nil {
            memory.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        }
        let computed = hexString(hasher.finalize())
        digest = computed
        return computed
    }

    /// Writes the current message to `destination` (renames the scratch file, for a large one).
    func move(to destination: String) throws(SpoolError) {
        if let spill {
            self.spill = nil
            defer { unlink(path) }  // gone after a rename; removed if the rename failed
            _ = try spill.finish()
            if rename(path, destination) != 0 {
                throw SpoolError("move the message to", path: destination, errno: errno)
            }
            return
        }
        let writer = try SpoolFileWriter(path: destination, hashing: false)
        do {
            try writer.write(contentsOf: memory)
        } catch {
            unlink(destination)
            throw error
        }
        _ = try writer.finish()
    }
}

/// The bytes of one RETR, taken in as they arrive: the whole message goes to the raw scratch
/// (``RawMessageScratch``), and through the streaming MIME parser to the part bodies
/// (``PartFileSink``).
/// Memory stays bounded whatever the message size. A message the parser rejects (a limit, a
/// malformed header) is still complete in the scratch file, to be kept whole as RECOVER.
final class MessageIngest {
    /// The whole message's name where it is kept whole.
    static let rawFileName = "message.eml"

    struct Result {
        /// The whole message's size; its bytes are in `scratch` until moved.
        var rawSize: Int64
        var scratch: RawMessageScratch
        var parts: [MIMEPart]
        var bodies: [Int: PartBody]
        /// Every file the ingest created in `tmp/`.
        var createdFiles: [String]
        var parseError: MIMEError?

        /// The whole message's SHA-256, computed when first asked for.
        var rawSHA256: String { scratch.sha256() }
    }

    enum IngestError: Error, CustomStringConvertible {
        case tooLarge(limit: Int64)

        var description: String {
            switch self {
            case .tooLarge(let limit): "the message is larger than max_message_size (\(limit) bytes)"
            }
        }
    }

    /// Every file of this message starts with this path (`tmp/<transfer id>`).
    let filePrefix: String
    private let raw: RawMessageScratch
    private var parser: MIMEStreamParser
    private var sink: PartFileSink
    private var parseError: MIMEError?
    private let maxSize: Int64
    private var received: Int64 = 0

    init(
        filePrefix: String, raw: RawMessageScratch, limits: MIMELimits, maxSize: Int64,
        processMemoryAvailable: @escaping () -> Int = { HeldBodies.available }
    ) throws {
        self.filePrefix = filePrefix
        self.raw = raw
        raw.begin()
        parser = MIMEStreamParser(limits: limits)
        sink = PartFileSink(filePrefix: filePrefix, processMemoryAvailable: processMemoryAvailable)
        self.maxSize = maxSize
    }

    func consume(_ chunk: ByteBuffer) throws {
        received += Int64(chunk.readableBytes)
        guard received <= maxSize else { throw IngestError.tooLarge(limit: maxSize) }
        try chunk.withUnsafeReadableBytes { bytes in
            try raw.write(bytes)
            guard parseError == nil else { return }
            do {
                try parser.feed(bytes, into: &sink)
            } catch let error as MIMEError {
                parseError = error
            }
        }
    }

    func finish() throws -> Result {
        if parseError == nil {
            do {
                try parser.finish(into: &sink)
            } catch let error as MIMEError {
                parseError = error
            }
        }
        // Files uuencoded in a text body become parts of their own, after the parser's.
        var parts = parser.parts
        var bodies = sink.bodies
        if parseError == nil {
            for embedded in sink.uuencodedFiles where parts.indices.contains(embedded.parent) {
                let part = MIMEPart.uuencodedFile(index: parts.count, parent: parts[embedded.parent], name: embedded.name)
                parts.append(part)
                bodies[part.index] = embedded.body
            }
        }
        return Result(
            rawSize: raw.messageSize, scratch: raw, parts: parts, bodies: bodies,
            createdFiles: sink.allCreatedFiles, parseError: parseError
        )
    }

    /// Memory this message's bodies hold, counted in ``HeldBodies``: the caller releases it once
    /// the bodies are gone (committed, or the message abandoned).
    var heldBytes: Int { sink.memoryUsed }

    /// Removes every file this message created (it is not kept: an error, a cancellation).
    func discard() {
        for path in sink.allCreatedFiles { unlink(path) }
    }
}

/// Bytes of message bodies that every poll of this process holds in memory, waiting for their
/// batch's commit. Past `limit`, new bodies go to files in `tmp/` as they arrive, so memory stays
/// bounded however many polls run at once and however large their batches are.
enum HeldBodies {
    static let limit = 48 << 20
    private static let held = Mutex(0)

    static var available: Int { held.withLock { max(0, limit - $0) } }
    static var current: Int { held.withLock { $0 } }

    static func add(_ bytes: Int) {
        held.withLock { $0 += bytes }
    }

    static func release(_ bytes: Int) {
        held.withLock { $0 = max(0, $0 - bytes) }
    }
}
