/// One node of a message's MIME tree. Index 0 is the message itself; bodies are not kept here,
/// they stream to the ``MIMEPartHandler``.
public struct MIMEPart: Sendable, Hashable {
    public let index: Int
    public let parent: Int?
    /// 0 for the message, 1 for its parts, and so on.
    public let depth: Int
    public let header: MessageHeader
    public let contentType: ContentType
    public let disposition: ContentDisposition?
    public let transferEncoding: TransferEncoding
    /// True only for a multipart with a usable boundary; a multipart without one is a leaf.
    public let isMultipart: Bool

    public init(
        index: Int, parent: Int?, depth: Int, header: MessageHeader, contentType: ContentType,
        disposition: ContentDisposition?, transferEncoding: TransferEncoding, isMultipart: Bool
    ) {
        self.index = index
        self.parent = parent
        self.depth = depth
        self.header = header
        self.contentType = contentType
        self.disposition = disposition
        self.transferEncoding = transferEncoding
        self.isMultipart = isMultipart
    }

    /// A file uuencoded inside the text of part `parent` (see ``UUEncodedFileExtractor``): an
    /// attachment in all but syntax, so it is described as one.
    public static func uuencodedFile(index: Int, parent: MIMEPart, name: String) -> MIMEPart {
        MIMEPart(
            index: index,
            parent: parent.index,
            depth: parent.depth + 1,
            header: MessageHeader(),
            contentType: ContentType(type: "application", subtype: "octet-stream"),
            disposition: ContentDisposition(kind: "attachment", parameters: HeaderParameters(["filename": name])),
            transferEncoding: .identity,
            isMultipart: false
        )
    }

    /// The file name the sender gave: Content-Disposition `filename`, else Content-Type `name`
    /// (older mailers), with RFC 2231 and RFC 2047 decoding applied. Not yet safe for a file
    /// system: see the spool's sanitizer.
    public var fileName: String? {
        let raw = disposition?.fileName ?? contentType.parameters["name"]
        guard let raw else { return nil }
        // ASCII trimming here; the spool's sanitizer trims Unicode spaces too.
        let decoded = EncodedWords.decode(raw).trimmingASCIIWhitespace()
        return decoded.isEmpty ? nil : decoded
    }
}

/// Receives a message's parts as the parser finds them. Leaf parts get their decoded body
/// (transfer encoding removed) in chunks; multiparts only begin and end.
public protocol MIMEPartHandler {
    mutating func partDidBegin(_ part: MIMEPart) throws
    /// `bytes` is valid only during the call.
    mutating func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws
    mutating func partDidEnd(_ index: Int) throws
}
