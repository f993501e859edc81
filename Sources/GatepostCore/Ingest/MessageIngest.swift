import GatepostMIME
import NIOCore

/// A leaf part's body as written to the workspace.
struct PartFile: Sendable, Hashable {
    var name: String
    var size: Int64
    var sha256: String
}

/// Writes every leaf part of a message to its own file as the parser decodes it.
final class PartFileSink: MIMEPartHandler {
    let workspace: String
    private var current: (index: Int, writer: SpoolFileWriter)?
    private(set) var files: [Int: PartFile] = [:]

    init(workspace: String) {
        self.workspace = workspace
    }

    func partDidBegin(_ part: MIMEPart) throws {
        guard !part.isMultipart else { return }
        current = (part.index, try SpoolFileWriter(path: "\(workspace)/part-\(part.index)"))
    }

    func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {
        guard let current, current.index == index else { return }
        try current.writer.write(bytes)
    }

    func partDidEnd(_ index: Int) throws {
        guard let current, current.index == index else { return }
        self.current = nil
        let (size, sha256) = try current.writer.finish()
        files[index] = PartFile(name: "part-\(index)", size: size, sha256: sha256)
    }
}

/// The bytes of one RETR, taken in as they arrive: the whole message goes to `message.eml`
/// (hashed), and through the streaming MIME parser into one file per part. Memory stays at a
/// few buffers whatever the message size. A message the parser rejects (a limit, a malformed
/// header) is still complete in `message.eml`, to be kept whole as RECOVER.
final class MessageIngest {
    static let rawFileName = "message.eml"

    struct Result {
        var raw: PartFile
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
    private let raw: SpoolFileWriter
    private var parser: MIMEStreamParser
    private var sink: PartFileSink
    private var parseError: MIMEError?
    private let maxSize: Int64
    private var received: Int64 = 0

    init(workspace: String, limits: MIMELimits, maxSize: Int64) throws {
        self.workspace = workspace
        raw = try SpoolFileWriter(path: "\(workspace)/\(Self.rawFileName)")
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
        let (size, sha256) = try raw.finish()
        return Result(
            raw: PartFile(name: Self.rawFileName, size: size, sha256: sha256),
            parts: parser.parts,
            partFiles: sink.files,
            parseError: parseError
        )
    }
}
