import Foundation
import GatepostCore
import Hummingbird
import HummingbirdAuth

/// What a browser's session keeps: who logged in (nil before), and the token its forms must
/// send back (CSRF).
public struct ConsoleSession: Codable, Sendable {
    public var identity: ConsoleIdentity?
    public var csrf: String
}

/// The context of one console request: its session, and who it is from once the access
/// middleware has looked.
public struct ConsoleRequestContext: SessionRequestContext, RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let sessions: SessionContext<ConsoleSession>
    public var identity: ConsoleIdentity?
    /// The session's CSRF token, for the forms a page renders.
    public var csrf: String?

    public init(source: Source) {
        coreContext = .init(source: source)
        sessions = .init()
    }

    /// Bodies are small forms and JSON.
    public var maxUploadSize: Int { 1 << 20 }

    /// Dates as ISO 8601, keys sorted: what `gatepost ... --format json` writes too.
    public var responseEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    public var requestDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
