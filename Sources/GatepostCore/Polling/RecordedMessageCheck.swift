import GatepostCatalog

/// Whether the message a server lists under a UIDL the catalog already has is the message
/// recorded under it. A UIDL stays known after its message was committed, while its deletion is
/// unconfirmed (a crash right after QUIT, a QUIT answer lost) or even after it: a server that
/// reuses UIDLs lists a new message under an old one, and deleting that one unread would lose it.
enum RecordedMessageCheck {
    enum Verdict: Equatable {
        /// The recorded message: delete it (if the site deletes), never fetch it again.
        case same
        /// Another message: fetch it; its record takes over the UIDL.
        case different(reason: String)
        /// The sizes agree; the Message-ID in its header (TOP n 0) decides.
        case needsHeader
    }

    /// `headerMessageId` is nil until the header was read, then the header's Message-ID (nil
    /// inside when it has none). Without a recorded Message-ID or size there is nothing to
    /// compare, and the message counts as the recorded one, as before these were kept.
    static func compare(_ recorded: RetrievedMessage, listedSize: Int64?, headerMessageId: String?? = nil) -> Verdict {
        if let recordedSize = recorded.listedSize, let listedSize, recordedSize != listedSize {
            return .different(reason: "LIST gives \(listedSize) bytes; the message recorded under this UIDL had \(recordedSize)")
        }
        guard let recordedId = recorded.messageId else { return .same }
        guard let headerMessageId else { return .needsHeader }
        guard let headerId = headerMessageId else {
            return .different(reason: "it has no Message-ID; the message recorded under this UIDL had <\(recordedId)>")
        }
        return headerId == recordedId
            ? .same
            : .different(reason: "its Message-ID <\(headerId)> is not the recorded <\(recordedId)>")
    }
}
