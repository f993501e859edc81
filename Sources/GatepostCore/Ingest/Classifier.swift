import GatepostMIME

/// What a received message is, decided from its MIME structure alone (DEVELOPERS.md, the
/// classification table). Written as a pure function so every rule has a unit test.
public enum MessageClass: Sendable, Hashable {
    /// One attached file; `text` is the message's text body, if any.
    case transfer(file: Int, text: Int?)
    /// A text message: multipart/alternative of text parts.
    case message(text: Int, html: Int?)
    /// A report (multipart/report); `report` is its machine-readable part, if found.
    case report(report: Int?)
    /// Anything else, kept whole. `reason` says why, for the log and the record.
    case recover(reason: String)
}

public enum Classifier {
    /// - Parameter parts: the parser's parts, in order (index 0 is the message).
    public static func classify(_ parts: [MIMEPart]) -> MessageClass {
        guard let top = parts.first else { return .recover(reason: "no message header") }
        let type = top.contentType
        // A single-part message is a transfer only when its text holds a uuencoded file, which
        // the ingest adds as a part of its own.
        guard top.isMultipart || parts.count > 1 else {
            return .recover(reason: "a single-part \(type.mimeType) message")
        }
        if type.subtype == "report" {
            let report = parts.first { part in
                part.parent == top.index
                    && ["disposition-notification", "delivery-status", "global-disposition-notification", "global-delivery-status"]
                        .contains(part.contentType.subtype)
                    && part.contentType.type == "message"
            }
            return .report(report: report?.index)
        }
        let leaves = parts.filter { !$0.isMultipart }
        if type.subtype == "alternative", !leaves.isEmpty, leaves.allSatisfy({ $0.contentType.type == "text" && !isAttachedFile($0, in: parts) }) {
            let plain = leaves.first { $0.contentType.subtype == "plain" } ?? leaves[0]
            let html = leaves.first { $0.contentType.subtype == "html" }
            return .message(text: plain.index, html: html?.index)
        }
        let files = leaves.filter { isAttachedFile($0, in: parts) }
        switch files.count {
        case 1:
            let text = leaves.first { $0.contentType.mimeType == "text/plain" && !isAttachedFile($0, in: parts) }
            return .transfer(file: files[0].index, text: text?.index)
        case 0:
            return .recover(reason: "a \(type.mimeType) message without an attached file")
        default:
            return .recover(reason: "\(files.count) attached files in one message")
        }
    }

    /// An attached file: declared an attachment, or named, or a whole attached message; but not
    /// the inline resources (images) of a multipart/related body.
    public static func isAttachedFile(_ part: MIMEPart, in parts: [MIMEPart]) -> Bool {
        guard !part.isMultipart else { return false }
        if part.disposition?.isAttachment == true { return true }
        if let parent = part.parent, parts.indices.contains(parent), parts[parent].contentType.subtype == "related" {
            return false
        }
        if part.contentType.mimeType == "message/rfc822" { return true }
        if part.disposition?.kind == "inline", part.contentType.type == "text", part.fileName == nil { return false }
        return part.fileName != nil
    }
}
