import GatepostMIME

/// What a received message is, decided from its MIME structure alone (README, "How messages are
/// classified"). A pure function of the parts, so every rule has a unit test.
public enum MessageClass: Sendable, Hashable {
    /// One attached file; `text` is the message's text body, if any.
    case transfer(file: Int, text: Int?)
    /// Several attached files, one transfer each (`classify.split_attachments: true`).
    case transfers(files: [Int], text: Int?)
    /// A text message: `text` is its text (plain, else HTML), `html` its HTML rendering, and
    /// `resources` what the HTML shows inline (the images of a multipart/related).
    case message(text: Int, html: Int?, resources: [Int])
    /// A report (multipart/report); `report` is its machine-readable part, if found, and
    /// `returned` what it returns of the original message (its header, or all of it), if found.
    case report(report: Int?, returned: Int?)
    /// Anything else, kept whole.
    case recover
}

/// The class, why (for the record's `classification` and the log), and how the message was
/// signed, if it was.
public struct Classification: Sendable, Hashable {
    public var messageClass: MessageClass
    public var reason: String
    /// "S/MIME (application/pkcs7-signature)" or "OpenPGP (application/pgp-signature)": the
    /// signature is not verified (yet); the signed content was classified as if unsigned.
    public var signature: String?
}

/// The site's choices beyond the classification table (`classify:` in a site file). The
/// defaults are the table's.
public struct ClassificationOptions: Sendable, Hashable {
    /// A message with no attached file whose body is text: MSG instead of RECOVER.
    public var textOnlyIsMessage: Bool
    /// A message that is itself one file (a single-part `application/pdf`, as scanners send):
    /// XFER of that file instead of RECOVER.
    public var bareFileIsTransfer: Bool
    /// Several attached files: one XFER each instead of RECOVER.
    public var splitAttachments: Bool

    public init(textOnlyIsMessage: Bool = false, bareFileIsTransfer: Bool = false, splitAttachments: Bool = false) {
        self.textOnlyIsMessage = textOnlyIsMessage
        self.bareFileIsTransfer = bareFileIsTransfer
        self.splitAttachments = splitAttachments
    }
}

public enum Classifier {
    /// The top-level types whose leaf parts are files even without a name (decision: a PDF
    /// attached without `filename` is still a file).
    static let fileTypes: Set<String> = ["application", "image", "audio", "video", "model", "font"]

    /// The signature parts of a multipart/signed, by content type, and what they are called.
    static let signatureTypes: [String: String] = [
        "application/pkcs7-signature": "S/MIME",
        "application/x-pkcs7-signature": "S/MIME",
        "application/pgp-signature": "OpenPGP",
    ]

    static let reportTypes: Set<String> = [
        "disposition-notification", "delivery-status", "global-disposition-notification", "global-delivery-status",
    ]

    /// What a report returns of the original message (RFC 6522 section 3: the third part):
    /// its header, or the whole message. `message/rfc822-headers` is no registered type, but
    /// mailers send it.
    static let returnedContentTypes: Set<String> = [
        "text/rfc822-headers", "message/rfc822", "message/global", "message/global-headers", "message/rfc822-headers",
    ]

    /// - Parameters:
    ///   - parts: the parser's parts, in order (index 0 is the message, or the content an S/MIME
    ///     layer held).
    ///   - messageHeader: the message's own header when `parts` are an S/MIME layer's content
    ///     (whether it is an automatic message is said there).
    public static func classify(
        _ parts: [MIMEPart], options: ClassificationOptions = ClassificationOptions(), messageHeader: MessageHeader? = nil
    ) -> Classification {
        guard let top = parts.first else { return Classification(messageClass: .recover, reason: "no message header") }
        var walk = StructureWalk(parts: parts)
        // A signature is the envelope, not a file: what was signed is classified as if unsigned.
        var root = top
        var signature: String?
        while root.isMultipart, root.contentType.subtype == "signed", let content = walk.children(of: root.index).first {
            signature = walk.signatureDescription(of: root)
            root = parts[content]
        }
        func classification(_ messageClass: MessageClass, _ reason: String) -> Classification {
            Classification(messageClass: messageClass, reason: reason, signature: signature)
        }

        if root.isMultipart, root.contentType.subtype == "report" {
            let report = walk.children(of: root.index).first { index in
                let type = parts[index].contentType
                return type.type == "message" && reportTypes.contains(type.subtype)
            }
            let returned = walk.children(of: root.index).first { index in
                index != report && returnedContentTypes.contains(parts[index].contentType.mimeType)
            }
            return classification(.report(report: report, returned: returned), "a multipart/report" + (report.map { " (\(parts[$0].contentType.mimeType))" } ?? " without a report part"))
        }
        if root.isMultipart, root.contentType.subtype == "encrypted" {
            return classification(.recover, "an encrypted message (multipart/encrypted): kept for an operator")
        }

        walk.visit(root.index, as: .body)
        let automatic = isAutomatic(messageHeader ?? top.header)

        switch walk.files.count {
        case 1:
            if automatic { return classification(.recover, automaticReason) }
            return classification(.transfer(file: walk.files[0], text: walk.plainText), "one attached file")
        case 2...:
            if automatic { return classification(.recover, automaticReason) }
            if options.splitAttachments {
                return classification(
                    .transfers(files: walk.files, text: walk.plainText),
                    "\(walk.files.count) attached files, one transfer each (classify.split_attachments)"
                )
            }
            return classification(.recover, "\(walk.files.count) attached files in one message")
        default:
            break
        }

        if !root.isMultipart {
            if options.bareFileIsTransfer, !automatic, walk.bareFile == root.index {
                return classification(.transfer(file: root.index, text: nil), "a message that is one \(root.contentType.mimeType) file (classify.bare_file)")
            }
            if options.textOnlyIsMessage, let text = walk.plainText ?? walk.html {
                return classification(.message(text: text, html: walk.html == text ? nil : walk.html, resources: []), "a one-part text message (classify.text_only)")
            }
            return classification(.recover, "a single-part \(root.contentType.mimeType) message")
        }
        if root.contentType.subtype == "alternative", walk.alternativesAreText, let text = walk.plainText ?? walk.html {
            return classification(
                .message(text: text, html: walk.html == text ? nil : walk.html, resources: walk.resources),
                walk.resources.isEmpty ? "a multipart/alternative of text" : "a multipart/alternative of text, with inline resources"
            )
        }
        if options.textOnlyIsMessage, walk.onlyText, let text = walk.plainText ?? walk.html {
            return classification(
                .message(text: text, html: walk.html == text ? nil : walk.html, resources: walk.resources),
                "a \(root.contentType.mimeType) text message without an attached file (classify.text_only)"
            )
        }
        if walk.pointers > 0 {
            return classification(.recover, "a \(root.contentType.mimeType) message whose only attachment is a pointer to a document elsewhere (message/external-body)")
        }
        return classification(.recover, "a \(root.contentType.mimeType) message without an attached file")
    }

    static let automaticReason = "automatic message (bounce or auto-reply)"

    /// A bounce (null reverse path, `Return-Path: <>`) or an automatic reply (`Auto-Submitted`
    /// other than `no`, RFC 3834): it may carry the message it answers, which is not a transfer.
    static func isAutomatic(_ header: MessageHeader) -> Bool {
        if let returnPath = header["Return-Path"], returnPath.filter({ !$0.isWhitespace }) == "<>" { return true }
        if let submitted = header["Auto-Submitted"] {
            let value = submitted.split(separator: ";", maxSplits: 1).first.map { $0.trimmingASCIIWhitespace().lowercased() } ?? ""
            return !value.isEmpty && value != "no"
        }
        return false
    }

    /// The file name to use for an attached file: the sender's, else one made from its type
    /// (as mail programs do): `attached-message.eml`, `attachment.pdf`, `attachment.bin`.
    public static func proposedFileName(for part: MIMEPart) -> String {
        if let name = part.fileName { return name }
        let type = part.contentType
        if type.type == "message" { return "attached-message.eml" }
        return "attachment." + (extensions[type.mimeType] ?? (type.type == "text" ? "txt" : "bin"))
    }

    static let extensions: [String: String] = [
        "application/pdf": "pdf", "application/zip": "zip", "application/gzip": "gz", "application/x-gzip": "gz",
        "application/xml": "xml", "text/xml": "xml", "application/json": "json", "text/csv": "csv",
        "application/msword": "doc", "application/vnd.ms-excel": "xls",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
        "application/edifact": "edi", "application/edi-x12": "edi", "application/edi-consent": "edi",
        "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/tiff": "tif", "image/webp": "webp",
        "audio/mpeg": "mp3", "video/mp4": "mp4", "text/html": "html", "text/plain": "txt", "text/calendar": "ics",
    ]
}

/// One walk over a message's tree in the order a mail program renders it, sorting the leaves
/// into the body (text and HTML), inline resources, attached files and what is neither.
private struct StructureWalk {
    enum Role {
        /// Part of the message body: a text leaf here is the text.
        case body
        /// One rendering of a multipart/alternative: never an attached file.
        case alternative
        /// A part an HTML body shows inline (a non-root part of a multipart/related).
        case resource
    }

    let parts: [MIMEPart]
    private var childrenByParent: [Int: [Int]] = [:]
    private(set) var files: [Int] = []
    private(set) var resources: [Int] = []
    private(set) var plainText: Int?
    private(set) var html: Int?
    /// message/external-body parts seen: references, not files.
    private(set) var pointers = 0
    /// Whether every rendering of the top multipart/alternative is text (or text with its
    /// inline resources).
    private(set) var alternativesAreText = true
    /// Whether the body holds nothing but text leaves and inline resources.
    private(set) var onlyText = true
    /// The single-part message itself when it is a file by its type or name.
    private(set) var bareFile: Int?

    init(parts: [MIMEPart]) {
        self.parts = parts
        for part in parts {
            if let parent = part.parent { childrenByParent[parent, default: []].append(part.index) }
        }
    }

    func children(of index: Int) -> [Int] {
        childrenByParent[index] ?? []
    }

    func signatureDescription(of signed: MIMEPart) -> String {
        let signatureParts = children(of: signed.index).dropFirst().map { parts[$0].contentType.mimeType }
        let type = signatureParts.first { Classifier.signatureTypes[$0] != nil } ?? signed.contentType.parameters["protocol"]?.lowercased()
        guard let type else { return "signed (multipart/signed)" }
        return "\(Classifier.signatureTypes[type] ?? "signed") (\(type))"
    }

    mutating func visit(_ index: Int, as role: Role) {
        let part = parts[index]
        if part.isMultipart {
            visitMultipart(part, as: role)
        } else {
            visitLeaf(part, as: role)
        }
    }

    private mutating func visitMultipart(_ part: MIMEPart, as role: Role) {
        let children = children(of: part.index)
        switch part.contentType.subtype {
        case "alternative":
            // The renderings of one body; a file the sender attached sits beside them.
            for child in children {
                let filesBefore = files.count
                visit(child, as: .alternative)
                if parts[child].isMultipart, files.count > filesBefore { alternativesAreText = false }
            }
        case "related":
            // The root (the `start` part, else the first) is the body; the rest is what it shows.
            let start = part.contentType.parameters["start"].flatMap(MessageHeader.stripAngles)
            let root = start.flatMap { start in
                children.first { parts[$0].header["Content-ID"].flatMap(MessageHeader.stripAngles) == start }
            } ?? children.first
            for child in children {
                visit(child, as: child == root ? role : .resource)
            }
        case "signed":
            // A signed part inside the message: its content counts, its signature does not.
            if let content = children.first { visit(content, as: role) }
        default:
            for child in children { visit(child, as: role == .alternative ? .body : role) }
        }
    }

    private mutating func visitLeaf(_ part: MIMEPart, as role: Role) {
        defer {
            // Files uuencoded in a text body are parts of that part.
            for child in children(of: part.index) { files.append(child) }
        }
        let type = part.contentType
        if type.mimeType == "message/external-body" {
            pointers += 1
            onlyText = false
            return
        }
        if part.parent == nil {
            // The message itself: its text is the body, and it is a file only for classify.bare_file.
            if isBareFile(part) {
                bareFile = part.index
                onlyText = false
            } else if type.type == "text" {
                takeText(part)
            } else {
                onlyText = false
            }
            return
        }
        switch role {
        case .alternative:
            if type.type == "text" {
                takeText(part)
            } else {
                alternativesAreText = false
                onlyText = false
            }
            return
        case .resource:
            if part.disposition?.isAttachment == true {
                files.append(part.index)
            } else {
                resources.append(part.index)
            }
            return
        case .body:
            break
        }
        if isAttachedFile(part) {
            files.append(part.index)
            return
        }
        if type.type == "text" {
            takeText(part)
        } else {
            onlyText = false
        }
    }

    private mutating func takeText(_ part: MIMEPart) {
        switch part.contentType.subtype {
        case "plain": if plainText == nil { plainText = part.index }
        case "html": if html == nil { html = part.index }
        default: if plainText == nil, part.contentType.type == "text" { plainText = part.index }
        }
    }

    /// A single-part message that is a file: named, declared an attachment, or content that
    /// is no text. An S/MIME message (application/pkcs7-mime) is not: it is an envelope.
    private func isBareFile(_ part: MIMEPart) -> Bool {
        let type = part.contentType
        guard !["application/pkcs7-mime", "application/x-pkcs7-mime"].contains(type.mimeType) else { return false }
        return part.fileName != nil || part.disposition?.isAttachment == true || Classifier.fileTypes.contains(type.type)
    }

    /// In the body (not a rendering, not an inline resource): declared an attachment, named,
    /// an attached message, or content that is no text (a PDF without a name is still a file).
    private func isAttachedFile(_ part: MIMEPart) -> Bool {
        if part.disposition?.isAttachment == true || part.fileName != nil { return true }
        let type = part.contentType
        if type.type == "message" { return ["rfc822", "news", "global"].contains(type.subtype) }
        return Classifier.fileTypes.contains(type.type)
    }
}
