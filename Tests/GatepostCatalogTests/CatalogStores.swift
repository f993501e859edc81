import Foundation
import GatepostPostgres
import GatepostTestSupport
import Testing
@testable import GatepostCatalog

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("gatepost-catalog-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Every store of the catalog contract: the contract tests run once per store, so that each one
/// is shown to behave as the others do.
enum CatalogStore: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case inMemory
    /// A database of its own on the test process's PostgreSQL server (PostgresPeer).
    case postgres

    /// A new, empty catalog.
    func make() async throws -> any Catalog {
        switch self {
        case .sqlite: try SQLiteCatalog(path: try temporaryDirectory().appendingPathComponent("catalog.sqlite").path)
        case .inMemory: InMemoryCatalog()
        case .postgres: try await PostgresCatalog.connect(url: try await PostgresPeer.shared().makeDatabase(), maximumConnections: 4)
        }
    }

    var testDescription: String { rawValue }
}

/// Records and entries the contract tests store. Times are whole seconds: the contract keeps
/// them to the millisecond.
enum Fixture {
    static let epoch = Date(timeIntervalSince1970: 1_700_000_000)

    static func inbound(
        _ id: String, site: String = "acme", messageId: String? = nil, type: TransferRecord.Kind = .xfer,
        state: TransferRecord.State = .received, at seconds: TimeInterval = 0
    ) -> TransferRecord {
        TransferRecord(
            id: id, type: type, fileName: "a.csv", site: site, state: state, messageId: messageId,
            recipients: ["x@example.com", "y@example.com"], subject: "s", size: 3, sha256: "abc",
            path: "/spool/in/\(site)/\(id)", receivedAt: epoch.addingTimeInterval(seconds), messageText: "text"
        )
    }

    static func outbound(_ id: String, site: String = "acme") -> TransferRecord {
        TransferRecord(
            id: id, direction: .outbound, type: .xfer, fileName: "a.csv", site: site, state: .queued,
            messageId: "\(id)@ours.example", recipients: ["edi@acme.example", "ops@acme.example"], receivedAt: epoch,
            ack: .requested
        )
    }

    static func entry(_ id: String, kind: OutboxEntry.Kind = .file, transferId: String? = nil, site: String = "acme", now: Date = epoch) -> OutboxEntry {
        OutboxEntry(
            id: id, kind: kind, transferId: transferId ?? id, site: site, mailFrom: "g@ours.example",
            recipients: ["edi@acme.example", "ops@acme.example"], path: "/spool/out/\(id).eml", messageId: "\(id)@ours.example",
            nextAttempt: now, createdAt: now
        )
    }

    static func report(_ id: String, site: String, original: String, lines: [RecipientReport]) -> TransferRecord {
        TransferRecord(
            id: id, type: .eerp, fileName: nil, site: site, messageId: "\(id)@acme.example", receivedAt: epoch,
            originalMessageId: original, recipientReports: lines
        )
    }

    static let processed = "automatic-action/MDN-sent-automatically; processed"
    static let processedWithError = "automatic-action/MDN-sent-automatically; processed/error"
}

typealias F = Fixture
