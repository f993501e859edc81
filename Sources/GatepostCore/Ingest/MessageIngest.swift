import GatepostMIME
import GatepostCatalog
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A leaf part's body as written to the workspace.
struct PartFile: Sendable, Hashable {
    var name: String
    var size: Int64
    var sha256: String
}

/// Writes every leaf part of a message to its own file as the parser decodes it. The text of a
/// text body goes through a ``UUEncodedFileExtractor`` on the way, so files uuencoded in it get
/// files of their own (`uu-N`) and the text file keeps only the text around them.
final class PartFileSink: MIMEPartHandler, UUEncodedFileHandler {
    struct UUEncodedFile {
        var parent: Int
        var name: String
        var file: PartFile
    }

    /// More files than this in one text body is not a transfer; the message is kept whole.
    static let maxUUEncodedFiles = 100

    let workspace: String
    private var current: (index: Int, writer: SpoolFileWriter)?
    private var extractor: UUEncodedFileExtractor?
    private var uuCurrent: (name: String, writer: SpoolFileWriter)?
    private(set) var files: [Int: PartFile] = [:]
    private(set) var uuencodedFiles: [UUEncodedFile] = []

    init(workspace: String) {
        self.workspace = workspace
    }

    /// Text bodies are where old mailers put uuencoded files: text/plain that is not itself an
    /// attached file.
    static func mayHoldUUEncodedFiles(_ part: MIMEPart) -> Bool {
        part.contentType.mimeType == "text/plain" && part.fileName == nil && part.disposition?.isAttachment != true
    }

    func partDidBegin(_ part: MIMEPart) throws {
        guard !part.isMultipart else { return }
        current = (part.index, try SpoolFileWriter(path: "\(workspace)/part-\(part.index)"))
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
        self.current = nil
        let (size, sha256) = try current.writer.finish()
        files[index] = PartFile(name: "part-\(index)", size: size, sha256: sha256)
    }

    // MARK: UUEncodedFileHandler

    func text(_ bytes: UnsafeRawBufferPointer) throws {
        try current?.writer.write(bytes)
    }

    func fileDidBegin(name: String) throws {
        guard uuencodedFiles.count < Self.maxUUEncodedFiles else { throw MIMEError.limitExceeded(.parts) }
        uuCurrent = (name, try SpoolFileWriter(path: "\(workspace)/uu-\(uuencodedFiles.count)"))
    }

    func file(didReceive bytes: UnsafeRawBufferPointer) throws {
        try uuCurrent?.writer.write(bytes)
    }

    func fileDidEnd(complete: Bool) throws {
        guard let uuCurrent, let parent = current?.index else { return }
        self.uuCurrent = nil
        // Without its `end` line the "file" may be prose that began with "begin 644", and the
        // text after it is gone from message.txt: the message is kept whole instead.
        guard complete else {
            throw MIMEError.malformedBody("a uuencoded file (\(uuCurrent.name)) that does not end properly")
        }
        let (size, sha256) = try uuCurrent.writer.finish()
        uuencodedFiles.append(UUEncodedFile(
            parent: parent, name: uuCurrent.name,
            file: PartFile(name: "uu-\(uuencodedFiles.count)", size: size, sha256: sha256)
        ))
    }
}

/// The raw bytes of the message being received, in one scratch file per poll that is reused
/// for every message. Only a message kept whole (RECOVER, DUPLICATE) moves it into its transfer
/// folder, and a new scratch file takes its place. Creating and deleting a file per message
/// costs more than everything else the poll does (inode allocation in the file system).
final class RawMessageScratch {
    let path: String
    private var writer: SpoolFileWriter

    init(folder: String) throws(SpoolError) {
        path = folder + "/raw-" + TransferRecord.newID() + ".eml"
        writer = try SpoolFileWriter(path: path)
    }

    deinit {
        unlink(path)
    }

    func begin() throws(SpoolError) {
        try writer.reset()
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SpoolError) {
        try writer.write(bytes)
    }

    func checkpoint() throws(SpoolError) -> (size: Int64, sha256: String) {
        try writer.checkpoint()
    }

    /// Gives the current message's bytes the name `destination` and starts a new scratch file.
    func move(to destination: String) throws(SpoolError) {
        _ = try writer.finish()
        if rename(path, destination) != 0 {
            throw SpoolError("move the message to", path: destination, errno: errno)
        }
        writer = try SpoolFileWriter(path: path)
    }
}

/// The bytes of one RETR, taken in as they arrive: the whole message goes to the raw scratch
/// file (hashed), and through the streaming MIME parser into one file per part. Memory stays at a
/// few buffers whatever the message size. A message the parser rejects (a limit, a malformed
/// header) is still complete in `message.eml`, to be kept whole as RECOVER.
final class MessageIngest {
    static let rawFileName = "message.eml"

    struct Result {
        /// The whole message; its bytes are in `scratch` until moved.
        var raw: PartFile
        var scratch: RawMessageScratch
        var parts: [MIMEPart]
        var partFiles: [Int: PartFile]
        var parseError: MIMEError?
    }

    enum IngestError: Error, CustomStringConvertible {
        case tooLarge(limit: Int64)

        var description: String {
            switch self {
            case .tooLarge(let limit): "the message is larger than max_message_size (\(limit) bytes)"
            }
        }
    }

    let workspace: String
    private let raw: RawMessageScratch
    private var parser: MIMEStreamParser
    private var sink: PartFileSink
    private var parseError: MIMEError?
    private let maxSize: Int64
    private var received: Int64 = 0

    init(workspace: String, raw: RawMessageScratch, limits: MIMELimits, maxSize: Int64) throws {
        self.workspace = workspace
        self.raw = raw
        try raw.begin()
        parser = MIMEStreamParser(limits: limits)
        sink = PartFileSink(workspace: workspace)
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
        let (size, sha256) = try raw.checkpoint()
        // Files uuencoded in a text body become parts of their own, after the parser's.
        var parts = parser.parts
        var partFiles = sink.files
        if parseError == nil {
            for embedded in sink.uuencodedFiles where parts.indices.contains(embedded.parent) {
                let part = MIMEPart.uuencodedFile(index: parts.count, parent: parts[embedded.parent], name: embedded.name)
                parts.append(part)
                partFiles[part.index] = embedded.file
            }
        }
        return Result(
            raw: PartFile(name: Self.rawFileName, size: size, sha256: sha256),
            scratch: raw,
            parts: parts,
            partFiles: partFiles,
            parseError: parseError
        )
    }
}
