import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GatepostCatalog
import GatepostMIME

/// Turns an ingested message into a transfer record and the files to keep. A transfer keeps
/// one file (the attached file, the message text of a MSG, the report, or the whole message),
/// plus the HTML of a MSG, or a message text too large for the catalog. Everything else the
/// ingest wrote is removed.
enum TransferAssembler {
    /// A file to keep: a file in `tmp/`, or bytes still in memory that the commit writes (off
    /// the receiving path, with the rest of the batch); and what follows the transfer id in its
    /// name in `in/<site>/` ("" for the main file).
    struct KeptFile: Sendable, Hashable {
        enum Content: Sendable, Hashable {
            /// The file's path in `tmp/`.
            case file(String)
            case bytes([UInt8])
        }

        var content: Content
        var suffix: String
        /// What it is, for people: the attached file's name, message.txt, message.html, ...
        var name: String
    }

    struct Assembled {
        var record: TransferRecord
        /// The main file first.
        var files: [KeptFile]
        /// More transfers of the same message (``MessageClass/transfers(files:text:)``): each
        /// attached file after the first, with its own record, committed with the first.
        var siblings: [Sibling] = []
    }

    struct Sibling: Sendable {
        var record: TransferRecord
        var files: [KeptFile]
    }

    static let textFileName = "message.txt"
    static let htmlFileName = "message.html"
    static let reportFileName = "report.txt"

    /// - Parameter filePrefix: `tmp/<transfer id>`, the start of every file name of this message.
    static func assemble(
        _ result: MessageIngest.Result,
        site: RemoteSite,
        id: String,
        uidl: String?,
        filePrefix: String,
        duplicateOf duplicate: String?,
        secured: SecureContent.Outcome? = nil
    ) throws -> Assembled {
        let header = result.parts.first?.header ?? MessageHeader()
        // What is classified and kept: the message, or what its S/MIME layers held.
        let source = secured?.content ?? result
        let created = result.createdFiles + (secured?.files ?? [])
        var record = TransferRecord(
            id: id,
            type: .xfer,
            fileName: nil,
            site: site.name,
            application: site.application,
            messageId: header.messageID,
            uidl: uidl,
            sender: header["From"].map(EncodedWords.decode),
            recipients: (header.all("To") + header.all("Cc")).flatMap(Self.addresses),
            subject: header["Subject"].map(EncodedWords.decode),
            ack: header["Disposition-Notification-To"] == nil ? .none : .requested,
            messageSha256: header.messageID == nil ? result.rawSHA256 : nil
        )

        let classification: Classification
        if let duplicate {
            classification = Classification(messageClass: .recover, reason: duplicate)
        } else if let error = result.parseError {
            classification = Classification(messageClass: .recover, reason: error.description)
        } else if let failure = secured?.failure {
            classification = Classification(messageClass: .recover, reason: failure)
        } else if let error = source.parseError {
            classification = Classification(messageClass: .recover, reason: "its S/MIME content: \(error.description)")
        } else {
            var options = site.classification
            // What an S/MIME envelope holds is a MIME entity, not a message: one that is a
            // single file (an EDI interchange, as AS1 sends) is that file.
            if secured?.content != nil { options.bareFileIsTransfer = true }
            classification = Classifier.classify(source.parts, options: options, messageHeader: header)
        }
        record.classification = classification.reason
        record.signature = secured?.signature ?? classification.signature
        record.security = secured?.security

        var files = FileSet(filePrefix: filePrefix)
        do {
            switch classification.messageClass {
            case .transfer(let file, let text):
                guard let attachment = source.bodies[file] else {
                    let assembled = try keepWhole(result, record: record, reason: "attachment body missing", files: &files)
                    files.removeUnkept(created)
                    return assembled
                }
                let name = SafeFileName.make(Classifier.proposedFileName(for: source.parts[file]))
                let main = files.keep(attachment, suffix: "", name: name)
                if let text, let body = source.bodies[text] {
                    let converted = try files.utf8(body, part: source.parts[text])
                    // A text that fits in memory goes into the record, unless it holds a NUL
                    // byte, which a catalog TEXT column would cut it at.
                    if case .memory(let bytes) = converted.storage, !bytes.contains(0) {
                        record.messageText = String(decoding: bytes, as: UTF8.self)
                    } else {
                        _ = files.keep(converted, suffix: ".txt", name: textFileName)
                    }
                }
                record.type = .xfer
                record.fileName = name
                record.size = main.size
                record.sha256 = main.sha256
            case .transfers(let attached, let text):
                guard let first = attached.first, attached.allSatisfy({ source.bodies[$0] != nil }) else {
                    let assembled = try keepWhole(result, record: record, reason: "attachment body missing", files: &files)
                    files.removeUnkept(created)
                    return assembled
                }
                var siblings: [Sibling] = []
                for (number, file) in attached.enumerated() {
                    guard let body = source.bodies[file] else { continue }
                    let name = SafeFileName.make(Classifier.proposedFileName(for: source.parts[file]))
                    if file == first {
                        let main = files.keep(body, suffix: "", name: name)
                        record.fileName = name
                        record.size = main.size
                        record.sha256 = main.sha256
                        continue
                    }
                    var sibling = record
                    sibling.id = TransferRecord.newID()
                    sibling.fileName = name
                    sibling.size = body.size
                    sibling.sha256 = body.sha256
                    // One message, one acknowledgment: the first transfer's.
                    sibling.ack = .none
                    sibling.classification = "file \(number + 1) of \(attached.count) of one message (classify.split_attachments); the first is transfer \(record.id)"
                    siblings.append(Sibling(record: sibling, files: [files.keepElsewhere(body, name: name)]))
                }
                if let text, let body = source.bodies[text] {
                    let converted = try files.utf8(body, part: source.parts[text])
                    if case .memory(let bytes) = converted.storage, !bytes.contains(0) {
                        record.messageText = String(decoding: bytes, as: UTF8.self)
                        for index in siblings.indices { siblings[index].record.messageText = record.messageText }
                    } else {
                        _ = files.keep(converted, suffix: ".txt", name: textFileName)
                    }
                }
                record.type = .xfer
                files.removeUnkept(created)
                return Assembled(record: record, files: files.kept, siblings: siblings)
            case .message(let text, let html, let resources):
                guard let original = source.bodies[text] else {
                    let assembled = try keepWhole(result, record: record, reason: "text body missing", files: &files)
                    files.removeUnkept(created)
                    return assembled
                }
                // What MSG keeps is for people and applications to read: UTF-8, whatever was sent.
                let textPart = source.parts[text]
                let main = files.keep(
                    try files.utf8(original, part: textPart), suffix: "", name: textPart.contentType.subtype == "html" ? htmlFileName : textFileName
                )
                if let html, let body = source.bodies[html] {
                    _ = files.keep(try files.utf8(body, part: source.parts[html]), suffix: ".html", name: htmlFileName)
                }
                // What the HTML shows inline (images): kept as sent, nothing the partner sent lost.
                for (number, resource) in resources.enumerated() {
                    guard let body = source.bodies[resource] else { continue }
                    let part = source.parts[resource]
                    let name = SafeFileName.make(part.fileName ?? Classifier.proposedFileName(for: part))
                    _ = files.keep(body, suffix: ".inline-\(number + 1)", name: name)
                }
                record.type = .msg
                record.fileName = site.application ?? "MSG"
                record.size = main.size
                record.sha256 = main.sha256
            case .report(let report, let returned):
                record.type = .eerp
                record.ack = .none  // RFC 8098 section 2.1: never acknowledge a report.
                guard let report, let body = source.bodies[report] else {
                    var assembled = try keepWhole(result, record: record, reason: nil, files: &files)
                    assembled.record.type = .eerp
                    assembled.record.fileName = nil
                    files.removeUnkept(created)
                    return assembled
                }
                let main = files.keep(body, suffix: "", name: reportFileName)
                let fields = ReportFields.parse(try body.bytes(limit: 256 * 1024))
                // A DSN names the message only in what it returns of it; an MDN may leave its
                // Original-Message-ID out too (RFC 8098 section 3.2.5: SHOULD).
                record.originalMessageId = try fields.originalMessageID ?? returned.flatMap { index in
                    try source.bodies[index].flatMap { try ReportFields.returnedMessageID($0.bytes(limit: 256 * 1024)) }
                }
                record.originalEnvelopeId = fields.originalEnvelopeID
                if let mic = fields.receivedContentMIC {
                    var security = record.security ?? MessageSecurity()
                    security.receivedContentMIC = mic
                    record.security = security
                }
                record.disposition = fields.disposition
                record.recipientReports = fields.recipients
                if let recipient = fields.finalRecipient { record.recipients = [recipient] }
                record.size = main.size
                record.sha256 = main.sha256
            case .recover:
                var assembled = try keepWhole(result, record: record, reason: duplicate == nil ? classification.reason : nil, files: &files)
                if let duplicate {
                    assembled.record.fileName = TransferRecord.duplicateFileName
                    assembled.record.error = duplicate
                }
                files.removeUnkept(created)
                return assembled
            }
        } catch {
            files.removeWritten()
            throw error
        }
        files.removeUnkept(created)
        return Assembled(record: record, files: files.kept)
    }

    /// The whole message as the one kept file: RECOVER (with `reason`), DUPLICATE, or a report
    /// without a machine-readable part.
    private static func keepWhole(_ result: MessageIngest.Result, record: TransferRecord, reason: String?, files: inout FileSet) throws -> Assembled {
        var record = record
        record.type = .xfer
        record.fileName = TransferRecord.recoverFileName
        record.size = result.rawSize
        record.sha256 = result.rawSHA256
        record.messageSha256 = result.rawSHA256
        if let reason {
            record.error = "kept whole: \(reason)"
        }
        let path = files.filePrefix + ".eml"
        try result.scratch.move(to: path)
        files.kept.append(KeptFile(content: .file(path), suffix: "", name: MessageIngest.rawFileName))
        return Assembled(record: record, files: files.kept)
    }

    /// The files of one message being assembled: what is kept, and what was written for it.
    private struct FileSet {
        let filePrefix: String
        var kept: [KeptFile] = []
        /// Files written here (converted texts).
        var written: [String] = []
        /// Files kept for another transfer of the same message.
        var keptElsewhere: [KeptFile] = []
        var conversions = 0

        init(filePrefix: String) {
            self.filePrefix = filePrefix
        }

        /// Keeps `body` as a file: the one it is in, or one the commit writes for a body in memory.
        mutating func keep(_ body: PartBody, suffix: String, name: String) -> (size: Int64, sha256: String) {
            switch body.storage {
            case .file(let path):
                kept.append(KeptFile(content: .file(path), suffix: suffix, name: name))
            case .memory(let bytes):
                kept.append(KeptFile(content: .bytes(bytes), suffix: suffix, name: name))
            }
            return (body.size, body.sha256)
        }

        /// Keeps `body` as the main file of another transfer of this message.
        mutating func keepElsewhere(_ body: PartBody, name: String) -> KeptFile {
            let file: KeptFile = switch body.storage {
            case .file(let path): KeptFile(content: .file(path), suffix: "", name: name)
            case .memory(let bytes): KeptFile(content: .bytes(bytes), suffix: "", name: name)
            }
            keptElsewhere.append(file)
            return file
        }

        mutating func utf8(_ body: PartBody, part: MIMEPart) throws -> PartBody {
            conversions += 1
            let path = "\(filePrefix).utf8-\(conversions)"
            let converted = try TextConversion.toUTF8(body, part: part, convertedPath: path)
            if converted.storage == .file(path) { written.append(path) }
            return converted
        }

        /// Removes every file the ingest created or this set wrote that is not kept.
        func removeUnkept(_ created: [String]) {
            let keptPaths = Set((kept + keptElsewhere).compactMap { file -> String? in
                if case .file(let path) = file.content { return path }
                return nil
            })
            for path in created + written where !keptPaths.contains(path) {
                unlink(path)
            }
        }

        func removeWritten() {
            for path in written { unlink(path) }
        }
    }

    /// Addresses from an address-list header, loosely: `Name <a@b>, c@d` -> `a@b`, `c@d`.
    static func addresses(_ field: String) -> [String] {
        field.split(separator: ",").compactMap { item in
            let text = item.trimmingASCIIWhitespace()
            if let open = text.lastIndex(of: "<"), let close = text.lastIndex(of: ">"), open < close {
                return String(text[text.index(after: open)..<close])
            }
            return text.contains("@") ? text : nil
        }
    }
}
