import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GatepostCatalog
import GatepostMIME

/// Turns an ingested message into a transfer record and the set of files to keep, renaming the
/// kept files in the workspace to their final names and removing the rest.
enum TransferAssembler {
    struct Assembled {
        var record: TransferRecord
        /// File names in the workspace; `record.path` is one of them (relative, for now).
        var keptFiles: [String]
    }

    static let textFileName = "message.txt"
    static let htmlFileName = "message.html"
    static let reportFileName = "report.txt"
    /// The name of an attached message (message/rfc822) that came without one.
    static let attachedMessageFileName = "attached-message.eml"

    static func assemble(
        _ result: MessageIngest.Result,
        site: RemoteSite,
        id: String,
        uidl: String?,
        workspace: String,
        duplicateOf duplicate: String?
    ) throws -> Assembled {
        let header = result.parts.first?.header ?? MessageHeader()
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
            messageSha256: result.raw.sha256
        )

        let messageClass: MessageClass
        if duplicate != nil {
            messageClass = .recover(reason: "duplicate")
        } else if let error = result.parseError {
            messageClass = .recover(reason: error.description)
        } else {
            messageClass = Classifier.classify(result.parts)
        }

        // name in workspace -> final name
        var keep: [(from: String, to: String)] = []
        var main: PartFile
        switch messageClass {
        case .transfer(let file, let text):
            guard let attachment = result.partFiles[file] else { return recover(result, record: record, reason: "attachment body missing") }
            var taken: Set<String> = []
            if let text, let textFile = result.partFiles[text] {
                let converted = try TextConversion.toUTF8(textFile, part: result.parts[text], workspace: workspace)
                keep.append((converted.name, textFileName))
                taken.insert(textFileName)
            }
            let attachedPart = result.parts[file]
            let proposed = attachedPart.fileName
                ?? (attachedPart.contentType.mimeType == "message/rfc822" ? attachedMessageFileName : SafeFileName.fallback)
            let name = SafeFileName.unique(SafeFileName.make(proposed), avoiding: taken)
            keep.append((attachment.name, name))
            main = attachment
            main.name = name
            record.type = .xfer
            record.fileName = name
        case .message(let text, let html):
            guard let original = result.partFiles[text] else { return recover(result, record: record, reason: "text body missing") }
            // What MSG keeps is for people and applications to read: UTF-8, whatever was sent.
            let textFile = try TextConversion.toUTF8(original, part: result.parts[text], workspace: workspace)
            keep.append((textFile.name, textFileName))
            if let html, let original = result.partFiles[html] {
                let htmlFile = try TextConversion.toUTF8(original, part: result.parts[html], workspace: workspace)
                keep.append((htmlFile.name, htmlFileName))
            }
            main = textFile
            main.name = textFileName
            record.type = .msg
            record.fileName = site.application ?? "MSG"
        case .report(let report):
            record.type = .eerp
            record.ack = .none  // RFC 8098 section 2.1: never acknowledge a report.
            if let report, let reportFile = result.partFiles[report] {
                keep.append((reportFile.name, reportFileName))
                main = reportFile
                main.name = reportFileName
                let fields = ReportFields.parse(try readSmallFile(workspace + "/" + reportFile.name, limit: 256 * 1024))
                record.originalMessageId = fields.originalMessageID
                record.disposition = fields.disposition
                record.recipientReports = fields.recipients
                if let recipient = fields.finalRecipient { record.recipients = [recipient] }
            } else {
                keep.append((result.raw.name, result.raw.name))
                main = result.raw
            }
        case .recover(let reason):
            var assembled = recover(result, record: record, reason: reason)
            if let duplicate {
                assembled.record.fileName = TransferRecord.duplicateFileName
                assembled.record.error = duplicate
            }
            try finalizeFiles(workspace: workspace, keep: [(result.raw.name, result.raw.name)], result: result)
            return assembled
        }
        try finalizeFiles(workspace: workspace, keep: keep, result: result)
        record.size = main.size
        record.sha256 = main.sha256
        record.path = main.name
        return Assembled(record: record, keptFiles: keep.map(\.to))
    }

    private static func recover(_ result: MessageIngest.Result, record: TransferRecord, reason: String) -> Assembled {
        var record = record
        record.type = .xfer
        record.fileName = TransferRecord.recoverFileName
        record.size = result.raw.size
        record.sha256 = result.raw.sha256
        record.path = result.raw.name
        record.error = reason == "duplicate" ? nil : "kept whole: \(reason)"
        return Assembled(record: record, keptFiles: [result.raw.name])
    }

    /// Renames kept files to their final names and deletes every other file of the workspace.
    /// Plain POSIX calls: FileManager's extra stats per call showed in the profile of a poll.
    private static func finalizeFiles(workspace: String, keep: [(from: String, to: String)], result: MessageIngest.Result) throws {
        let keptSources = Set(keep.map(\.from))
        // Everything else the ingest wrote (parts, converted texts, uuencoded files) goes.
        for file in (try? FileManager.default.contentsOfDirectory(atPath: workspace)) ?? [] where !keptSources.contains(file) {
            unlink(workspace + "/" + file)
        }
        // The raw message lives outside the workspace until it is kept.
        let moves = keep.filter { $0.from != result.raw.name && $0.from != $0.to }
        // A final name that is also another file's current name ("part-2" sent as a file name)
        // must not clobber it: then every move goes through a temporary name first.
        let sources = Set(moves.map(\.from))
        let direct = moves.allSatisfy { !sources.contains($0.to) }
        func move(_ from: String, _ to: String) throws {
            if rename(workspace + "/" + from, workspace + "/" + to) != 0 {
                throw SpoolError("rename the received file to", path: workspace + "/" + to, errno: errno)
            }
        }
        if direct {
            for item in moves { try move(item.from, item.to) }
        } else {
            for (index, item) in moves.enumerated() { try move(item.from, ".keep-\(index)") }
            for (index, item) in moves.enumerated() { try move(".keep-\(index)", item.to) }
        }
        if let raw = keep.first(where: { $0.from == result.raw.name }) {
            try result.scratch.move(to: workspace + "/" + raw.to)
        }
    }

    private static func readSmallFile(_ path: String, limit: Int) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        return Array(try handle.read(upToCount: limit) ?? Data())
    }

    /// Addresses from an address-list header, loosely: `Name <a@b>, c@d` -> `a@b`, `c@d`.
    static func addresses(_ field: String) -> [String] {
        field.split(separator: ",").compactMap { item in
            let text = item.trimmingCharacters(in: .whitespaces)
            if let open = text.lastIndex(of: "<"), let close = text.lastIndex(of: ">"), open < close {
                return String(text[text.index(after: open)..<close])
            }
            return text.contains("@") ? text : nil
        }
    }
}
